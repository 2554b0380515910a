"""gpumix.api."""
