"""The MILP planner on instances whose optimum is known by hand."""

from __future__ import annotations

import pytest

from gpumix.solver import (
    Backend,
    Candidate,
    ConfigKey,
    Objective,
    PlanningInputs,
    Pool,
    ReasonCode,
    Rejection,
    RejectionKind,
    RequestClass,
    ServiceDemand,
    ServiceKey,
    SolveOptions,
    SolveStatus,
    evaluate,
    solve,
)

BACKENDS = [Backend.HIGHS, Backend.CBC]


def paper_toy(budget: float = 8.0) -> PlanningInputs:
    """Jiang et al. (ICML 2025) §4.2: t1 $4 80 GB, t2 $2 48 GB, t3 $2 24 GB, two of each."""
    pools = (
        Pool("t1", "T1", "on-demand", 4.0, available_gpus=2, gpus_per_node=2),
        Pool("t2", "T2", "on-demand", 2.0, available_gpus=2, gpus_per_node=2),
        Pool("t3", "T3", "on-demand", 2.0, available_gpus=2, gpus_per_node=2),
    )
    candidates = (
        Candidate("t1", 1, "bf16", {"w1": 1.0, "w2": 1.2}),
        Candidate("t2", 1, "bf16", {"w1": 0.9, "w2": 0.9}),
        Candidate("t3", 1, "bf16", {"w1": 0.3, "w2": 0.5}),
        Candidate("t2", 2, "bf16", {"w1": 2.4, "w2": 1.5}),
    )
    service = ServiceDemand(
        "default",
        "toy",
        # 80 requests of w1 and 20 of w2 as a rate: scale factor α = 1 / makespan.
        (RequestClass("w1", 80.0), RequestClass("w2", 20.0)),
        candidates,
        objective=Objective.MAX_THROUGHPUT,
        max_cost_per_hour=budget,
        min_replicas=0,
    )
    return PlanningInputs(pools, (service,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_paper_toy_example_exact_optimum(backend: Backend) -> None:
    """The paper prints a makespan of 28.67 s for {1×t1, TP2×t2} with w1 split rounded to 15 %.

    Exact optimum, by hand. The budget ($8/h) admits, among others: 2×t1 (makespan 80/2 +
    20/2.4 = 48.3 s), 1×t1 + 2×t2 (34.5 s), TP2×t2 + 2×t3 (30.7 s) and 1×t1 + TP2×t2. For the
    last, TP2×t2 is 2.4× faster than t1 on w1 but only 1.25× on w2, so all of w2 goes to t1
    (20/1.2 = 50/3 s) and w1 is split so both finish together: with a requests of w1 on t1,
    50/3 + a = (80 − a)/2.4  ⇒  3.4 a = 40  ⇒  a = 200/17 ≈ 11.76 (14.7 % of w1) and the
    makespan is T* = 50/3 + 200/17 = 1450/51 ≈ 28.431 s. So α* = 51/1450 and the plan spends
    the whole budget: 1 × $4 + 2 × $2 = $8/h.
    """
    result = solve(paper_toy(), SolveOptions(backend=backend))

    assert result.status is SolveStatus.OPTIMAL
    assert result.violations == ()
    (service,) = result.services
    assert 1 / service.scale_factor == pytest.approx(1450 / 51, rel=1e-5)
    assert service.cost_per_hour == pytest.approx(8.0)
    composition = {(e.pool, e.tensor_parallel): e.replicas for e in service.entries}
    assert composition == {("t1", 1): 1, ("t2", 2): 1}
    t1 = next(e for e in service.entries if e.pool == "t1")
    assert t1.assignment["w1"] == pytest.approx(2.5 / 17, abs=1e-4)
    assert t1.assignment["w2"] == pytest.approx(1.0, abs=1e-3)


def test_paper_toy_baselines_and_gain() -> None:
    """Homogeneous: 2×t1 ($8, 48.3 s); t2 only has 2 GPUs: TP2×t2 alone ($4, 80/2.4 + ... ).

    TP2×t2 alone: w1 at 2.4, w2 at 1.5 → 80/2.4 + 20/1.5 = 46.67 s, the best single type.
    The mixed plan's throughput gain is 46.67 / 28.43 − 1 = 64.1 %.
    """
    result = solve(paper_toy())
    (service,) = result.services
    by_type = {b.gpu_type: b for b in service.baselines}
    assert by_type["T1"].cost_per_hour == pytest.approx(8.0)
    assert by_type["T1"].served_rps == pytest.approx(100 / (40 + 20 / 2.4), rel=1e-5)
    assert by_type["T2"].served_rps == pytest.approx(100 / (80 / 2.4 + 20 / 1.5), rel=1e-5)
    assert service.throughput_gain_percent == pytest.approx(
        100 * ((80 / 2.4 + 20 / 1.5) / (1450 / 51) - 1), rel=1e-4
    )


def _min_cost_inputs(demand: float = 10.0, budget: float | None = None) -> PlanningInputs:
    pools = (
        Pool("big-od", "BIG", "on-demand", 4.0, available_gpus=8, gpus_per_node=8),
        Pool("small-spot", "SMALL", "spot", 1.0, available_gpus=4, gpus_per_node=4),
    )
    candidates = (
        Candidate("big-od", 1, "bf16", {"chat": 5.0}),
        Candidate("small-spot", 1, "bf16", {"chat": 1.5}),
    )
    service = ServiceDemand(
        "team-a",
        "chat",
        (RequestClass("chat", demand),),
        candidates,
        max_cost_per_hour=budget,
    )
    return PlanningInputs(pools, (service,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_min_cost_prefers_cheap_capacity_then_fills_with_expensive(backend: Backend) -> None:
    """Demand 10: small-spot gives 1.5 req/s for $1 (4 GPUs → 6 req/s), big gives 5 for $4.
    Options: 2 big = $8; 1 big + 4 small = $8 (11 req/s); 1 big + 3 small = $7 (9.5, short);
    so $8 is optimal, and 4 small alone (6 req/s) is short."""
    result = solve(_min_cost_inputs(), SolveOptions(backend=backend))
    assert result.status is SolveStatus.OPTIMAL
    assert result.total_cost_per_hour == pytest.approx(8.0)
    assert result.violations == ()
    (service,) = result.services
    assert service.class_capacity_rps["chat"] >= 10.0 - 1e-6
    # Cheapest single type: BIG needs 2 × $4 = $8; SMALL cannot (6 req/s max) → 0 % savings.
    assert service.savings_percent == pytest.approx(0.0, abs=1e-9)


def test_min_on_demand_replicas_forces_on_demand_capacity() -> None:
    inputs = _min_cost_inputs(demand=4.0)
    hedged = ServiceDemand(**{**inputs.services[0].__dict__, "min_on_demand_replicas": 1})
    plain = solve(inputs).services[0]
    assert {e.pool for e in plain.entries} == {"small-spot"}  # 3 × $1 beats 1 × $4
    result = solve(PlanningInputs(inputs.pools, (hedged,)))
    (service,) = result.services
    assert sum(e.replicas for e in service.entries if e.capacity_type == "on-demand") >= 1
    assert result.violations == ()


def test_budget_too_small_reports_the_cheapest_cost() -> None:
    """On unlimited GPUs the cheapest plan is 7 × small = $7 (10.5 req/s)."""
    result = solve(_min_cost_inputs(budget=6.5))
    assert result.status is SolveStatus.INFEASIBLE
    (service,) = result.services
    assert service.entries == ()
    assert [r.code for r in service.reasons] == [ReasonCode.BUDGET_TOO_SMALL]
    assert service.reasons[0].message == (
        "demand needs at least $7.00/h on the allowed GPUs; budget is $6.50/h"
    )


def test_budget_too_small_for_the_gpus_available_now() -> None:
    """$7.50 covers 7 × small, but only 4 small GPUs exist: with them the cheapest is $8."""
    result = solve(_min_cost_inputs(budget=7.5))
    (service,) = result.services
    assert [r.code for r in service.reasons] == [ReasonCode.BUDGET_TOO_SMALL]
    assert service.reasons[0].message == (
        "on the GPUs available now, demand needs at least $8.00/h; budget is $7.50/h"
    )


def test_no_capacity_reports_gpus_needed_and_available() -> None:
    """Demand 60 needs 12 BIG GPUs (5 req/s each) minus what SMALL covers (4 × 1.5 = 6):
    54 / 5 → 11 BIG GPUs, 8 available."""
    result = solve(_min_cost_inputs(demand=60.0))
    assert result.status is SolveStatus.INFEASIBLE
    (service,) = result.services
    assert [r.code for r in service.reasons] == [ReasonCode.NO_CAPACITY]
    assert "needs 11 BIG GPUs, 8 available" in service.reasons[0].message


def test_slo_unreachable_class_is_reported_with_the_rejection() -> None:
    inputs = _min_cost_inputs()
    service = ServiceDemand(
        "team-a",
        "rag",
        (RequestClass("chat", 1.0), RequestClass("rag", 1.0)),
        inputs.services[0].candidates,
        rejections=(
            Rejection("BIG", 1, "bf16", "rag", RejectionKind.SLO, "TPOT 30 ms > 20 ms target"),
        ),
    )
    result = solve(PlanningInputs(inputs.pools, (inputs.services[0], service)))
    assert result.status is SolveStatus.INFEASIBLE
    plans = {plan.name: plan for plan in result.services}
    assert [r.code for r in plans["rag"].reasons] == [ReasonCode.SLO_UNREACHABLE]
    assert "class rag" in plans["rag"].reasons[0].message
    assert "TPOT 30 ms" in plans["rag"].reasons[0].message
    # The broken service does not block the other one.
    assert plans["chat"].entries and plans["chat"].status is SolveStatus.OPTIMAL


def test_services_share_pools_and_contention_is_explained() -> None:
    pool = Pool("only", "L4", "on-demand", 1.0, available_gpus=8, gpus_per_node=8)
    services = tuple(
        ServiceDemand(
            "default", name, (RequestClass("c", 5.0),), (Candidate("only", 1, "bf16", {"c": 1.0}),)
        )
        for name in ("a", "b")
    )
    result = solve(PlanningInputs((pool,), services))
    # Not both: the whole answer is Infeasible (exit 3), but one of them is planned, and the
    # other is told what the fleet lacks for the two together.
    assert result.status is SolveStatus.INFEASIBLE
    planned, refused = result.services
    assert planned.status is SolveStatus.OPTIMAL and planned.entries[0].replicas == 5
    assert refused.reasons[0].code is ReasonCode.NO_CAPACITY
    assert "needs 10 L4 GPUs, 8 available" in refused.reasons[0].message


def test_max_replicas_too_small_is_an_invalid_spec() -> None:
    inputs = _min_cost_inputs(demand=20.0)
    bounded = ServiceDemand(**{**inputs.services[0].__dict__, "max_replicas": 3})
    result = solve(PlanningInputs(inputs.pools, (bounded,)))
    (service,) = result.services
    assert service.reasons[0].code is ReasonCode.INVALID_SPEC
    assert "needs at least 4 replicas; maxReplicas is 3" in service.reasons[0].message


def test_mixed_objectives_serve_min_cost_in_full_and_share_the_rest() -> None:
    """8 GPUs at 1 req/s each: MinCost 'fixed' needs 3; two MaxThroughput services with
    reference demand 1 req/s and ample budget split the remaining 5 GPUs: max-min fairness
    gives each α ≥ 2, and the total then reaches 5."""
    pool = Pool("only", "L4", "on-demand", 1.0, available_gpus=8, gpus_per_node=8)
    candidate = (Candidate("only", 1, "bf16", {"c": 1.0}),)
    fixed = ServiceDemand("default", "fixed", (RequestClass("c", 3.0),), candidate)
    elastic = tuple(
        ServiceDemand(
            "default",
            name,
            (RequestClass("c", 1.0),),
            candidate,
            objective=Objective.MAX_THROUGHPUT,
            max_cost_per_hour=100.0,
        )
        for name in ("x", "y")
    )
    result = solve(PlanningInputs((pool,), (fixed, *elastic)))
    assert result.objective == "Mixed"
    plans = {plan.name: plan for plan in result.services}
    assert plans["fixed"].replicas == 3
    assert min(plans["x"].scale_factor, plans["y"].scale_factor) >= 2.0 * (1 - 1e-5)
    assert plans["x"].scale_factor + plans["y"].scale_factor == pytest.approx(5.0, rel=1e-5)
    assert result.violations == ()


def test_objective_override_applies_to_every_service() -> None:
    inputs = _min_cost_inputs(budget=12.0)
    result = solve(inputs, SolveOptions(objective_override=Objective.MAX_THROUGHPUT))
    (service,) = result.services
    assert result.objective == "MaxThroughput"
    # $12: 2 big + 4 small = 16 req/s, or 3 big = 15, or 1 big + 4 small... → 16 / 10.
    assert service.scale_factor == pytest.approx(1.6, rel=1e-5)


def test_churn_keeps_the_current_plan_when_it_is_within_tolerance() -> None:
    """Demand 10: 2 × big ($8) and 1 × big + 4 × small ($8) tie. Whichever the operator runs
    now must be kept: zero churn."""
    inputs = _min_cost_inputs()
    key = ServiceKey("team-a", "chat")
    for current in (
        {(key, ConfigKey("big-od", 1, "bf16")): 2},
        {(key, ConfigKey("big-od", 1, "bf16")): 1, (key, ConfigKey("small-spot", 1, "bf16")): 4},
    ):
        result = solve(PlanningInputs(inputs.pools, inputs.services, current))
        assert result.churn_replicas == 0
        assert result.total_cost_per_hour == pytest.approx(8.0)


def test_churn_never_costs_more_than_the_tolerance() -> None:
    """Current: 3 × big ($12). Optimum $8; with 2 % tolerance the planner must move."""
    inputs = _min_cost_inputs()
    current = {(ServiceKey("team-a", "chat"), ConfigKey("big-od", 1, "bf16")): 3}
    result = solve(
        PlanningInputs(inputs.pools, inputs.services, current),
        SolveOptions(churn_cost_tolerance=0.02),
    )
    assert result.total_cost_per_hour <= 8.0 * 1.02 + 1e-9
    # Of the $8 plans, 2 × big is one replica away from 3 × big; the other is 1 + 4 away.
    assert result.churn_replicas == 1


def test_evaluate_catches_a_plan_that_breaks_every_family() -> None:
    from dataclasses import replace

    inputs = _min_cost_inputs(budget=8.0)
    (plan,) = solve(inputs).services
    entry = plan.entries[0]
    broken = replace(
        plan,
        entries=(replace(entry, replicas=entry.replicas + 10, gpus=entry.gpus + 10),),
    )
    constraints = {violation.constraint for violation in evaluate([broken], inputs)}
    assert {"budget", "availability", "served"} <= constraints
    under = replace(plan, entries=(replace(entry, replicas=0, gpus=0),))
    assert "capacity" in {violation.constraint for violation in evaluate([under], inputs)}


def test_output_is_deterministic() -> None:
    first = solve(paper_toy())
    second = solve(paper_toy())
    assert first.services == second.services
