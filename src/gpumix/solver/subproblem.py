"""One MinCost service alone as a small MILP in HiGHS, built once and re-solved many times.

The decomposition (``decomposition``) and bound (9) (``lagrangian``) solve each service on its
own hundreds of times with different GPU prices and pool caps. Rebuilding a PuLP model per solve
costs ~0.15 s; here the model is passed to HiGHS once and only costs and row bounds change.

Columns: y[c] (integer replicas) for every candidate, then x[w,c] (shares) where c serves w.
Rows: (1) every class served, (2) replica capacity, (5) budget, (6) replica bounds, (7) spot
hedge, and one cap row per pool the service can use, Σ_{c∈p} k(c) y[c] ≤ cap[p] (at most A[p],
the pool's availability, so the service alone respects (3)). Column bounds are (8).

Each solve first fixes at 0 the candidates that no optimal plan needs under the current prices
and caps (``_dominated``: a cheaper candidate serving every class at least as fast, in a pool
whose cap cannot bind on any plan as cheap as a known one); on the benchmark that leaves about
a third of the candidates and halves the time per solve. The decomposition's starts come from
plans at neighbouring caps (``fitted`` moves a plan off a pool whose cap it exceeds).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import highspy
import numpy as np

from gpumix.solver.formulation import replica_upper_bound
from gpumix.solver.model import PlanningInputs, ServiceDemand

# Solved to (almost) proven optimality; bounds discount the objective by the gap actually
# reached, so they stay valid whatever the solver's stopping point.
SUBPROBLEM_GAP = 1e-7


@dataclass(frozen=True)
class SubSolution:
    """An optimal plan of one service alone: replicas per candidate, shares per (class, c)."""

    cost: float  # under the prices it was solved with
    lower: float  # a lower bound on that subproblem's optimum (cost discounted by the gap)
    replicas: tuple[int, ...]
    shares: Mapping[tuple[str, int], float]
    usage: Mapping[str, int]  # GPUs per pool

    def true_cost(self, prices: tuple[float, ...]) -> float:
        return sum(p * n for p, n in zip(prices, self.replicas, strict=True))


class ServiceSubproblem:
    def __init__(self, inputs: PlanningInputs, service: ServiceDemand) -> None:
        self.service = service
        pools = {pool.name: pool for pool in inputs.pools}
        candidates = service.candidates
        self.size = len(candidates)
        self.pools = tuple(sorted({candidate.pool for candidate in candidates}))
        self.availability = {name: pools[name].available_gpus for name in self.pools}
        # Price of one replica per hour, at the pools' own prices.
        self.prices = tuple(
            pools[c.pool].price_per_gpu_hour * c.tensor_parallel for c in candidates
        )
        self.gpus = tuple(c.tensor_parallel for c in candidates)
        self.pool_of = tuple(c.pool for c in candidates)

        lower: list[float] = []
        upper: list[float] = []
        for candidate in candidates:
            pool = pools[candidate.pool]
            bound = replica_upper_bound(
                candidate.tensor_parallel,
                pool.available_gpus,
                pool.price_per_gpu_hour,
                service.max_cost_per_hour,
                service.max_replicas,
            )
            lower.append(0.0)
            upper.append(math.inf if bound is None else float(bound))
        self.shares: list[tuple[str, int]] = []
        for request_class in service.classes:
            if request_class.demand_rps <= 0:
                continue
            for c, candidate in enumerate(candidates):
                if candidate.throughput_rps.get(request_class.name, 0.0) > 0:
                    self.shares.append((request_class.name, c))
                    lower.append(0.0)
                    upper.append(math.inf)
        columns = len(lower)
        demand = {request_class.name: request_class.demand_rps for request_class in service.classes}

        rows: list[tuple[float, float, list[tuple[int, float]]]] = []
        for request_class in service.classes:
            if request_class.demand_rps <= 0:
                continue
            # (1) classes fully served
            entries = [
                (self.size + j, 1.0)
                for j, (name, _) in enumerate(self.shares)
                if name == request_class.name
            ]
            rows.append((1.0, 1.0, entries))
        by_candidate: list[list[tuple[int, str]]] = [[] for _ in candidates]
        for j, (name, at) in enumerate(self.shares):
            by_candidate[at].append((j, name))
        for c, candidate in enumerate(candidates):
            # (2) replica capacity
            load = [
                (self.size + j, demand[name] / candidate.throughput_rps[name])
                for j, name in by_candidate[c]
            ]
            if load:
                rows.append((-math.inf, 0.0, [*load, (c, -1.0)]))
        if service.max_cost_per_hour is not None:
            # (5) budget
            rows.append((-math.inf, service.max_cost_per_hour, list(enumerate(self.prices))))
        # (6) replica bounds
        rows.append(
            (
                float(service.min_replicas),
                float(service.max_replicas),
                [(c, 1.0) for c in range(self.size)],
            )
        )
        if service.min_on_demand_replicas > 0:
            # (7) spot hedge
            rows.append(
                (
                    float(service.min_on_demand_replicas),
                    math.inf,
                    [
                        (c, 1.0)
                        for c, cand in enumerate(candidates)
                        if not pools[cand.pool].preemptible
                    ],
                )
            )
        self.cap_rows: dict[str, int] = {}
        for name in self.pools:
            self.cap_rows[name] = len(rows)
            rows.append(
                (
                    -math.inf,
                    float(self.availability[name]),
                    [(c, float(self.gpus[c])) for c in range(self.size) if self.pool_of[c] == name],
                )
            )
        self.caps = dict(self.availability)

        highs = _new_highs()
        highs.setOptionValue("output_flag", False)
        highs.setOptionValue("mip_rel_gap", SUBPROBLEM_GAP)
        highs.setOptionValue("random_seed", 0)
        # Measured on the benchmark's subproblems (tiny MILPs solved hundreds of times): the
        # sub-MIP heuristics, restarts and symmetry detection cost more than they save
        # (75 ms → 20 ms per solve, same optima); so do strong branching (pseudocosts are
        # trusted from the first branching: 2× the nodes, −10 % time) and a second thread
        # (−20 %; run them inside ``single_threaded``).
        highs.setOptionValue("threads", 1)
        highs.setOptionValue("mip_pscost_minreliable", 0)
        for option in (
            "mip_heuristic_run_rins",
            "mip_heuristic_run_rens",
            "mip_heuristic_run_root_reduced_cost",
            "mip_heuristic_run_feasibility_jump",
            "mip_allow_restart",
            "mip_detect_symmetry",
        ):
            highs.setOptionValue(option, False)
        inf = highs.getInfinity()
        costs = np.array([*self.prices, *([0.0] * len(self.shares))], dtype=np.float64)
        highs.addCols(
            columns,
            costs,
            np.clip(np.array(lower, dtype=np.float64), -inf, inf),
            np.clip(np.array(upper, dtype=np.float64), -inf, inf),
            0,
            np.zeros(0, dtype=np.int32),
            np.zeros(0, dtype=np.int32),
            np.zeros(0, dtype=np.float64),
        )
        starts: list[int] = []
        indices: list[int] = []
        values: list[float] = []
        for _, _, entries in rows:
            starts.append(len(indices))
            for index, value in entries:
                indices.append(index)
                values.append(value)
        highs.addRows(
            len(rows),
            np.clip(np.array([r[0] for r in rows], dtype=np.float64), -inf, inf),
            np.clip(np.array([r[1] for r in rows], dtype=np.float64), -inf, inf),
            len(indices),
            np.array(starts, dtype=np.int32),
            np.array(indices, dtype=np.int32),
            np.array(values, dtype=np.float64),
        )
        highs.changeColsIntegrality(
            self.size,
            np.arange(self.size, dtype=np.int32),
            np.full(self.size, 1, dtype=np.uint8),
        )
        self.highs = highs
        self.costs = self.prices

        # Price-independent parts of dominance (see ``_dominated``): served[c, w] is the
        # throughput of c for the w-th class with demand (0 where c cannot serve it).
        served = [name for name in demand if demand[name] > 0]
        self._demand = np.array([demand[name] for name in served], dtype=np.float64)
        self._throughput = np.array(
            [[c.throughput_rps.get(name, 0.0) for name in served] for c in candidates],
            dtype=np.float64,
        ).reshape(self.size, len(served))
        self._upper = np.array(upper[: self.size], dtype=np.float64)
        self._gpu_counts = np.array(self.gpus, dtype=np.float64)
        self._pool_index = np.array([self.pools.index(name) for name in self.pool_of])
        on_demand = np.array([not pools[c.pool].preemptible for c in candidates], dtype=bool)
        self._on_demand = on_demand
        throughput = self._throughput
        # at_least[a, b]: a serves every class at least as fast as b (and counts towards (7)
        # whenever b does); better[a, b]: a is strictly faster on some class.
        at_least = np.all(throughput[:, None, :] >= throughput[None, :, :], axis=2)
        if service.min_on_demand_replicas > 0:
            at_least &= on_demand[:, None] | ~on_demand[None, :]
        np.fill_diagonal(at_least, False)
        self._at_least = at_least
        self._better = np.any(throughput[:, None, :] > throughput[None, :, :], axis=2)
        self._earlier = np.arange(self.size)[:, None] < np.arange(self.size)[None, :]
        self._fixed = np.zeros(self.size, dtype=bool)  # columns currently fixed at 0
        self._single = self._single_replicas()

    def _single_replicas(self) -> np.ndarray:
        """Replicas of c needed to serve the whole demand on c alone (inf where c cannot)."""
        service = self.service
        with np.errstate(divide="ignore"):
            load = np.where(
                self._throughput > 0, self._demand[None, :] / self._throughput, math.inf
            ).sum(axis=1)
        replicas: np.ndarray = np.maximum(np.ceil(load), float(max(service.min_replicas, 1)))
        if service.min_on_demand_replicas > 0:
            replicas = np.where(
                self._on_demand,
                np.maximum(replicas, float(service.min_on_demand_replicas)),
                math.inf,
            )
        replicas[replicas > np.minimum(self._upper, float(service.max_replicas))] = math.inf
        return replicas

    def _dominated(self, start: SubSolution | None) -> np.ndarray:
        """Candidates no optimal plan needs under the current prices and caps.

        c is dropped when some c' costs no more (and, under a budget, is priced no more),
        serves every class at least as fast, counts towards (7) whenever c does, and sits in
        a pool whose cap cannot bind: every plan is at most as dear as a known feasible plan
        (``start``, or one candidate serving everything alone), and a plan that dear uses at
        most UB / (cost per GPU of that pool) GPUs there. Moving c's replicas and routing to
        c' then keeps any optimal plan feasible and no dearer. Ties go to the earlier
        candidate, so every dropped candidate has a kept one that dominates it.
        """
        costs = np.array(self.costs, dtype=np.float64)
        if costs.size == 0 or np.any(costs < 0):
            return np.zeros(self.size, dtype=bool)
        caps = np.array([self.caps[name] for name in self.pools], dtype=np.float64)
        finite = np.isfinite(self._single)
        single = np.where(finite, np.where(finite, self._single, 0.0) * costs, math.inf)
        single[self._single * self._gpu_counts > caps[self._pool_index]] = math.inf
        budget = self.service.max_cost_per_hour
        prices = np.array(self.prices, dtype=np.float64)
        if budget is not None:
            single[self._single * prices > budget] = math.inf
        upper_bound = float(single.min(initial=math.inf))
        if start is not None:
            upper_bound = min(upper_bound, start.true_cost(self.costs))
        if not math.isfinite(upper_bound):
            return np.zeros(self.size, dtype=bool)
        per_gpu = costs / self._gpu_counts
        cheapest = np.full(len(self.pools), math.inf)
        np.minimum.at(cheapest, self._pool_index, per_gpu)
        # UB ≤ cost per GPU × cap: the pool's cap row cannot bind on any plan that dear.
        free = (cheapest > 0) & (upper_bound * (1 + 1e-9) <= cheapest * caps)
        if not free.any():
            return np.zeros(self.size, dtype=bool)
        weak = self._at_least & free[self._pool_index][:, None]
        weak &= costs[:, None] <= costs[None, :]
        strict = self._better | (costs[:, None] < costs[None, :])
        if budget is not None:
            weak &= prices[:, None] <= prices[None, :]
            strict |= prices[:, None] < prices[None, :]
        dominates = weak & (strict | self._earlier)
        dropped: np.ndarray = dominates.any(axis=0)
        return dropped

    def fitted(self, solution: SubSolution, pool: str) -> SubSolution | None:
        """``solution`` made to fit the current cap on ``pool``: replicas there are replaced
        one at a time, each by the cheapest candidate of another pool that serves every class
        at least as fast (and counts towards (7) whenever it does), taking over its share of
        the routing; ``None`` when that does not fit every cap, the budget or ``pool``.
        A start for the capped solve (one near its optimum prunes most of the tree)."""
        inside = np.array([name == pool for name in self.pool_of])
        replicas = list(solution.replicas)
        need = solution.usage.get(pool, 0) - self.caps[pool]
        if need <= 0:
            return solution
        costs = np.array(self.costs, dtype=np.float64)
        usable = self._at_least & ~inside[:, None]
        shares = dict(solution.shares)
        while need > 0:
            best: tuple[float, int, int] | None = None
            for used in np.flatnonzero(inside & (np.array(replicas) > 0)).tolist():
                options = np.flatnonzero(usable[:, used])
                if options.size == 0:
                    continue
                target = int(options[np.argmin(costs[options])])
                # Extra cost per GPU of the cap it helps meet.
                rate = (costs[target] - costs[used]) / min(self.gpus[used], need)
                if best is None or rate < best[0]:
                    best = (rate, used, target)
            if best is None:
                return None
            _, c, r = best
            moved = 1 / replicas[c]
            for name, at in list(shares):
                if at == c:
                    part = shares[name, c] * moved
                    shares[name, c] -= part
                    shares[name, r] = shares.get((name, r), 0.0) + part
            replicas[c] -= 1
            replicas[r] += 1
            need -= self.gpus[c]
        usage: dict[str, int] = {}
        for index, count in enumerate(replicas):
            if count:
                name = self.pool_of[index]
                usage[name] = usage.get(name, 0) + count * self.gpus[index]
        if any(gpus > self.caps[name] for name, gpus in usage.items()):
            return None
        budget = self.service.max_cost_per_hour
        if (
            budget is not None
            and sum(p * n for p, n in zip(self.prices, replicas, strict=True)) > budget + 1e-9
        ):
            return None
        cost = float(costs @ np.array(replicas, dtype=np.float64))
        return SubSolution(cost, cost, tuple(replicas), shares, usage)

    def _restrict(self, dropped: np.ndarray) -> None:
        changed = np.flatnonzero(dropped != self._fixed)
        if changed.size:
            upper = np.where(dropped[changed], 0.0, self._upper[changed])
            self.highs.changeColsBounds(
                changed.size,
                changed.astype(np.int32),
                np.zeros(changed.size, dtype=np.float64),
                np.clip(upper, 0.0, self.highs.getInfinity()),
            )
            self._fixed = dropped

    def set_prices(self, prices: tuple[float, ...]) -> None:
        """Replica prices per candidate (e.g. the pools' prices plus λ)."""
        if prices != self.costs:
            self.highs.changeColsCost(
                self.size,
                np.arange(self.size, dtype=np.int32),
                np.array(prices, dtype=np.float64),
            )
            self.costs = prices

    def set_caps(self, caps: Mapping[str, int]) -> None:
        """GPUs the service may use per pool (pools not named keep their availability)."""
        for name in self.pools:
            cap = min(caps.get(name, self.availability[name]), self.availability[name])
            if cap != self.caps[name]:
                self.highs.changeRowBounds(self.cap_rows[name], -self.highs.getInfinity(), cap)
                self.caps[name] = cap

    def solve(
        self, time_limit_seconds: float, start: SubSolution | None = None
    ) -> SubSolution | None:
        """The optimum under the current prices and caps; ``None`` when infeasible or not
        proven optimal in time. ``start``, a plan feasible under the current caps, bounds the
        cost of any optimal plan, which lets ``_dominated`` drop more candidates.

        The start is deliberately not handed to HiGHS as a MIP start: HiGHS 1.16 maps a start
        into its presolved space with the wrong objective (its log says "MIP start solution is
        feasible: objective value is 2.25 ... feasible in the reduced space: objective value
        is 1") and then prunes the true optimum, reporting a dearer plan as optimal
        (tests/test_solver_bruteforce.py found such a case)."""
        highs = self.highs
        highs.setOptionValue("time_limit", max(time_limit_seconds, 0.001))
        dropped = self._dominated(start)
        self._restrict(dropped)
        highs.run()
        if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        values = highs.getSolution().col_value
        replicas = tuple(round(values[c]) for c in range(self.size))
        shares = {
            key: float(values[self.size + j])
            for j, key in enumerate(self.shares)
            if values[self.size + j] > 0
        }
        usage: dict[str, int] = {}
        for c, count in enumerate(replicas):
            if count:
                usage[self.pool_of[c]] = usage.get(self.pool_of[c], 0) + count * self.gpus[c]
        cost = sum(p * n for p, n in zip(self.costs, replicas, strict=True))
        gap = max(float(highs.getInfo().mip_gap), SUBPROBLEM_GAP)
        if not math.isfinite(gap):
            gap = SUBPROBLEM_GAP
        return SubSolution(cost, cost * (1 - gap), replicas, shares, usage)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Where subproblems may run. HiGHS keeps one task scheduler per calling thread, sized by
    the first run and refusing runs that ask for another thread count; subproblems ask for one
    thread. Reset it on the way in and out, so the joint solves around them (PuLP, default
    threads) start their own."""
    highspy.Highs.resetThreadScheduler(True)
    try:
        yield
    finally:
        highspy.Highs.resetThreadScheduler(True)


def _new_highs() -> highspy.Highs:
    from gpumix.solver.backends import silence_highs_banner

    silence_highs_banner()
    return highspy.Highs()  # type: ignore[no-untyped-call]
