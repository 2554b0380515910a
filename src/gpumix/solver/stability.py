"""Keep the running class assignment when the new plan's replicas still carry it.

A plan's class shares are an LP's answer, and that LP often has many optima: the same replicas
can serve the classes in more than one split. Which vertex the solver returns depends on the
solve path (with or without a churn phase, warm start, thread timing), so an unchanged fleet
could flip its traffic shares, and rewrite every Deployment, on each pass or operator restart.
The rule here is simple and holds on every input: when a service's new plan runs exactly the
configurations and replica counts it runs now, and the current shares still fit those replicas
(every class fully routed, no replica over its capacity), the current shares stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from gpumix.solver.extract import capacity_by_class
from gpumix.solver.model import ConfigKey, CurrentAssignment, ServiceDemand, ServicePlan

# Status records shares to 3 decimals: a class may sum to 1 ± a few thousandths across
# configurations, and a replica loaded to the limit may read a little over it.
_SHARE_TOLERANCE = 5e-3
_CAPACITY_TOLERANCE = 1e-2


def keep_current_assignments(
    plans: tuple[ServicePlan, ...],
    services: tuple[ServiceDemand, ...],
    current: CurrentAssignment,
) -> tuple[ServicePlan, ...]:
    if not current:
        return plans
    by_key = {service.key: service for service in services}
    kept = []
    for plan in plans:
        service = by_key.get(plan.key)
        running = {cfg: shares for (svc, cfg), shares in current.items() if svc == plan.key}
        if service is not None and running and _still_fits(plan, service, running):
            plan = _with_shares(plan, service, running)
        kept.append(plan)
    return tuple(kept)


def _still_fits(
    plan: ServicePlan, service: ServiceDemand, running: Mapping[ConfigKey, Mapping[str, float]]
) -> bool:
    if not plan.entries or {entry.key for entry in plan.entries} != set(running):
        return False
    for request_class in service.classes:
        if request_class.demand_rps <= 0:
            continue
        total = sum(running[entry.key].get(request_class.name, 0.0) for entry in plan.entries)
        if abs(total - 1.0) > _SHARE_TOLERANCE:
            return False
    for entry in plan.entries:
        busy = 0.0  # replicas' worth of time this entry spends on its classes
        for request_class in service.classes:
            share = running[entry.key].get(request_class.name, 0.0)
            if share <= 0:
                continue
            capacity = entry.capacity_rps.get(request_class.name, 0.0)
            if capacity <= 0:
                return False  # the class may no longer run on this configuration
            busy += share * request_class.demand_rps * plan.scale_factor / capacity
        if busy > entry.replicas * (1 + _CAPACITY_TOLERANCE):
            return False
    return True


def _with_shares(
    plan: ServicePlan, service: ServiceDemand, running: Mapping[ConfigKey, Mapping[str, float]]
) -> ServicePlan:
    entries = [
        replace(
            entry,
            assignment={
                c.name: float(running[entry.key].get(c.name, 0.0)) for c in service.classes
            },
        )
        for entry in plan.entries
    ]
    return replace(
        plan,
        entries=tuple(entries),
        class_capacity_rps=capacity_by_class(service.classes, entries, plan.scale_factor),
    )
