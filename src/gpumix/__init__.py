"""gpumix: serve LLMs on mixed-GPU Kubernetes fleets at the lowest cost."""

__version__ = "0.1.0"
