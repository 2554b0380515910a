"""gpumix.resources."""
