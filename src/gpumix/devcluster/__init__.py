"""gpumix.devcluster."""
