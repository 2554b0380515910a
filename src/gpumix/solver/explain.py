"""Why a problem is infeasible, in numbers a user can act on.

Each service is examined alone, relaxing one constraint family at a time:

1. candidates — a class that no allowed configuration can serve (memory, SLO, profiles);
2. replica bounds — with budget and availability dropped, do maxReplicas / minOnDemandReplicas
   still make it impossible?
3. budget — with availability dropped, the cheapest plan's cost against the budget;
4. availability — with the budget dropped, the fewest GPUs missing per GPU type;
5. budget and availability together — the cheapest plan on the GPUs available now.

When every service is feasible alone, the services compete for the same pools: the joint model
with an elastic availability constraint says how many GPUs the fleet lacks.

MaxThroughput services can always scale down, so only their floor (minReplicas,
minOnDemandReplicas, the budget) can make them infeasible; the same steps apply.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import pulp

from gpumix.solver import backends, formulation
from gpumix.solver.formulation import AvailabilityMode, Relaxation
from gpumix.solver.model import (
    Objective,
    PlanningInputs,
    Reason,
    ReasonCode,
    RejectionKind,
    ServiceDemand,
    ServiceKey,
    SolveOptions,
    SolveStatus,
)

# Relaxed problems are small; they should not eat the user's whole time limit.
_EXPLAIN_TIME_LIMIT_SECONDS = 10.0


def precheck(service: ServiceDemand) -> tuple[Reason, ...]:
    """Reasons that need no solver: spec problems and classes without any candidate."""
    reasons = [Reason(ReasonCode.INVALID_SPEC, problem) for problem in service.spec_problems]
    if reasons:
        return tuple(reasons)
    refusals = [r.detail for r in service.rejections if r.kind is RejectionKind.NOT_ADMITTED]
    if refusals and not service.candidates:  # one reason for the service, not one per class
        return (Reason(ReasonCode.NO_CAPACITY, refusals[0]),)
    for request_class in service.classes:
        if request_class.demand_rps <= 0:
            continue
        servable = any(
            candidate.throughput_rps.get(request_class.name, 0.0) > 0
            for candidate in service.candidates
        )
        if not servable:
            reasons.append(_no_candidate_reason(service, request_class.name))
    if not service.classes and not service.candidates:
        reasons.append(Reason(ReasonCode.INVALID_SPEC, "no request classes and no candidates"))
    return tuple(reasons)


def _no_candidate_reason(service: ServiceDemand, class_name: str) -> Reason:
    rejections = [
        rejection
        for rejection in service.rejections
        if rejection.request_class in (None, class_name)
    ]
    by_kind: dict[RejectionKind, list[str]] = defaultdict(list)
    for rejection in rejections:
        by_kind[rejection.kind].append(rejection.detail)
    if RejectionKind.UNSCHEDULABLE in by_kind:  # the pools that could have served it
        details = _first_distinct(by_kind[RejectionKind.UNSCHEDULABLE])
        return Reason(
            ReasonCode.NO_CAPACITY,
            f"no pool that can serve class {class_name} can take new replicas now: {details}",
        )
    if RejectionKind.SLO in by_kind:
        details = _first_distinct(by_kind[RejectionKind.SLO])
        return Reason(
            ReasonCode.SLO_UNREACHABLE,
            f"no allowed GPU configuration meets the SLO for class {class_name}: {details}",
        )
    if RejectionKind.MEMORY in by_kind:
        details = _first_distinct(by_kind[RejectionKind.MEMORY])
        return Reason(
            ReasonCode.INVALID_SPEC,
            f"the model does not fit on any allowed GPU configuration for class {class_name} "
            f"(allow larger GPUs, more tensor parallelism or a smaller weight format): {details}",
        )
    if RejectionKind.NOT_PROFILED in by_kind:
        details = _first_distinct(by_kind[RejectionKind.NOT_PROFILED])
        return Reason(
            ReasonCode.INVALID_SPEC,
            f"measured profiles cover no allowed configuration for class {class_name}: {details}",
        )
    if rejections:
        details = _first_distinct([rejection.detail for rejection in rejections])
        return Reason(
            ReasonCode.INVALID_SPEC,
            f"no allowed GPU configuration can serve class {class_name}: {details}",
        )
    return Reason(
        ReasonCode.NO_CAPACITY,
        f"no GPU pool allowed by the placement can serve class {class_name}",
    )


def _first_distinct(details: list[str], limit: int = 3) -> str:
    distinct = list(dict.fromkeys(details))
    text = "; ".join(distinct[:limit])
    if len(distinct) > limit:
        text += f"; and {len(distinct) - limit} more"
    return text


@dataclass(frozen=True)
class _Relaxed:
    status: SolveStatus
    value: float | None
    gpus_by_pool: dict[str, int]


def explain_infeasible(
    inputs: PlanningInputs, objectives: tuple[Objective, ...], options: SolveOptions
) -> dict[ServiceKey, tuple[Reason, ...]]:
    reasons: dict[ServiceKey, tuple[Reason, ...]] = {}
    alone_feasible: list[int] = []
    for index, service in enumerate(inputs.services):
        found = explain_alone(inputs, service, objectives[index], options)
        if found:
            reasons[service.key] = found
        else:
            alone_feasible.append(index)
    if alone_feasible and not reasons:
        contention = explain_contention(inputs, objectives, options)
        for index in alone_feasible:
            reasons[inputs.services[index].key] = (contention,)
    elif alone_feasible:
        for index in alone_feasible:
            reasons[inputs.services[index].key] = (
                Reason(
                    ReasonCode.NO_CAPACITY,
                    "feasible on its own; not planned because other services in the same solve "
                    "are infeasible",
                ),
            )
    return reasons


def explain_alone(
    inputs: PlanningInputs, service: ServiceDemand, objective: Objective, options: SolveOptions
) -> tuple[Reason, ...]:
    alone = replace(inputs, services=(service,), current_plan={})
    objectives = (objective,)
    unlimited = Relaxation(drop_budget=True, availability=AvailabilityMode.DROP)

    # 2. replica bounds, with budget and availability out of the way
    if not _has_plan(_min_cost(alone, objectives, unlimited, options).status):
        return _explain_replica_bounds(alone, service, objectives, options)

    # 3. budget on unlimited GPUs
    reasons: list[Reason] = []
    if service.max_cost_per_hour is not None:
        cheapest = _min_cost(
            alone, objectives, Relaxation(availability=AvailabilityMode.DROP), options
        )
        if not _has_plan(cheapest.status):
            unbudgeted = _min_cost(alone, objectives, unlimited, options)
            reasons.append(
                Reason(
                    ReasonCode.BUDGET_TOO_SMALL,
                    f"{_what(objective)} needs {_at_least(unbudgeted)}"
                    f"${unbudgeted.value or 0:.2f}/h "
                    f"on the allowed GPUs; budget is ${service.max_cost_per_hour:.2f}/h",
                )
            )

    # 4. availability, budget dropped
    without_budget = _min_cost(alone, objectives, Relaxation(drop_budget=True), options)
    if not _has_plan(without_budget.status):
        shortfall = _min_shortfall(alone, objectives, Relaxation(drop_budget=True), options)
        reasons.append(Reason(ReasonCode.NO_CAPACITY, _shortfall_message(inputs, shortfall)))
    if reasons:
        return tuple(reasons)

    # 5. both: each family alone is satisfiable, together they are not
    if service.max_cost_per_hour is not None and not _has_plan(
        _min_cost(alone, objectives, formulation.NO_RELAXATION, options).status
    ):
        return (
            Reason(
                ReasonCode.BUDGET_TOO_SMALL,
                f"on the GPUs available now, {_what(objective)} needs "
                f"{_at_least(without_budget)}${without_budget.value or 0:.2f}/h; budget is "
                f"${service.max_cost_per_hour:.2f}/h",
            ),
        )
    return ()


def _explain_replica_bounds(
    alone: PlanningInputs,
    service: ServiceDemand,
    objectives: tuple[Objective, ...],
    options: SolveOptions,
) -> tuple[Reason, ...]:
    reasons: list[Reason] = []
    no_max = Relaxation(
        drop_budget=True, availability=AvailabilityMode.DROP, drop_max_replicas=True
    )
    if _has_plan(_min_cost(alone, objectives, no_max, options).status):
        needed = _min_replicas(alone, objectives, no_max, options)
        reasons.append(
            Reason(
                ReasonCode.INVALID_SPEC,
                f"demand needs {_at_least(needed)}{round(needed.value or 0)} replicas; "
                f"maxReplicas is {service.max_replicas}",
            )
        )
        return tuple(reasons)
    pools = {pool.name: pool for pool in alone.pools}
    on_demand_candidates = [
        candidate for candidate in service.candidates if not pools[candidate.pool].preemptible
    ]
    if service.min_on_demand_replicas > 0 and not on_demand_candidates:
        reasons.append(
            Reason(
                ReasonCode.NO_CAPACITY,
                f"minOnDemandReplicas is {service.min_on_demand_replicas} but no allowed "
                "on-demand or reserved pool can serve the model",
            )
        )
    elif service.min_replicas > service.max_replicas:
        reasons.append(
            Reason(
                ReasonCode.INVALID_SPEC,
                f"minReplicas {service.min_replicas} exceeds maxReplicas {service.max_replicas}",
            )
        )
    else:
        reasons.append(
            Reason(
                ReasonCode.INVALID_SPEC,
                f"minOnDemandReplicas {service.min_on_demand_replicas} and maxReplicas "
                f"{service.max_replicas} cannot both hold with the allowed pools",
            )
        )
    return tuple(reasons)


def explain_contention(
    inputs: PlanningInputs, objectives: tuple[Objective, ...], options: SolveOptions
) -> Reason:
    shortfall = _min_shortfall(inputs, objectives, Relaxation(), options)
    if _has_plan(shortfall.status) and (shortfall.value or 0) > 0:
        message = "the services together exceed the fleet: " + _shortfall_message(inputs, shortfall)
        return Reason(ReasonCode.NO_CAPACITY, message)
    return Reason(
        ReasonCode.NO_CAPACITY,
        "each service can be planned alone but not all of them together on the shared pools",
    )


def _shortfall_message(inputs: PlanningInputs, shortfall: _Relaxed) -> str:
    if not _has_plan(shortfall.status):
        return "the allowed pools cannot serve the demand"
    needed: dict[str, int] = defaultdict(int)
    available: dict[str, int] = defaultdict(int)
    short_types: set[str] = set()
    for pool in inputs.pools:
        used = shortfall.gpus_by_pool.get(pool.name, 0)
        needed[pool.gpu_type] += used
        available[pool.gpu_type] += pool.available_gpus
        if used > pool.available_gpus:
            short_types.add(pool.gpu_type)
    parts = [
        f"needs {needed[gpu_type]} {gpu_type} GPUs, {available[gpu_type]} available"
        for gpu_type in sorted(short_types)
    ]
    return "; ".join(parts) if parts else "the allowed pools cannot serve the demand"


def _what(objective: Objective) -> str:
    if objective is Objective.MAX_THROUGHPUT:
        return "the smallest plan (minReplicas, minOnDemandReplicas)"
    return "demand"


def _at_least(result: _Relaxed) -> str:
    # Only a proven optimum is a lower bound; a time-limited one is just a plan we found.
    return "at least " if result.status is SolveStatus.OPTIMAL else "about "


def _has_plan(status: SolveStatus) -> bool:
    return status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)


def _min_cost(
    inputs: PlanningInputs,
    objectives: tuple[Objective, ...],
    relaxation: Relaxation,
    options: SolveOptions,
) -> _Relaxed:
    model = formulation.build(inputs, objectives, relaxation)
    formulation.set_objective_min_cost(model)
    return _run(model, options)


def _min_replicas(
    inputs: PlanningInputs,
    objectives: tuple[Objective, ...],
    relaxation: Relaxation,
    options: SolveOptions,
) -> _Relaxed:
    model = formulation.build(inputs, objectives, relaxation)
    model.problem.setObjective(pulp.lpSum(model.replicas.values()))
    return _run(model, options)


def _min_shortfall(
    inputs: PlanningInputs,
    objectives: tuple[Objective, ...],
    relaxation: Relaxation,
    options: SolveOptions,
) -> _Relaxed:
    model = formulation.build(
        inputs, objectives, replace(relaxation, availability=AvailabilityMode.ELASTIC)
    )
    formulation.set_objective_min_shortfall(model)
    return _run(model, options)


def _run(model: formulation.Formulation, options: SolveOptions) -> _Relaxed:
    outcome = backends.run(
        model.problem,
        options.backend,
        time_limit_seconds=min(options.time_limit_seconds, _EXPLAIN_TIME_LIMIT_SECONDS),
        mip_relative_gap=options.mip_relative_gap,
        threads=options.threads,
    )
    gpus: dict[str, int] = defaultdict(int)
    if _has_plan(outcome.status):
        for (s, c), variable in model.replicas.items():
            candidate = model.inputs.services[s].candidates[c]
            gpus[candidate.pool] += round(variable.varValue or 0) * candidate.tensor_parallel
    return _Relaxed(outcome.status, outcome.objective_value, dict(gpus))
