"""gpumix.catalog."""
