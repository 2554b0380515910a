"""gpumix.perf."""
