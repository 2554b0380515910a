r"""The joint planning MILP over all services (pools are shared).

Sets
    s ∈ S        services;  S = S_cost ∪ S_tput by objective (MinCost, MaxThroughput)
    w ∈ W_s      request classes of service s
    c ∈ C_s      candidate configurations of s: pool p(c) × tensor-parallel k(c) × weight format
    p ∈ P        pools (one GPU type × one capacity type); P_od ⊆ P non-preemptible pools

Data
    d[s,w]       demand of class w, req/s (share × total × (1 + headroom))
    h[c,w]       req/s one replica of c sustains for class w within the SLO (> 0 for candidates)
    k(c)         GPUs per replica;  π[p] price per GPU-hour;  A[p] GPUs available in p
    B[s]         budget, $/h (optional);  R⁻[s], R⁺[s] replica bounds;  O[s] minOnDemandReplicas

Variables
    y[s,c] ∈ ℤ≥0          replicas of s on configuration c
    x[s,w,c] ≥ 0          share of class w's reference demand that c serves
    α[s] ≥ 0              scale factor of served demand (s ∈ S_tput); α[s] ≡ 1 for s ∈ S_cost

Constraints
    (1) classes fully served     Σ_c x[s,w,c] = α[s]                              ∀ s, w
    (2) replica capacity         Σ_w x[s,w,c] · d[s,w] / h[c,w] ≤ y[s,c]           ∀ s, c
    (3) pool availability        Σ_s Σ_{c: p(c)=p} k(c) · y[s,c] ≤ A[p]            ∀ p
    (4) one node per replica     k(c) ≤ gpusPerNode[p(c)]  (enforced by omitting candidates)
    (5) budget                   Σ_c π[p(c)] · k(c) · y[s,c] ≤ B[s]                ∀ s with B
    (6) replica bounds           R⁻[s] ≤ Σ_c y[s,c] ≤ R⁺[s]                       ∀ s
    (7) spot hedge               Σ_{c: p(c) ∈ P_od} y[s,c] ≥ O[s]                  ∀ s
    (8) variable bounds          y[s,c] ≤ min(R⁺[s], ⌊A[p]/k⌋, ⌊B[s]/(π k)⌋)  (tightening only)

Objectives (lexicographic, one MILP per phase; each phase fixes the previous optimum)
    phase 1  (S_tput ≠ ∅)   maximise min_s α[s], then maximise Σ_s α[s]  (max-min fair share of
                            the contended GPUs, then total); MinCost services are hard constraints
                            throughout, so they are always served in full
    phase 2                 minimise cost  Σ_s Σ_c π k y[s,c]  (no budget wasted on idle replicas)
    phase 3  (current plan) minimise churn Σ |y[s,c] − y⁰[s,c]| (replicas started or stopped)
                            subject to cost ≤ (1 + tolerance) · phase-2 optimum

No big-M constants appear: (2) links routing to replicas directly, so the LP relaxation is the
fractional-replica plan and is tight up to rounding. Constraint (4) and dominance pruning are
applied to the candidate list before the model is built (see ``candidates.prune_dominated``).

Lower bound (MinCost only; ``lagrangian``): for pool prices λ[p] ≥ 0 (the duals of (3) in the
LP relaxation),
    (9) L(λ) = Σ_s min { Σ_c (π[p(c)] + λ[p(c)]) k(c) y[s,c] : y[s,·] feasible for s alone }
               − Σ_p λ[p] A[p]  ≤  phase-2 optimum
is a valid bound (Lagrangian relaxation of (3); each service alone keeps its integrality, so it
is at least the LP bound and usually much closer). It is not added to the model (an objective
cut makes the LP degenerate and slows HiGHS's heuristics badly); it certifies the incumbent:
a plan within the relative gap of L(λ) is reported Optimal, and otherwise the gap reported is
the smaller of the solver's and the one against L(λ). With λ = 0 it is the sum of the
single-service optima.

Stronger bound and plan (MinCost only; ``decomposition``): keep the most contended pool P*
shared and relax only the others,
    (10) min Σ_s f_s(g_s)  s.t.  Σ_s g_s ≤ A[P*]   − Σ_{p≠P*} λ[p] A[p]   ≤  phase-2 optimum,
         f_s(g) = service s alone (other pools priced π + λ) with at most g GPUs of P*,
solved exactly by dynamic programming over the GPUs of P* (f_s evaluated lazily, one small
MILP per point). (10) ≥ (9) at the same λ; its plan is feasible when it fits the other pools,
and then optimal when they do not bind (λ = 0 there). The planner uses (10) in place of (9):
a plan within the relative gap of (10) skips the joint MILP; otherwise the plan starts it.

Relaxations (``Relaxation``) drop one constraint family at a time; ``explain`` uses them to say
which family makes a problem infeasible and by how much.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum

import pulp

from gpumix.solver.model import Candidate, Objective, PlanningInputs


class AvailabilityMode(StrEnum):
    KEEP = "keep"  # constraint (3) as is
    DROP = "drop"  # no availability limit
    ELASTIC = "elastic"  # (3) with a shortfall variable per pool, to measure missing GPUs


@dataclass(frozen=True)
class Relaxation:
    drop_budget: bool = False
    availability: AvailabilityMode = AvailabilityMode.KEEP
    drop_max_replicas: bool = False
    drop_min_on_demand: bool = False


NO_RELAXATION = Relaxation()


@dataclass
class Formulation:
    """The PuLP problem plus handles on its variables, indexed by (service, candidate) positions.

    Mutable on purpose: the phases add constraints and swap objectives on one problem.
    """

    inputs: PlanningInputs
    objectives: tuple[Objective, ...]
    problem: pulp.LpProblem
    replicas: dict[tuple[int, int], pulp.LpVariable]
    assignment: dict[tuple[int, str, int], pulp.LpVariable]
    scale: dict[int, pulp.LpVariable]
    shortfall: dict[str, pulp.LpVariable] = field(default_factory=dict)
    churn_parts: list[pulp.LpVariable] = field(default_factory=list)
    # Pool name -> name of its constraint (3), to read the pool's dual price.
    pool_constraints: dict[str, str] = field(default_factory=dict)

    def cost(self) -> pulp.LpAffineExpression:
        terms = []
        for (service_index, candidate_index), variable in self.replicas.items():
            candidate = self.inputs.services[service_index].candidates[candidate_index]
            terms.append((variable, self.gpu_hour_price(candidate)))
        return pulp.LpAffineExpression(terms)

    def gpu_hour_price(self, candidate: Candidate) -> float:
        return self.inputs.pool(candidate.pool).price_per_gpu_hour * candidate.tensor_parallel

    def throughput_services(self) -> list[int]:
        return [
            i
            for i, objective in enumerate(self.objectives)
            if objective is Objective.MAX_THROUGHPUT
        ]

    @property
    def variable_count(self) -> int:
        return len(self.problem.variables())

    @property
    def constraint_count(self) -> int:
        return int(self.problem.numConstraints())


def build(
    inputs: PlanningInputs,
    objectives: tuple[Objective, ...],
    relaxation: Relaxation = NO_RELAXATION,
) -> Formulation:
    """Variables and constraints (1)-(8); the objective is set by the phase that solves it."""
    problem = pulp.LpProblem("gpumix_plan", pulp.LpMinimize)
    pools = {pool.name: pool for pool in inputs.pools}
    replicas: dict[tuple[int, int], pulp.LpVariable] = {}
    assignment: dict[tuple[int, str, int], pulp.LpVariable] = {}
    scale: dict[int, pulp.LpVariable] = {}
    gpus_by_pool: dict[str, list[tuple[pulp.LpVariable, int]]] = defaultdict(list)

    for s, service in enumerate(inputs.services):
        budget = None if relaxation.drop_budget else service.max_cost_per_hour
        max_replicas = None if relaxation.drop_max_replicas else service.max_replicas
        for c, candidate in enumerate(service.candidates):
            pool = pools[candidate.pool]
            upper = replica_upper_bound(
                candidate.tensor_parallel,
                pool.available_gpus if relaxation.availability is AvailabilityMode.KEEP else None,
                pool.price_per_gpu_hour,
                budget,
                max_replicas,
            )
            variable = problem.add_variable(f"y_{s}_{c}", lowBound=0, upBound=upper, cat="Integer")
            replicas[s, c] = variable
            gpus_by_pool[candidate.pool].append((variable, candidate.tensor_parallel))

        if objectives[s] is Objective.MAX_THROUGHPUT:
            scale[s] = problem.add_variable(f"alpha_{s}", lowBound=0)
        served: pulp.LpAffineExpression | float = scale.get(s, 1.0)

        for class_index, request_class in enumerate(service.classes):
            if request_class.demand_rps <= 0:
                continue
            shares = []
            for c, candidate in enumerate(service.candidates):
                if candidate.throughput_rps.get(request_class.name, 0.0) > 0:
                    share = problem.add_variable(f"x_{s}_{class_index}_{c}", lowBound=0)
                    assignment[s, request_class.name, c] = share
                    shares.append(share)
            # (1) classes fully served (α[s] of the reference demand for MaxThroughput)
            problem += (pulp.lpSum(shares) == served, f"c1_served_{s}_{class_index}")

        for c, candidate in enumerate(service.candidates):
            load = [
                (
                    assignment[s, request_class.name, c],
                    request_class.demand_rps / candidate.throughput_rps[request_class.name],
                )
                for request_class in service.classes
                if (s, request_class.name, c) in assignment
            ]
            if load:
                # (2) replica capacity
                problem += (
                    pulp.LpAffineExpression(load) <= replicas[s, c],
                    f"c2_capacity_{s}_{c}",
                )

        service_replicas = [replicas[s, c] for c in range(len(service.candidates))]
        if budget is not None:
            # (5) budget
            problem += (
                pulp.lpSum(
                    pools[candidate.pool].price_per_gpu_hour
                    * candidate.tensor_parallel
                    * replicas[s, c]
                    for c, candidate in enumerate(service.candidates)
                )
                <= budget,
                f"c5_budget_{s}",
            )
        # (6) replica bounds
        if service.min_replicas > 0:
            problem += (pulp.lpSum(service_replicas) >= service.min_replicas, f"c6_min_{s}")
        if max_replicas is not None:
            problem += (pulp.lpSum(service_replicas) <= max_replicas, f"c6_max_{s}")
        if service.min_on_demand_replicas > 0 and not relaxation.drop_min_on_demand:
            # (7) spot hedge
            problem += (
                pulp.lpSum(
                    replicas[s, c]
                    for c, candidate in enumerate(service.candidates)
                    if not pools[candidate.pool].preemptible
                )
                >= service.min_on_demand_replicas,
                f"c7_on_demand_{s}",
            )

    shortfall: dict[str, pulp.LpVariable] = {}
    pool_constraints: dict[str, str] = {}
    if relaxation.availability is not AvailabilityMode.DROP:
        for pool_index, pool_name in enumerate(sorted(gpus_by_pool)):
            used = pulp.LpAffineExpression(gpus_by_pool[pool_name])
            limit: pulp.LpAffineExpression | int = pools[pool_name].available_gpus
            if relaxation.availability is AvailabilityMode.ELASTIC:
                shortfall[pool_name] = problem.add_variable(f"short_{pool_index}", lowBound=0)
                limit = limit + shortfall[pool_name]
            # (3) pool availability, shared by all services
            problem += (used <= limit, f"c3_pool_{pool_index}")
            pool_constraints[pool_name] = f"c3_pool_{pool_index}"

    return Formulation(
        inputs,
        objectives,
        problem,
        replicas,
        assignment,
        scale,
        shortfall,
        pool_constraints=pool_constraints,
    )


def replica_upper_bound(
    tensor_parallel: int,
    available_gpus: int | None,
    price_per_gpu_hour: float,
    budget: float | None,
    max_replicas: int | None,
) -> int | None:
    """(8) Bounds implied by availability, budget and maxReplicas: they tighten the LP
    relaxation and shrink the search without cutting off any feasible plan."""
    bounds: list[int] = []
    if available_gpus is not None:
        bounds.append(available_gpus // tensor_parallel)
    if budget is not None and price_per_gpu_hour > 0:
        # A hair of slack so a budget that exactly matches a plan's cost is not lost to rounding.
        bounds.append(math.floor(budget / (price_per_gpu_hour * tensor_parallel) + 1e-9))
    if max_replicas is not None:
        bounds.append(max_replicas)
    return max(min(bounds), 0) if bounds else None


def set_objective_max_min_scale(formulation: Formulation) -> pulp.LpVariable:
    """Phase 1a: maximise the smallest scale factor among MaxThroughput services."""
    floor = formulation.problem.add_variable("min_alpha", lowBound=0)
    for s in formulation.throughput_services():
        formulation.problem += (formulation.scale[s] >= floor, f"p1_floor_{s}")
    formulation.problem.sense = pulp.LpMaximize
    formulation.problem.setObjective(pulp.LpAffineExpression([(floor, 1.0)]))
    return floor


def set_objective_max_total_scale(formulation: Formulation) -> None:
    formulation.problem.sense = pulp.LpMaximize
    formulation.problem.setObjective(
        pulp.lpSum(formulation.scale[s] for s in formulation.throughput_services())
    )


def fix_scale(formulation: Formulation, total_scale: float, min_scale: float | None) -> None:
    """Keep phase 1's throughput while later phases optimise cost and churn."""
    services = formulation.throughput_services()
    slack = 1e-6 * abs(total_scale)
    formulation.problem += (
        pulp.lpSum(formulation.scale[s] for s in services) >= total_scale - slack,
        f"p1_total_scale_{len(formulation.problem.constraints())}",
    )
    if min_scale is not None:
        for s in services:
            formulation.problem += (
                formulation.scale[s] >= min_scale * (1 - 1e-6),
                f"p1_min_scale_{s}_{len(formulation.problem.constraints())}",
            )


