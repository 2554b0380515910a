"""Constraint (9) of the formulation: a Lagrangian lower bound on the phase-2 (MinCost) optimum,
and the per-service plans it is computed from, as a start for the joint solve.

Why: on contended pools the LP relaxation of the joint model is several per cent below the
integer optimum (each service rounds its replicas up on every configuration it uses), and
HiGHS spends nearly all its time raising its bound, not improving the plan. Pricing the pools
at their LP duals and solving each service alone as an integer program keeps each service's
integrality, which is where the gap comes from; the bound is then within a fraction of a per
cent, and certifies the plans HiGHS finds early.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import pulp

from gpumix.solver import backends, formulation
from gpumix.solver.formulation import Formulation
from gpumix.solver.model import Backend, Objective, SolveOptions, SolveStatus

# Subproblems are solved to (almost) proven optimality; their objective is discounted by this
# relative amount so the bound stays valid whatever the solver's own stopping tolerance was.
_SUBPROBLEM_GAP = 1e-7


@dataclass(frozen=True)
class LowerBound:
    value: float
    # Variable name -> value of the per-service plans put together, when they fit the pools
    # jointly (then they are a feasible plan of the joint model and a start for it).
    start: dict[str, float] | None


def pool_prices(model: Formulation, backend: Backend) -> dict[str, float] | None:
    """λ[p] ≥ 0: the duals of the pool constraints (3) in the LP relaxation of phase 2."""
    problem = model.problem
    if backend is Backend.HIGHS:
        solver: pulp.LpSolver = pulp.HiGHS(mip=False, msg=False)
    else:
        solver = backends.cbc_solver(mip=False)
    problem.solve(solver)
    if problem.status != pulp.LpStatusOptimal:
        return None
    prices: dict[str, float] = {}
    for pool, name in model.pool_constraints.items():
        dual = problem.get_constraint_by_name(name).pi
        # Duals of ≤ rows are ≤ 0 in a minimisation; any λ ≥ 0 gives a valid bound, so clip
        # solver noise of the wrong sign rather than trust it.
        prices[pool] = max(-(dual or 0.0), 0.0)
    return prices


def lower_bound(model: Formulation, options: SolveOptions, deadline: float) -> LowerBound | None:
    """L(λ) at the LP duals; ``None`` when any step fails or the time runs out (no bound)."""
    inputs = model.inputs
    if any(objective is not Objective.MIN_COST for objective in model.objectives):
        return None
    backend = backends.choose_backend(options.backend)
    prices = pool_prices(model, backend)
    if prices is None:
        return None
    total = -sum(
        prices[pool.name] * pool.available_gpus for pool in inputs.pools if pool.name in prices
    )
    start: dict[str, float] = {}
    used: dict[str, int] = {}
    for s, service in enumerate(inputs.services):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return None
        alone = replace(inputs, services=(service,), current_plan={})
        sub = formulation.build(alone, (Objective.MIN_COST,))
        terms = []
        for (_, c), variable in sub.replicas.items():
            candidate = service.candidates[c]
            price = inputs.pool(candidate.pool).price_per_gpu_hour + prices.get(candidate.pool, 0.0)
            terms.append((variable, price * candidate.tensor_parallel))
        sub.problem.sense = pulp.LpMinimize
        sub.problem.setObjective(pulp.LpAffineExpression(terms))
        outcome = backends.run(
            sub.problem,
            backend,
            time_limit_seconds=remaining,
            mip_relative_gap=_SUBPROBLEM_GAP,
            threads=options.threads,
        )
        if outcome.status is not SolveStatus.OPTIMAL or outcome.objective_value is None:
            return None
        # Prices are positive, so the subproblem objective is too: discounting it by the
        # solver's tolerance gives a value no larger than the subproblem's true minimum.
        total += outcome.objective_value * (1 - max(outcome.gap or 0.0, _SUBPROBLEM_GAP))
        for (_, c), variable in sub.replicas.items():
            replicas = round(variable.varValue or 0.0)
            start[model.replicas[s, c].name] = replicas
            candidate = service.candidates[c]
            used[candidate.pool] = (
                used.get(candidate.pool, 0) + replicas * candidate.tensor_parallel
            )
        for (_, class_name, c), variable in sub.assignment.items():
            start[model.assignment[s, class_name, c].name] = variable.varValue or 0.0
    fits = all(used.get(pool.name, 0) <= pool.available_gpus for pool in inputs.pools)
    return LowerBound(total, start if fits else None)
