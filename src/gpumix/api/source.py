"""What the API reads: a small read-only protocol the operator implements.

The API never talks to Kubernetes. The operator hands it views of the state its planner already
holds (:class:`PlanSource`), and, for a what-if, the ingredients of its last planning pass
(:class:`PlanningBasis`): the pools as the solver saw them, the services with their running
plans, and the very functions the planner builds demands and solves with. A what-if edits the
ingredients and runs those functions; it cannot reach anything that writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gpumix.api.models import FleetView, ServiceView
from gpumix.planning import NamespaceAdmission, PoolHardware, service_demand
from gpumix.resources import LLMService
from gpumix.solver import (
    Backend,
    ConfigKey,
    CurrentAssignment,
    CurrentPlan,
    PlanningInputs,
    PlanResult,
    ServiceDemand,
    ServiceKey,
    SolveOptions,
    solve,
)

# (service key, spec, pools, current plan, admission) -> the service's demand. The operator's
# also leaves out pools whose new replicas did not come up for that service.
DemandBuilder = Callable[
    [ServiceKey, LLMService, Sequence[PoolHardware], CurrentPlan, NamespaceAdmission],
    ServiceDemand,
]
Solver = Callable[[PlanningInputs, SolveOptions], PlanResult]


def plain_demand(
    key: ServiceKey,
    service: LLMService,
    pools: Sequence[PoolHardware],
    current_plan: CurrentPlan,
    admission: NamespaceAdmission,
) -> ServiceDemand:
    """The demand ``gpumix plan`` builds: no pools left out for a service."""
    return service_demand(service, pools, current_plan=current_plan, admission=admission)


@dataclass(frozen=True)
class RunningEntry:
    """One configuration of a service's running plan (its status.plan entry)."""

    pool: str
    gpu_type: str
    capacity_type: str
    tensor_parallel: int
    weight_format: str
    replicas: int
    cost_per_hour: float

    @property
    def key(self) -> ConfigKey:
        return ConfigKey(self.pool, self.tensor_parallel, self.weight_format)


@dataclass(frozen=True)
class RunningService:
    key: ServiceKey
    resource: LLMService | None  # None: the stored spec does not parse (``problem`` says why)
    problem: str | None = None
    entries: tuple[RunningEntry, ...] = ()
    cost_per_hour: float | None = None
    # False: the current spec has no plan and ``entries`` are the last good plan, kept running.
    feasible: bool = True


@dataclass(frozen=True)
class PlanningBasis:
    """The inputs of the operator's last planning pass, and how it planned them."""

    pools: tuple[PoolHardware, ...]
    services: tuple[RunningService, ...]
    current_plan: CurrentPlan = field(default_factory=dict)
    current_assignment: CurrentAssignment = field(default_factory=dict)
    admission: NamespaceAdmission = field(default_factory=NamespaceAdmission)
    demand_builder: DemandBuilder = plain_demand
    solver: Solver = solve
    backend: Backend = Backend.HIGHS

    def running(self) -> Mapping[ServiceKey, RunningService]:
        return {service.key: service for service in self.services}


class PlanSource(Protocol):
    """Read-only views of the operator's state. Called from the API's threads: an
    implementation returns values built from state it swaps whole, never half-updated."""

    def fleet(self) -> FleetView: ...

    def services(self) -> list[ServiceView]: ...

    def planning_basis(self) -> PlanningBasis | None:
        """None until the operator has planned once (a what-if then answers 503)."""
        ...
