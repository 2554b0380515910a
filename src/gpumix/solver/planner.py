"""``solve``: run the lexicographic phases of the formulation, then extract, baseline, explain,
and re-check the plan.

Services that cannot be planned on their own terms (a class with no candidate configuration,
a spec problem) are reported infeasible up front and left out of the joint model, so one broken
service does not block the plans of the others that share its pools.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import pulp

from gpumix.solver import admission, backends, formulation, lagrangian
from gpumix.solver.baselines import with_baselines
from gpumix.solver.evaluate import evaluate
from gpumix.solver.explain import explain_infeasible, precheck
from gpumix.solver.extract import service_plans
from gpumix.solver.formulation import NO_RELAXATION, Formulation, Relaxation
from gpumix.solver.model import (
    Objective,
    PlanningInputs,
    PlanResult,
    Reason,
    ReasonCode,
    ServiceDemand,
    ServiceKey,
    ServicePlan,
    SolveOptions,
    SolveStatus,
)
from gpumix.solver.stability import keep_current_assignments


@dataclass
class Optimised:
    """A solved formulation and what the phases proved about it."""

    formulation: Formulation
    status: SolveStatus
    gap: float | None
    seconds: float


def objectives_for(
    services: tuple[ServiceDemand, ...], override: Objective | None
) -> tuple[Objective, ...]:
    return tuple(override or service.objective for service in services)


def optimise(
    inputs: PlanningInputs,
    objectives: tuple[Objective, ...],
    options: SolveOptions,
    relaxation: Relaxation = NO_RELAXATION,
    *,
    minimise_churn: bool = True,
    certify: bool = False,
) -> Optimised:
    """Phases 1-3 of the formulation on one model, each fixing the optimum of the one before.

    A phase the time limit cuts short keeps the previous phase's plan: the status is then
    ``Feasible``, never ``Optimal``.
    """
    started = time.perf_counter()
    deadline = started + options.time_limit_seconds
    model = formulation.build(inputs, objectives, relaxation)
    statuses: list[SolveStatus] = []
    gaps: list[float | None] = []
    stop_gap = max(options.mip_relative_gap, options.stop_relative_gap)

    def run_phase(
        bound: lagrangian.LowerBound | None = None,
    ) -> backends.BackendOutcome:
        outcome = backends.run(
            model.problem,
            options.backend,
            time_limit_seconds=max(deadline - time.perf_counter(), 0.01),
            mip_relative_gap=stop_gap,
            threads=options.threads,
            objective_target=_target(bound.value, stop_gap) if bound else None,
        )
        if bound is not None and bound.start is not None and bound.cost is not None:
            found = outcome.objective_value
            if not _has_plan(outcome.status) or found is None or found > bound.cost + 1e-9:
                # The decomposition's plan is better than what the MILP found in its time.
                _assign(model.problem, bound.start)
                outcome = backends.BackendOutcome(
                    SolveStatus.FEASIBLE, bound.cost, None, outcome.seconds, outcome.backend
                )
        if bound is not None and outcome.objective_value is not None:
            outcome = _certified(outcome, bound.value, options.mip_relative_gap)
        if (
            outcome.status is SolveStatus.OPTIMAL
            and (outcome.gap or 0.0) > options.mip_relative_gap
        ):
            # Stopped at ``stop_relative_gap``: a good plan, not a proven optimum.
            outcome = replace(outcome, status=SolveStatus.FEASIBLE)
        statuses.append(outcome.status)
        gaps.append(outcome.gap)
        return outcome

    def finish(status: SolveStatus) -> Optimised:
        known_gaps = [gap for gap in gaps if gap is not None]
        gap = max(known_gaps) if known_gaps else None
        if status is SolveStatus.OPTIMAL and any(s is SolveStatus.FEASIBLE for s in statuses):
            status = SolveStatus.FEASIBLE
        return Optimised(model, status, gap, time.perf_counter() - started)

    if model.throughput_services():
        min_scale: float | None = None
        if len(model.throughput_services()) > 1:
            floor = formulation.set_objective_max_min_scale(model)
            outcome = run_phase()
            if not _has_plan(outcome.status):
                return finish(outcome.status)
            min_scale = floor.varValue or 0.0
            # Fix the fair share before maximising the total, or phase 1b could trade it away.
            formulation.fix_scale(model, 0.0, min_scale)
        formulation.set_objective_max_total_scale(model)
        outcome = run_phase()
        if not _has_plan(outcome.status):
            return finish(outcome.status)
        formulation.fix_scale(model, outcome.objective_value or 0.0, None)

    snapshot = _values(model.problem) if statuses else None
    formulation.set_objective_min_cost(model)
    bound = None
    if certify and relaxation == NO_RELAXATION and not model.throughput_services():
        # Most of the time: on contention for one pool the decomposition's plan and bound
        # improve much faster than branch and bound on the joint model (which gets the rest,
        # and all of it when the decomposition stops early or gives up).
        bound_deadline = time.perf_counter() + 0.9 * (deadline - time.perf_counter())
        bound = lagrangian.lower_bound(model, options, bound_deadline)
    decided = None
    if bound is not None:
        # Too little time left for the joint MILP to improve on the plan: report it as is.
        final = deadline - time.perf_counter() < max(0.5, 0.1 * options.time_limit_seconds)
        decided = _decided(bound, options, final)
    if decided is not None and bound is not None and bound.start is not None:
        # The decomposition's plan is within the gap of bound (10): no MILP search needed.
        _assign(model.problem, bound.start)
        outcome = backends.BackendOutcome(
            decided[0], bound.cost, decided[1], 0.0, backends.choose_backend(options.backend)
        )
        statuses.append(outcome.status)
        gaps.append(outcome.gap)
    else:
        outcome = run_phase(bound)
    if not _has_plan(outcome.status):
        if snapshot is None:
            return finish(outcome.status)
        _restore(model.problem, snapshot)
        return finish(SolveStatus.FEASIBLE)

    current = _current_indices(inputs) if minimise_churn else {}
    if current and time.perf_counter() < deadline:
        optimum_cost = outcome.objective_value or 0.0
        snapshot = _values(model.problem)
        cost_cap = optimum_cost * (1 + options.churn_cost_tolerance) + 1e-6
        formulation.set_objective_min_churn(model, cost_cap, current)
        outcome = run_phase()
        if not _has_plan(outcome.status):
            _restore(model.problem, snapshot)
            return finish(SolveStatus.FEASIBLE)
    return finish(SolveStatus.OPTIMAL)


def _decided(
    bound: lagrangian.LowerBound, options: SolveOptions, final: bool
) -> tuple[SolveStatus, float] | None:
    """Status and gap of the bound's own plan, when it is close enough to stop there (or
    ``final``: there is no time to look further)."""
    if bound.start is None or bound.cost is None:
        return None
    gap = max(bound.cost - bound.value, 0.0) / max(abs(bound.cost), 1e-9)
    if gap <= options.mip_relative_gap:
        return SolveStatus.OPTIMAL, gap
    if gap <= options.stop_relative_gap or final:
        return SolveStatus.FEASIBLE, gap
    return None


def _assign(problem: pulp.LpProblem, values: dict[str, float]) -> None:
    for variable in problem.variables():
        variable.varValue = values.get(variable.name, 0.0)


def _target(bound: float, relative_gap: float) -> float:
    """The cost at or below which a plan is within ``relative_gap`` of ``bound``."""
    return bound / (1 - relative_gap) if bound > 0 else bound


def _certified(
    outcome: backends.BackendOutcome, bound: float, relative_gap: float
) -> backends.BackendOutcome:
    """The outcome with its gap measured against bound (9) too, keeping the smaller; a plan
    within the tolerance of (9) is optimal whatever the solver proved itself."""
    value = outcome.objective_value
    if value is None or outcome.status not in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE):
        return outcome
    gap = max(value - bound, 0.0) / max(abs(value), 1e-9)
    if outcome.gap is not None:
        gap = min(gap, outcome.gap)
    status = SolveStatus.OPTIMAL if gap <= relative_gap else outcome.status
    return replace(outcome, status=status, gap=gap)


@dataclass
class _Separate:
    plans: tuple[ServicePlan, ...]
    summary: tuple[SolveStatus, float | None, float, int, int]


def _solve_separately(
    inputs: PlanningInputs, objectives: tuple[Objective, ...], options: SolveOptions
) -> _Separate | None:
    """Exact decomposition: plan each service alone; if the plans fit the pools together, they
    are jointly optimal, because dropping the shared availability constraint (3) can only
    improve every phase's objective, and each phase's objective is separable by service
    (max-min and total scale are attained when every service reaches its own maximum).
    When they do not fit, the caller solves the joint model.

    Branch and bound on the joint model has to close the gap of all services at once; alone,
    each closes in milliseconds.
    """
    if len(inputs.services) < 2:
        return None
    started = time.perf_counter()
    plans: list[ServicePlan] = []
    statuses: list[SolveStatus] = []
    gaps: list[float] = []
    variables = constraints = 0
    used: dict[str, int] = {}
    for service, objective in zip(inputs.services, objectives, strict=True):
        remaining = options.time_limit_seconds - (time.perf_counter() - started)
        if remaining <= 0:
            return None
        current = {
            key: replicas for key, replicas in inputs.current_plan.items() if key[0] == service.key
        }
        alone = replace(inputs, services=(service,), current_plan=current)
        optimised = optimise(alone, (objective,), replace(options, time_limit_seconds=remaining))
        if not _has_plan(optimised.status):
            return None
        statuses.append(optimised.status)
        gaps.append(optimised.gap or 0.0)
        variables += optimised.formulation.variable_count
        constraints += optimised.formulation.constraint_count
        (plan,) = service_plans(optimised.formulation)
        plans.append(plan)
        for entry in plan.entries:
            used[entry.pool] = used.get(entry.pool, 0) + entry.gpus
    if any(used[pool.name] > pool.available_gpus for pool in inputs.pools if pool.name in used):
        return None
    status = (
        SolveStatus.OPTIMAL
        if all(s is SolveStatus.OPTIMAL for s in statuses)
        else SolveStatus.FEASIBLE
    )
    seconds = time.perf_counter() - started
    return _Separate(tuple(plans), (status, max(gaps), seconds, variables, constraints))


@dataclass
class _Partial:
    plans: tuple[ServicePlan, ...]
    refused: dict[ServiceKey, tuple[Reason, ...]]
    seconds: float


def _plan_admitted(
    inputs: PlanningInputs,
    objectives: tuple[Objective, ...],
    options: SolveOptions,
    started: float,
) -> _Partial:
    """Plans for the services that can be planned together (see :mod:`admission`)."""
    began = time.perf_counter()

    def remaining() -> SolveOptions:
        left = options.time_limit_seconds - (time.perf_counter() - started)
        return replace(options, time_limit_seconds=max(left, 0.01))

    def feasible(subset: PlanningInputs, subset_objectives: tuple[Objective, ...]) -> bool:
        trial = optimise(subset, subset_objectives, remaining(), minimise_churn=False)
        return _has_plan(trial.status)

    chosen = admission.admit(inputs, objectives, options, feasible)
    plans: tuple[ServicePlan, ...] = ()
    if chosen.admitted:
        optimised = optimise(
            admission.restrict(chosen.inputs, chosen.admitted),
            chosen.objectives,
            remaining(),
            certify=True,
        )
        if _has_plan(optimised.status):
            plans = tuple(
                replace(plan, status=optimised.status)
                for plan in service_plans(optimised.formulation)
            )
    return _Partial(plans, chosen.refused, time.perf_counter() - began)


def _has_plan(status: SolveStatus) -> bool:
    return status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)


def _values(problem: pulp.LpProblem) -> dict[str, float | None]:
    return {variable.name: variable.varValue for variable in problem.variables()}


def _restore(problem: pulp.LpProblem, values: dict[str, float | None]) -> None:
    for variable in problem.variables():
        variable.varValue = values.get(variable.name)


def _current_indices(inputs: PlanningInputs) -> dict[tuple[int, int], int]:
    indices: dict[tuple[int, int], int] = {}
    for s, service in enumerate(inputs.services):
        for c, candidate in enumerate(service.candidates):
            replicas = inputs.current_plan.get((service.key, candidate.key), 0)
            if replicas > 0:
                indices[s, c] = replicas
    return indices


def churn(inputs: PlanningInputs, plans: tuple[ServicePlan, ...]) -> int:
    """Replicas started plus replicas stopped, against the current plan."""
    planned = {(plan.key, entry.key): entry.replicas for plan in plans for entry in plan.entries}
    planned_services = {plan.key for plan in plans}
    keys = set(planned) | {key for key in inputs.current_plan if key[0] in planned_services}
    return sum(abs(planned.get(key, 0) - inputs.current_plan.get(key, 0)) for key in keys)


def solve(inputs: PlanningInputs, options: SolveOptions | None = None) -> PlanResult:
    """Plan every service jointly; see :mod:`gpumix.solver.formulation` for the model."""
    options = options or SolveOptions()
    services = tuple(sorted(inputs.services, key=lambda service: service.key))
    inputs = replace(
        inputs, services=services, pools=tuple(sorted(inputs.pools, key=lambda pool: pool.name))
    )
    objectives = objectives_for(services, options.objective_override)

    early_reasons = {service.key: precheck(service) for service in services}
    plannable = tuple(service for service in services if not early_reasons[service.key])
    # Services not planned now keep what they run (operator: last good plan of an invalid
    # spec); the current plan may name services that are not inputs at all.
    not_planned = {key for key, _ in inputs.current_plan} - {s.key for s in plannable}
    joint_inputs = admission.reserve_kept_plans(replace(inputs, services=plannable), not_planned)
    joint_objectives = objectives_for(plannable, options.objective_override)

    plans: dict[ServiceKey, ServicePlan] = {}
    reasons: dict[ServiceKey, tuple[Reason, ...]] = dict(early_reasons)
    status = SolveStatus.OPTIMAL
    gap: float | None = 0.0
    variables = constraints = 0
    solve_seconds = 0.0
    started = time.perf_counter()
    separate = None
    if inputs.current_plan or any(o is not Objective.MIN_COST for o in joint_objectives):
        # MinCost alone without a current plan: the decomposition in ``optimise`` starts with
        # exactly this (every service alone) and goes on when the plans do not fit.
        separate = _solve_separately(joint_inputs, joint_objectives, options)
    if separate is not None:
        status, gap, solve_seconds, variables, constraints = separate.summary
        for plan in separate.plans:
            plans[plan.key] = replace(plan, status=status)
    elif plannable:
        remaining = options.time_limit_seconds - (time.perf_counter() - started)
        optimised = optimise(
            joint_inputs,
            joint_objectives,
            replace(options, time_limit_seconds=max(remaining, 0.01)),
            certify=True,
        )
        status, gap = optimised.status, optimised.gap
        variables = optimised.formulation.variable_count
        constraints = optimised.formulation.constraint_count
        solve_seconds = optimised.seconds
        if _has_plan(status):
            for plan in service_plans(optimised.formulation):
                plans[plan.key] = replace(plan, status=status)
        elif status is SolveStatus.INFEASIBLE and options.explain and len(plannable) > 1:
            # One service's impossible spec must not take the others' plans with it.
            partial = _plan_admitted(joint_inputs, joint_objectives, options, started)
            reasons.update(partial.refused)
            plans.update({plan.key: plan for plan in partial.plans})
            solve_seconds += partial.seconds
        elif status is SolveStatus.INFEASIBLE and options.explain:
            reasons.update(explain_infeasible(joint_inputs, joint_objectives, options))
        elif status is SolveStatus.NO_SOLUTION:
            message = (
                f"the time limit ({options.time_limit_seconds:g} s) ran out before any plan was "
                "found; raise --time-limit"
            )
            for service in plannable:
                reasons[service.key] = (Reason(ReasonCode.TIME_LIMIT, message),)
    if any(early_reasons.values()):
        status = SolveStatus.INFEASIBLE

    service_results: list[ServicePlan] = []
    for service, objective in zip(services, objectives, strict=True):
        found = plans.get(service.key)
        if found is None:
            found = _empty_plan(service, objective, reasons.get(service.key, ()))
        service_results.append(found)
    results = keep_current_assignments(tuple(service_results), services, inputs.current_assignment)
    if options.baselines:
        results = with_baselines(inputs, results, objectives, options)

    planned = tuple(plan for plan in results if _has_plan(plan.status))
    violations = evaluate(planned, inputs)
    churn_replicas = churn(inputs, planned) if inputs.current_plan else None
    return PlanResult(
        status=status,
        objective=_objective_label(objectives),
        gap=gap if _has_plan(status) else None,
        solve_seconds=solve_seconds,
        total_cost_per_hour=sum(plan.cost_per_hour for plan in results),
        services=results,
        backend=backends.choose_backend(options.backend),
        variables=variables,
        constraints=constraints,
        churn_replicas=churn_replicas,
        violations=violations,
    )


def _empty_plan(
    service: ServiceDemand, objective: Objective, reasons: tuple[Reason, ...]
) -> ServicePlan:
    return ServicePlan(
        namespace=service.namespace,
        name=service.name,
        objective=objective,
        cost_per_hour=0.0,
        demand_rps=service.demand_rps,
        scale_factor=0.0,
        served_rps=0.0,
        entries=(),
        class_capacity_rps={c.name: 0.0 for c in service.classes},
        class_demand_rps={c.name: c.demand_rps for c in service.classes},
        status=SolveStatus.INFEASIBLE,
        reasons=reasons,
    )


def _objective_label(objectives: tuple[Objective, ...]) -> str:
    distinct = set(objectives)
    if len(distinct) == 1:
        return next(iter(distinct)).value
    return "Mixed" if distinct else Objective.MIN_COST.value
