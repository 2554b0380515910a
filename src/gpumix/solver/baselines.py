"""The best homogeneous plan per allowed GPU type, and the savings of the mixed plan against it.

A baseline plans one service alone on one GPU type (any of its pools, tensor-parallel sizes,
weight formats and capacity types) under the service's own constraints: budget, replica bounds,
spot hedge and the pools' availability. Planned alone, it may use GPUs the joint plan gave to
other services, so the comparison never flatters the mixed plan.
"""

from __future__ import annotations

from dataclasses import replace

from gpumix.solver import extract
from gpumix.solver.model import (
    Baseline,
    Objective,
    PlanningInputs,
    ServiceDemand,
    ServicePlan,
    SolveOptions,
    SolveStatus,
)


def allowed_gpu_types(service: ServiceDemand, inputs: PlanningInputs) -> list[str]:
    pools = {pool.name: pool for pool in inputs.pools}
    types = {pools[candidate.pool].gpu_type for candidate in service.candidates}
    types |= {rejection.gpu_type for rejection in service.rejections}
    return sorted(types)


def homogeneous_baseline(
    inputs: PlanningInputs,
    service: ServiceDemand,
    objective: Objective,
    gpu_type: str,
    options: SolveOptions,
) -> Baseline:
    pools = {pool.name: pool for pool in inputs.pools}
    candidates = tuple(
        candidate for candidate in service.candidates if pools[candidate.pool].gpu_type == gpu_type
    )
    restricted = replace(service, candidates=candidates)
    servable = all(
        any(candidate.throughput_rps.get(c.name, 0.0) > 0 for candidate in candidates)
        for c in restricted.classes
        if c.demand_rps > 0
    )
    if not servable:
        return Baseline(gpu_type, SolveStatus.INFEASIBLE, None, None)
    alone = replace(inputs, services=(restricted,), current_plan={})
    # Imported here: planner imports this module to attach baselines to its results.
    from gpumix.solver.planner import optimise

    optimised = optimise(alone, (objective,), options, minimise_churn=False)
    if optimised.status not in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE):
        return Baseline(gpu_type, optimised.status, None, None)
    (plan,) = extract.service_plans(optimised.formulation)
    return Baseline(gpu_type, optimised.status, plan.cost_per_hour, plan.served_rps)


def with_baselines(
    inputs: PlanningInputs,
    plans: tuple[ServicePlan, ...],
    objectives: tuple[Objective, ...],
    options: SolveOptions,
) -> tuple[ServicePlan, ...]:
    services = {service.key: service for service in inputs.services}
    updated: list[ServicePlan] = []
    for plan, objective in zip(plans, objectives, strict=True):
        service = services[plan.key]
        baselines = tuple(
            homogeneous_baseline(inputs, service, objective, gpu_type, options)
            for gpu_type in allowed_gpu_types(service, inputs)
        )
        savings, gain = _savings(plan, baselines, objective)
        updated.append(
            replace(
                plan, baselines=baselines, savings_percent=savings, throughput_gain_percent=gain
            )
        )
    return tuple(updated)


def _savings(
    plan: ServicePlan, baselines: tuple[Baseline, ...], objective: Objective
) -> tuple[float | None, float | None]:
    feasible = [b for b in baselines if b.cost_per_hour is not None and b.served_rps is not None]
    if not plan.entries or not feasible:
        return None, None
    if objective is Objective.MIN_COST:
        best_cost = min(b.cost_per_hour or 0.0 for b in feasible)
        if best_cost <= 0:
            return None, None
        return 100.0 * (best_cost - plan.cost_per_hour) / best_cost, None
    best = max(feasible, key=lambda b: (b.served_rps or 0.0, -(b.cost_per_hour or 0.0)))
    best_served = best.served_rps or 0.0
    if best_served <= 0 or plan.served_rps <= 0 or not best.cost_per_hour:
        return None, None
    gain = 100.0 * (plan.served_rps / best_served - 1.0)
    best_unit_cost = best.cost_per_hour / best_served
    unit_cost = plan.cost_per_hour / plan.served_rps
    return 100.0 * (best_unit_cost - unit_cost) / best_unit_cost, gain
