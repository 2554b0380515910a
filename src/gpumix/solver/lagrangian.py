"""Lower bounds on the phase-2 (MinCost) optimum from pool prices, and a plan to start from.

Why: on contended pools the LP relaxation of the joint model is several per cent below the
integer optimum (each service rounds its replicas up on every configuration it uses), and
HiGHS spends nearly all its time raising its bound, not improving the plan. Pricing the pools
at their LP duals λ and solving each service alone as an integer program keeps each service's
integrality: that is bound (9), ~0.7 % short on the benchmark. Keeping the most contended pool
shared (bound (10), ``decomposition``) closes the rest there, and yields a plan that is
optimal when the other pools do not bind; otherwise it starts the joint solve and certifies
the plans HiGHS finds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pulp

from gpumix.solver import backends, decomposition
from gpumix.solver.formulation import Formulation
from gpumix.solver.model import Backend, Objective, SolveOptions


@dataclass(frozen=True)
class LowerBound:
    value: float
    # Variable name -> value of a plan that fits the pools jointly (a feasible plan of the
    # joint model and a start for it; variables not named are 0), and its cost.
    start: dict[str, float] | None
    cost: float | None = None
    solves: int = 0


def pool_prices(model: Formulation, backend: Backend) -> dict[str, float] | None:
    """λ[p] ≥ 0: the duals of the pool constraints (3) in the LP relaxation of phase 2."""
    problem = model.problem
    if backend is Backend.HIGHS:
        backends.silence_highs_banner()
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
    """Bound (10) at the LP duals (at least as strong as (9)), with the decomposition's plan as
    a start; ``None`` when any step fails or the time runs out (no bound)."""
    if any(objective is not Objective.MIN_COST for objective in model.objectives):
        return None
    prices = pool_prices(model, backends.choose_backend(options.backend))
    if prices is None:
        return None
    found = decomposition.decompose(
        model.inputs,
        prices,
        deadline,
        stop_gap=max(options.mip_relative_gap, options.stop_relative_gap),
        workers=options.threads or _cores(),
    )
    if found is None or found.bound is None:
        return None
    start: dict[str, float] | None = None
    if found.plan is not None:
        start = {}
        for s, solution in enumerate(found.plan):
            for c, replicas in enumerate(solution.replicas):
                start[model.replicas[s, c].name] = replicas
            for (class_name, c), share in solution.shares.items():
                start[model.assignment[s, class_name, c].name] = share
    return LowerBound(found.bound, start, found.cost, found.solves)


def _cores() -> int:
    """The decomposition's default worker count: the CPUs this process may run on, at most 8
    (its batches are one subproblem per service, mostly a few at a time)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))
