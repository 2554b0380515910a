"""gpumix.devcluster: a real local Kubernetes control plane with simulated GPU nodes."""

from __future__ import annotations


class DevClusterError(RuntimeError):
    """The dev cluster cannot be built, started or reached; the message is one actionable line
    (it names the log file to read when a process is at fault)."""
