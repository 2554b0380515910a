"""gpumix.solver: the MILP planner, a pure library (no Kubernetes, no HTTP).

``solve(PlanningInputs, SolveOptions) -> PlanResult`` plans every service jointly on the shared
GPU pools; the model is documented in :mod:`gpumix.solver.formulation`. ``evaluate`` re-checks
any plan without a solver.
"""

from gpumix.solver.evaluate import evaluate
from gpumix.solver.model import (
    Backend,
    Baseline,
    Candidate,
    ConfigKey,
    CurrentAssignment,
    CurrentPlan,
    Objective,
    PlanEntry,
    PlanningInputs,
    PlanResult,
    Pool,
    Reason,
    ReasonCode,
    Rejection,
    RejectionKind,
    RequestClass,
    ServiceDemand,
    ServiceKey,
    ServicePlan,
    SolveOptions,
    SolveStatus,
    Violation,
)
from gpumix.solver.planner import solve

__all__ = [
    "Backend",
    "Baseline",
    "Candidate",
    "ConfigKey",
    "CurrentAssignment",
    "CurrentPlan",
    "Objective",
    "PlanEntry",
    "PlanResult",
    "PlanningInputs",
    "Pool",
    "Reason",
    "ReasonCode",
    "Rejection",
    "RejectionKind",
    "RequestClass",
    "ServiceDemand",
    "ServiceKey",
    "ServicePlan",
    "SolveOptions",
    "SolveStatus",
    "Violation",
    "evaluate",
    "solve",
]
