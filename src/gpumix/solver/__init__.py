"""gpumix.solver."""
