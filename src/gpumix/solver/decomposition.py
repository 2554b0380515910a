"""Bound (10) and a plan for MinCost: keep one contended pool shared, price the others.

Why: on the benchmark fleets every service wants the same cheapest pool (RTX 4090 spot), and
the joint MILP spends its time on that contention: the LP relaxation is ~4 % low, bound (9) is
~0.7 % low, and branch and bound over all services at once needs minutes at 10 services. The
contention on one pool is a resource-allocation problem: with
    f_s(g) = min cost of service s alone using at most g GPUs of the pool P*
             (its other pools priced at π + λ, each capped at its availability)
the problem
    (10) min Σ_s f_s(g_s)  s.t.  Σ_s g_s ≤ A[P*]        (− Σ_{p≠P*} λ[p] A[p])
relaxes only the other pools' sharing constraints (3), so it is a lower bound on the phase-2
optimum for any λ ≥ 0, at least as strong as (9) at the same λ (which also relaxes P*). It is
solved exactly by dynamic programming over the GPUs of P*. Each f_s(g) is a small MILP
(``subproblem``), so f_s is evaluated lazily: the DP runs on lower bounds of f_s
    f_s(g) ≥ f_s(g')                       for an evaluated g' ≥ g (f_s is non-increasing)
    f_s(g) ≥ φ_s(μ) − μ g                   φ_s(μ) = min cost + μ·(GPUs of P*) (a tangent)
and f_s is evaluated wherever the DP's allocation rests on a bound, until it rests only on
evaluated values: then the allocation is optimal for (10). Solving service s with cap g gives
a plan that uses u ≤ g GPUs, and f_s is then known on all of [u, g].

The services' plans at that allocation share P* correctly; if they also fit every other pool,
they are a feasible plan whose cost is at most (10) + Σ λ[p]·(A[p] − used[p]), so with λ = 0
on those pools (the usual case: only P* binds) the plan is optimal. Otherwise ``repair``
re-plans the services on overflowing pools one at a time in what is left, and the plan goes to
the joint MILP as a start, with (10) as the bound that certifies it.

Cost: the DP needs f_s at nearly every point near its allocation (f_s falls in steps of about
one replica's price difference, its convex hull is not close enough), so the work is the
number of subproblem solves times their cost. Each capped solve starts from the cheaper of the
plan at the nearest smaller cap and the one at the nearest larger cap moved off P*
(``ServiceSubproblem.fitted``); solves of different services (all services alone, the
tangents, the points of one DP round) run on one thread per core.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

import numpy as np

from gpumix.solver.model import PlanningInputs, Pool
from gpumix.solver.subproblem import ServiceSubproblem, SubSolution, single_threaded


@dataclass(frozen=True)
class Decomposition:
    # A valid lower bound on the phase-2 (MinCost) optimum, when one was computed.
    bound: float | None
    # One plan per service that fits every pool jointly (a feasible phase-2 plan), or None.
    plan: tuple[SubSolution, ...] | None
    # Its cost at the pools' prices.
    cost: float | None
    # Subproblem solves, for the benchmark notes.
    solves: int = 0


class _OutOfTime(Exception):
    pass


_T = TypeVar("_T")


class _Runner:
    """Runs independent subproblem solves (different services) on ``workers`` threads: HiGHS
    releases the GIL while it solves and each subproblem runs on one thread, so two cores solve
    two services at once. Every batch finishes before the next starts (no subproblem is ever
    touched by two threads at once), and results come back in order."""

    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(workers) if workers > 1 else None

    def all(self, tasks: Sequence[Callable[[], _T]]) -> list[_T]:
        if self._executor is None or len(tasks) < 2:
            return [task() for task in tasks]
        futures = [self._executor.submit(task) for task in tasks]
        wait(futures)
        return [future.result() for future in futures]  # re-raises _OutOfTime

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


class _Service:
    """f_s(g) for one service on the contended pool: what is known exactly and a lower bound."""

    def __init__(self, sub: ServiceSubproblem, pool: str, top: SubSolution) -> None:
        self.sub = sub
        self.pool = pool
        self.top = top.usage.get(pool, 0)  # U_s: GPUs of P* when P* is not contended
        # exact[g] = (value, solution) for every g in [0, top] that is known.
        self.exact: dict[int, SubSolution] = {}
        self.infeasible_below = -1  # f_s(g) = +inf for g ≤ this
        self.tangents: list[tuple[float, float]] = []  # (φ_s(μ) lower, μ)
        self._record(self.top, top)

    def _record(self, cap: int, solution: SubSolution) -> None:
        used = solution.usage.get(self.pool, 0)
        for g in range(used, cap + 1):
            self.exact[g] = solution

    def lower(self) -> np.ndarray:
        """Lower bound of f_s(g) for g = 0..top (exact where evaluated; +inf if infeasible)."""
        values = np.empty(self.top + 1)
        floor = -math.inf
        for g in range(self.top, -1, -1):
            known = self.exact.get(g)
            if known is not None:
                floor = known.lower
                values[g] = floor
                continue
            if g <= self.infeasible_below:
                values[g] = math.inf
                continue
            tangent = max((phi - mu * g for phi, mu in self.tangents), default=-math.inf)
            values[g] = max(floor, tangent)
        return values

    def add_tangent(self, mu: float, others: Mapping[str, float], deadline: float) -> None:
        """Solve the service with P* priced ``mu`` more (the other pools at ``others``)."""
        self.sub.set_prices(_priced(self.sub, {**others, self.pool: mu}))
        try:
            solution = _solve(self.sub, deadline)
        finally:
            self.sub.set_prices(_priced(self.sub, others))
        if solution is not None:
            self.tangent(solution, mu, _priced(self.sub, others))

    def tangent(self, solution: SubSolution, mu: float, prices: tuple[float, ...]) -> None:
        """Record φ_s(μ) from ``solution``, optimal with P* priced μ more. It is also optimal
        for f_s at its own usage u (any plan using ≤ u GPUs of P* costs at least as much), so
        f_s(u) is known exactly too."""
        self.tangents.append((solution.lower, mu))
        used = solution.usage.get(self.pool, 0)
        if used not in self.exact:
            cost = solution.true_cost(prices)
            exact = replace(solution, cost=cost, lower=solution.lower - mu * used)
            self.exact[used] = exact

    def upper(self) -> np.ndarray:
        """f_s(g) or more: the cheapest evaluated plan using at most g GPUs (+inf if none)."""
        values = np.full(self.top + 1, math.inf)
        cheapest = math.inf
        for g in range(self.top + 1):
            known = self.exact.get(g)
            if known is not None:
                cheapest = min(cheapest, known.cost)
            values[g] = cheapest
        return values

    def evaluate(self, cap: int, deadline: float) -> None:
        self.sub.set_caps({self.pool: cap})
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise _OutOfTime
        # A start: the plan evaluated at the nearest smaller cap (it fits), or the one at the
        # nearest larger cap with replicas moved off P*, whichever is cheaper.
        below = [g for g in self.exact if g < cap]
        above = [g for g in self.exact if g > cap]
        starts = [self.exact[max(below)]] if below else []
        if above:
            fitted = self.sub.fitted(self.exact[min(above)], self.pool)
            if fitted is not None:
                starts.append(fitted)
        start = min(starts, key=lambda plan: plan.true_cost(self.sub.costs), default=None)
        solution = self.sub.solve(remaining, start)
        self.sub.set_caps({})
        if solution is None:
            if time.perf_counter() >= deadline:
                raise _OutOfTime
            self.infeasible_below = max(self.infeasible_below, cap)
            return
        self._record(cap, solution)


def _allocate(lowers: Sequence[np.ndarray], available: int) -> tuple[float, list[int]] | None:
    """min Σ_s lower_s(g_s) s.t. Σ g_s ≤ available (min-plus convolution, g_s ≤ len − 1)."""
    best = np.zeros(available + 1)  # best[u]: min cost of the services so far using ≤ u GPUs
    choices: list[np.ndarray] = []
    for lower in lowers:
        new = np.full(available + 1, math.inf)
        choice = np.zeros(available + 1, dtype=np.int64)
        for g in range(min(len(lower) - 1, available) + 1):
            if not math.isfinite(lower[g]):
                continue
            shifted = best[: available + 1 - g] + lower[g]
            better = shifted < new[g:]
            new[g:][better] = shifted[better]
            choice[g:][better] = g
        best = new
        choices.append(choice)
    if not math.isfinite(best[available]):
        return None
    allocation = [0] * len(lowers)
    left = available
    for index in range(len(lowers) - 1, -1, -1):
        g = int(choices[index][left])
        allocation[index] = g
        left -= g
    return float(best[available]), allocation


def decompose(
    inputs: PlanningInputs,
    prices: Mapping[str, float],
    deadline: float,
    stop_gap: float = 0.0,
    workers: int = 1,
) -> Decomposition | None:
    """Bound (10) and, when possible, a feasible plan; stops early once a plan is within
    ``stop_gap`` of the bound. When the time runs out: the bound and best plan so far, or
    ``None`` if it ran out before the DP started or a service has no plan even alone (the
    joint MILP then reports what is wrong). ``workers`` threads solve the subproblems of
    different services at once; given the time, the result does not depend on it."""
    runner = _Runner(workers)
    try:
        with single_threaded():
            return _decompose(inputs, prices, deadline, stop_gap, runner)
    finally:
        runner.close()


def _decompose(
    inputs: PlanningInputs,
    prices: Mapping[str, float],
    deadline: float,
    stop_gap: float,
    runner: _Runner,
) -> Decomposition | None:
    subs = [ServiceSubproblem(inputs, service) for service in inputs.services]
    solves = 0

    def solve_alone() -> list[SubSolution] | None:
        found = runner.all([partial(_solve, sub, deadline) for sub in subs])
        return [solution for solution in found if solution is not None] if all(found) else None

    try:
        pools = {pool.name: pool for pool in inputs.pools}
        true_prices = [sub.prices for sub in subs]
        found_alone = solve_alone()
        solves += len(subs)
        if found_alone is None:
            return None
        alone = found_alone
        used = _usage(alone)
        overflow = {
            name: used[name] - pools[name].available_gpus
            for name in used
            if used[name] > pools[name].available_gpus
        }
        if not overflow:
            # Nothing is contended: every service's own optimum, together (the exact
            # decomposition of ``planner._solve_separately``).
            cost = sum(s.cost for s in alone)
            return Decomposition(sum(s.lower for s in alone), tuple(alone), cost, solves)

        # P*: the pool whose sharing the LP prices highest; overflowing pools first.
        contended = max(
            overflow,
            key=lambda name: (prices.get(name, 0.0) * pools[name].available_gpus, overflow[name]),
        )
        others = {name: value for name, value in prices.items() if name != contended and value > 0}
        for sub in subs:
            sub.set_prices(_priced(sub, others))
        if others:
            found_alone = solve_alone()
            solves += len(subs)
            if found_alone is None:
                return None
            alone = found_alone
        services = [_Service(sub, contended, top) for sub, top in zip(subs, alone, strict=True)]
        mu = prices.get(contended, 0.0)
        if mu > 0:
            tangents = [service for service in services if service.top > 0]
            runner.all([partial(service.add_tangent, mu, others, deadline) for service in tangents])
            solves += len(tangents)

        available = pools[contended].available_gpus
        offset = sum(others[name] * pools[name].available_gpus for name in others)
        bound: float | None = None
        best: tuple[float, list[SubSolution]] | None = None
        try:
            while True:
                found = _allocate([service.lower() for service in services], available)
                if found is None:
                    return Decomposition(None, None, None, solves)  # (10) infeasible: so is (3)
                value, allocation = found
                bound = value - offset  # the DP on lower bounds of f_s: a bound at every round
                # The best combination of the plans evaluated so far that shares P*.
                chosen = _allocate([service.upper() for service in services], available)
                if chosen is not None:
                    plan = [
                        service.exact[max(g for g in service.exact if g <= share)]
                        for service, share in zip(services, chosen[1], strict=True)
                    ]
                    if _fits(plan, pools):
                        cost = _cost(plan, true_prices)
                        if best is None or cost < best[0]:
                            best = (cost, plan)
                        if cost - bound <= stop_gap * cost:
                            break
                pending = [
                    (service, g)
                    for service, g in zip(services, allocation, strict=True)
                    if g not in service.exact
                ]
                if not pending:
                    break
                runner.all([partial(service.evaluate, g, deadline) for service, g in pending])
                solves += len(pending)
        except _OutOfTime:
            pending = []
        for sub in subs:
            sub.set_prices(sub.prices)
        if best is not None:
            return Decomposition(bound, tuple(best[1]), best[0], solves)
        if pending or time.perf_counter() >= deadline:
            return Decomposition(bound, None, None, solves)
        # Optimal for (10) but over another pool's availability: re-plan what overflows.
        plan = [service.exact[g] for service, g in zip(services, allocation, strict=True)]
        repaired = repair(subs, plan, inputs, deadline)
        solves += len(subs)
        if repaired is None:
            return Decomposition(bound, None, None, solves)
        return Decomposition(bound, tuple(repaired), _cost(repaired, true_prices), solves)
    except _OutOfTime:
        return None


def repair(
    subs: Sequence[ServiceSubproblem],
    plan: Sequence[SubSolution],
    inputs: PlanningInputs,
    deadline: float,
) -> list[SubSolution] | None:
    """A plan that fits every pool, from per-service plans that may overflow some: keep the
    services clear of overflowing pools, re-plan the others one at a time (largest first) in
    the GPUs left, at the pools' own prices; then let each service re-plan in what the others
    leave while that lowers the cost. ``None`` when a service finds nothing left for it."""
    pools = {pool.name: pool for pool in inputs.pools}
    for sub in subs:
        sub.set_prices(sub.prices)
    current: list[SubSolution | None] = list(plan)
    used = _usage(plan)
    hot = {name for name in used if used[name] > pools[name].available_gpus}
    moved = [i for i, solution in enumerate(plan) if hot & set(solution.usage)]
    for i in moved:
        current[i] = None
    moved.sort(key=lambda i: -plan[i].cost)
    for i in moved:
        solution = _replan(subs[i], current, deadline)
        if solution is None:
            return None
        current[i] = solution
    done = [solution for solution in current if solution is not None]
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        for i, sub in enumerate(subs):
            others: list[SubSolution | None] = [*done]
            others[i] = None
            solution = _replan(sub, others, deadline)
            if solution is not None and solution.cost < done[i].true_cost(sub.prices) - 1e-9:
                done[i] = solution
                improved = True
    return done


def _replan(
    sub: ServiceSubproblem, others: Sequence[SubSolution | None], deadline: float
) -> SubSolution | None:
    used = _usage([solution for solution in others if solution is not None])
    caps = {name: sub.availability[name] - used.get(name, 0) for name in sub.pools}
    if any(cap < 0 for cap in caps.values()):
        return None
    sub.set_caps(caps)
    try:
        return _solve(sub, deadline)
    finally:
        sub.set_caps({})


def _solve(sub: ServiceSubproblem, deadline: float) -> SubSolution | None:
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        raise _OutOfTime
    solution = sub.solve(remaining)
    if solution is None and time.perf_counter() >= deadline:
        raise _OutOfTime
    return solution


def _cost(plan: Sequence[SubSolution], prices: Sequence[tuple[float, ...]]) -> float:
    return sum(solution.true_cost(own) for solution, own in zip(plan, prices, strict=True))


def _priced(sub: ServiceSubproblem, prices: Mapping[str, float]) -> tuple[float, ...]:
    return tuple(
        own + prices.get(pool, 0.0) * gpus
        for own, pool, gpus in zip(sub.prices, sub.pool_of, sub.gpus, strict=True)
    )


def _usage(plan: Sequence[SubSolution]) -> dict[str, int]:
    used: dict[str, int] = {}
    for solution in plan:
        for name, gpus in solution.usage.items():
            used[name] = used.get(name, 0) + gpus
    return used


def _fits(plan: Sequence[SubSolution], pools: Mapping[str, Pool]) -> bool:
    return all(gpus <= pools[name].available_gpus for name, gpus in _usage(plan).items())
