"""The plan API's :class:`~gpumix.api.source.PlanSource`, read from the fleet planner's memory.

Everything comes from :attr:`FleetPlanner.published` (swapped whole after each pass) and the
planner's bounded plan history, so the API thread never sees half a pass and never calls the
Kubernetes API. A what-if gets the last pass's inputs and the planner's own demand builder
(with the pools a service's stalled migration left out, as the next pass would) and solver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gpumix.api.models import (
    BaselineView,
    DemandView,
    FleetView,
    PlanChangeView,
    PlanEntryView,
    PoolHolding,
    PoolView,
    ServiceView,
)
from gpumix.api.source import DemandBuilder, PlanningBasis, RunningEntry, RunningService
from gpumix.operator import stalls, status
from gpumix.operator.planner import (
    FleetPlanner,
    Published,
    current_assignment_from_status,
    current_plan_from_status,
    service_key,
)
from gpumix.planning import NamespaceAdmission, PoolHardware
from gpumix.resources import LLMService, LLMServiceStatus
from gpumix.solver import CurrentPlan, ServiceDemand, ServiceKey


def _entries(recorded: LLMServiceStatus | None) -> list[PlanEntryView]:
    if recorded is None:
        return []
    return [
        PlanEntryView(
            deployment=entry.deployment,
            pool=entry.pool,
            gpu_type=entry.gpu_type,
            capacity_type=entry.capacity_type,
            tensor_parallel=entry.tensor_parallel,
            weight_format=entry.weight_format,
            replicas=entry.replicas,
            ready_replicas=entry.ready_replicas,
            gpus=entry.gpus,
            cost_per_hour=float(entry.cost_per_hour),
            assignment={name: float(share) for name, share in entry.assignment.items()},
        )
        for entry in recorded.plan
    ]


def _demand(resource: LLMService | None, recorded: LLMServiceStatus | None) -> DemandView | None:
    if resource is None:
        return None
    workload = resource.spec.workload
    total_share = sum(c.share for c in workload.classes) or 1
    rps = float(workload.requests_per_second)
    shares = {c.name: round(c.share / total_share, 4) for c in workload.classes}
    observed = recorded.observed_demand if recorded is not None else None
    planned_for = rps
    if observed is not None:  # autoscaling: the plan is sized for the tracked demand
        planned_for = float(observed.planned_requests_per_second)
        shares = {name: round(float(share), 4) for name, share in observed.class_shares.items()}
    return DemandView(
        requests_per_second=rps,
        headroom_percent=workload.headroom_percent,
        planned_requests_per_second=round(planned_for * (1 + workload.headroom_percent / 100), 4),
        class_shares=shares,
        observed_requests_per_second=float(observed.requests_per_second) if observed else None,
    )


def _feasible(recorded: LLMServiceStatus | None) -> bool | None:
    for condition in recorded.conditions if recorded is not None else ():
        if condition.type == status.FEASIBLE:
            return str(condition.status) == "True"
    return None


class PlannerSource:
    def __init__(self, planner: FleetPlanner) -> None:
        self.planner = planner

    def fleet(self) -> FleetView:
        published = self.planner.published
        if published is None:
            return FleetView(pools=[], total_cost_per_hour=0.0)
        holdings: dict[str, list[PoolHolding]] = {}
        for key, recorded in sorted(published.statuses.items()):
            by_pool: dict[str, list[float]] = {}
            for entry in recorded.plan if recorded is not None else ():
                held = by_pool.setdefault(entry.pool, [0, 0, 0.0])
                held[0] += entry.replicas
                held[1] += entry.gpus
                held[2] += float(entry.cost_per_hour)
            for pool, (replicas, gpus, cost) in by_pool.items():
                holdings.setdefault(pool, []).append(
                    PoolHolding(
                        namespace=key.namespace,
                        name=key.name,
                        replicas=int(replicas),
                        gpus=int(gpus),
                        cost_per_hour=round(cost, 4),
                    )
                )
        pools = [
            PoolView(
                name=pool.name,
                gpu_type=pool.definition.gpu_type,
                capacity_type=pool.definition.capacity_type,
                price_per_gpu_hour=pool.definition.price_per_gpu_hour,
                nodes=pool.nodes,
                ready_nodes=pool.ready_nodes,
                gpus=pool.gpus,
                allocated_gpus=pool.allocated_gpus,
                available_gpus=pool.available_gpus,
                discovered=pool.definition.discovered,
                plannable=pool.plannable,
                problem=pool.problem,
                holdings=holdings.get(pool.name, []),
            )
            for pool in published.snapshot.pools
        ]
        total = sum(
            float(s.cost_per_hour)
            for s in published.statuses.values()
            if s is not None and s.cost_per_hour is not None
        )
        return FleetView(
            pools=pools, total_cost_per_hour=round(total, 4), planned_at=published.planned_at
        )

    def services(self) -> list[ServiceView]:
        published = self.planner.published
        if published is None:
            return []
        views = []
        for record in published.snapshot.services:
            key = service_key(record)
            recorded = published.statuses.get(key)
            baseline = recorded.baseline if recorded is not None else None
            views.append(
                ServiceView(
                    namespace=key.namespace,
                    name=key.name,
                    model=record.resource.spec.model.name if record.resource else None,
                    feasible=_feasible(recorded),
                    cost_per_hour=_float(recorded.cost_per_hour if recorded else None),
                    desired_replicas=(recorded.desired_replicas or 0) if recorded else 0,
                    ready_replicas=(recorded.ready_replicas or 0) if recorded else 0,
                    plan=_entries(recorded),
                    baseline=BaselineView(
                        name=baseline.name, cost_per_hour=float(baseline.cost_per_hour)
                    )
                    if baseline is not None
                    else None,
                    savings_percent=_float(recorded.savings_percent if recorded else None),
                    conditions=list(recorded.conditions) if recorded else [],
                    reasons=list(recorded.reasons) if recorded else [],
                    last_plan_time=recorded.last_plan_time if recorded else None,
                    demand=_demand(record.resource, recorded),
                    plan_changes=[
                        PlanChangeView(
                            time=change.time,
                            message=change.message,
                            cause=change.cause,
                            cost_before=change.cost_before,
                            cost_after=change.cost_after,
                            generation=change.generation,
                        )
                        for change in self.planner.history.changes(key)
                    ],
                )
            )
        return views

    def planning_basis(self) -> PlanningBasis | None:
        published = self.planner.published
        if published is None:
            return None
        return PlanningBasis(
            pools=published.hardware,
            services=tuple(_running(published)),
            current_plan=current_plan_from_status(published.statuses),
            current_assignment=current_assignment_from_status(published.statuses),
            admission=published.snapshot.admission,
            demand_builder=self._demand_builder(published.blocked),
            solver=self.planner.solver,
            backend=self.planner.config.solver_backend,
        )

    def _demand_builder(
        self, blocked: Mapping[ServiceKey, Mapping[str, stalls.PoolBlock]]
    ) -> DemandBuilder:
        build = self.planner.demand_builder
        tracker = self.planner.demand

        def demand(
            key: ServiceKey,
            resource: LLMService,
            pools: Sequence[PoolHardware],
            current_plan: CurrentPlan,
            admission: NamespaceAdmission,
        ) -> ServiceDemand:
            # An autoscaling service is planned on its observed demand, what-ifs included.
            planned = tracker.planned(key, resource)
            found = build(planned, pools, current_plan, admission)
            return stalls.without_blocked(found, blocked.get(key, {}))

        return demand


def _float(value: object | None) -> float | None:
    return None if value is None else float(str(value))


def _running(published: Published) -> list[RunningService]:
    running = []
    for record in published.snapshot.services:
        key = service_key(record)
        recorded = published.statuses.get(key)
        entries = tuple(
            RunningEntry(
                pool=entry.pool,
                gpu_type=entry.gpu_type,
                capacity_type=entry.capacity_type,
                tensor_parallel=entry.tensor_parallel,
                weight_format=entry.weight_format,
                replicas=entry.replicas,
                cost_per_hour=float(entry.cost_per_hour),
            )
            for entry in (recorded.plan if recorded is not None else ())
        )
        cost = _float(recorded.cost_per_hour) if recorded is not None else None
        feasible = _feasible(recorded) is not False
        running.append(
            RunningService(key, record.resource, record.problem, entries, cost, feasible)
        )
    return running
