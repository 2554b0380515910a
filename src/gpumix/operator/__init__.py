"""gpumix.operator."""
