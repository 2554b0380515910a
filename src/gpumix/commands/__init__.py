"""Subcommands of the gpumix CLI, one module per verb (imported by gpumix.cli)."""