def set_objective_min_cost(formulation: Formulation) -> None:
    formulation.problem.sense = pulp.LpMinimize
    formulation.problem.setObjective(formulation.cost())


def set_objective_min_shortfall(formulation: Formulation) -> None:
    """For explanations: the fewest GPUs missing across pools."""
    formulation.problem.sense = pulp.LpMinimize
    formulation.problem.setObjective(pulp.lpSum(formulation.shortfall.values()))


def set_objective_min_churn(
    formulation: Formulation, max_cost: float, current: dict[tuple[int, int], int]
) -> None:
    """Phase 3: fewest replicas started or stopped, within the cost tolerance.

    |y − y⁰| needs an auxiliary variable only where y⁰ > 0; elsewhere it is y itself.
    """
    problem = formulation.problem
    problem += (formulation.cost() <= max_cost, "p3_cost_cap")
    terms: list[pulp.LpAffineExpression | pulp.LpVariable] = []
    for index, variable in formulation.replicas.items():
        previous = current.get(index, 0)
        if previous == 0:
            terms.append(variable)
            continue
        change = problem.add_variable(f"churn_{index[0]}_{index[1]}", lowBound=0)
        problem += (change >= variable - previous, f"p3_up_{index[0]}_{index[1]}")
        problem += (change >= previous - variable, f"p3_down_{index[0]}_{index[1]}")
        formulation.churn_parts.append(change)
        terms.append(change)
    problem.sense = pulp.LpMinimize
    problem.setObjective(pulp.lpSum(terms))
