"""The plan/what-if API the operator serves (``create_app``); it reads, it never writes."""

from gpumix.api.app import ApiSettings, create_app
from gpumix.api.source import PlanningBasis, PlanSource, RunningEntry, RunningService

__all__ = [
    "ApiSettings",
    "PlanSource",
    "PlanningBasis",
    "RunningEntry",
    "RunningService",
    "create_app",
]
