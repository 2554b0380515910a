"""Which services to plan when they cannot all be planned together.

The joint model is all-or-nothing: one service whose budget is too small makes the whole MILP
infeasible, and with it every other service that shares the fleet. An operator must not hold a
cluster's services hostage to one team's spec, so when the joint solve is infeasible:

1. services infeasible on their own (``explain.explain_alone`` finds a reason) are set aside
   with that reason;
2. if the others still do not fit together, they are admitted one at a time, each kept only if
   the admitted set stays feasible: services that are running now first (their plan is what
   serves traffic, and a newcomer must not evict it), then in key order, so the choice is
   deterministic and does not flap between passes;
3. the caller plans the admitted services for real, on the pools less the GPUs that refused
   services hold under their current plan (they keep running it); the rest keep their reasons.

Greedy admission does not maximise the number of services admitted (that is a packing problem
of its own); it protects running services, which is the property users notice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from gpumix.solver.explain import explain_alone, explain_contention
from gpumix.solver.model import (
    Objective,
    PlanningInputs,
    Reason,
    ReasonCode,
    ServiceDemand,
    ServiceKey,
    SolveOptions,
)

# (inputs restricted to some services, their objectives) -> can they all be planned together?
FeasibilityCheck = Callable[[PlanningInputs, tuple[Objective, ...]], bool]


@dataclass(frozen=True)
class Admission:
    # The inputs to plan the admitted services with: pools less the GPUs that refused
    # services keep running on.
    inputs: PlanningInputs
    admitted: tuple[ServiceDemand, ...]
    objectives: tuple[Objective, ...]
    refused: dict[ServiceKey, tuple[Reason, ...]]


def reserve_kept_plans(inputs: PlanningInputs, kept: set[ServiceKey]) -> PlanningInputs:
    """The pools less the GPUs that ``kept`` services hold under the current plan.

    A service that is not (re)planned in this solve — its spec is invalid, or it is refused —
    keeps its last good plan running (nothing is torn down for a bad spec), so its GPUs are
    not free for the others, even though the fleet inventory counts gpumix's own pods as
    free for re-planning.
    """
    held: dict[str, int] = {}
    for (service_key, config), replicas in inputs.current_plan.items():
        if service_key in kept and replicas > 0:
            held[config.pool] = held.get(config.pool, 0) + replicas * config.tensor_parallel
    if not held:
        return inputs
    pools = tuple(
        replace(pool, available_gpus=max(0, pool.available_gpus - held.get(pool.name, 0)))
        for pool in inputs.pools
    )
    return replace(inputs, pools=pools)


def restrict(inputs: PlanningInputs, services: tuple[ServiceDemand, ...]) -> PlanningInputs:
    """The inputs with only ``services`` (and their part of the current plan)."""
    keys = {service.key for service in services}
    current = {key: value for key, value in inputs.current_plan.items() if key[0] in keys}
    return replace(inputs, services=services, current_plan=current)


def admit(
    inputs: PlanningInputs,
    objectives: tuple[Objective, ...],
    options: SolveOptions,
    feasible: FeasibilityCheck,
) -> Admission:
    """Split the services of an infeasible joint problem into those to plan and those refused."""
    objective_of = dict(zip((s.key for s in inputs.services), objectives, strict=True))
    refused: dict[ServiceKey, tuple[Reason, ...]] = {}
    alone_feasible: list[ServiceDemand] = []
    for service in inputs.services:
        reasons = explain_alone(inputs, service, objective_of[service.key], options)
        if reasons:
            refused[service.key] = reasons
        else:
            alone_feasible.append(service)

    def objectives_of(services: tuple[ServiceDemand, ...]) -> tuple[Objective, ...]:
        return tuple(objective_of[service.key] for service in services)

    candidates = tuple(alone_feasible)
    inputs = reserve_kept_plans(inputs, set(refused))
    if candidates and feasible(restrict(inputs, candidates), objectives_of(candidates)):
        return Admission(inputs, candidates, objectives_of(candidates), refused)

    running = {key[0] for key, replicas in inputs.current_plan.items() if replicas > 0}
    order = sorted(candidates, key=lambda s: (s.key not in running, s.key))
    admitted: tuple[ServiceDemand, ...] = ()
    for service in order:
        trial = (*admitted, service)
        if feasible(restrict(inputs, trial), objectives_of(trial)):
            admitted = trial
            continue
        together = restrict(inputs, trial)
        contention = explain_contention(together, objectives_of(trial), options)
        # A refused service that runs keeps running: the next ones cannot count on its GPUs.
        inputs = reserve_kept_plans(inputs, {service.key})
        others = ", ".join(f"{s.namespace}/{s.name}" for s in admitted) or "no other service"
        refused[service.key] = (
            Reason(
                ReasonCode.NO_CAPACITY,
                f"feasible on its own, but not next to the services already planned on the "
                f"shared pools ({others}): {contention.message}",
            ),
        )
    # Keep the inputs' (key) order: the joint model and its output are ordered by key.
    admitted_keys = {service.key for service in admitted}
    kept = tuple(s for s in inputs.services if s.key in admitted_keys)
    return Admission(inputs, kept, objectives_of(kept), refused)
