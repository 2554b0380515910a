"""One service that cannot be planned must not take the other services' plans with it."""

from __future__ import annotations

import pytest

from gpumix.solver import (
    Candidate,
    ConfigKey,
    PlanningInputs,
    Pool,
    ReasonCode,
    RequestClass,
    ServiceDemand,
    ServiceKey,
    ServicePlan,
    SolveStatus,
    solve,
)

POOL = Pool("l4-spot", "L4", "spot", 1.0, available_gpus=4, gpus_per_node=4)
CANDIDATE = Candidate("l4-spot", 1, "bf16", {"chat": 1.0})


def service(name: str, demand_rps: float, budget: float | None = None) -> ServiceDemand:
    return ServiceDemand(
        "team-a",
        name,
        (RequestClass("chat", demand_rps),),
        (CANDIDATE,),
        max_cost_per_hour=budget,
        min_replicas=0,
    )


def planned(plans: tuple[ServicePlan, ...], name: str) -> int:
    (plan,) = [plan for plan in plans if plan.name == name]
    return sum(entry.replicas for entry in plan.entries)


def test_a_budget_too_small_leaves_the_other_services_planned() -> None:
    inputs = PlanningInputs(
        (POOL,), (service("frugal", 2.0, budget=0.5), service("chat", 2.0), service("rag", 1.0))
    )
    result = solve(inputs)

    by_name = {plan.name: plan for plan in result.services}
    assert by_name["frugal"].status is SolveStatus.INFEASIBLE
    assert by_name["frugal"].reasons[0].code is ReasonCode.BUDGET_TOO_SMALL
    assert by_name["chat"].status is SolveStatus.OPTIMAL
    assert by_name["rag"].status is SolveStatus.OPTIMAL
    assert planned(result.services, "chat") == 2 and planned(result.services, "rag") == 1
    # The whole answer still says not everything was planned (`gpumix plan` exits 3).
    assert result.status is SolveStatus.INFEASIBLE
    assert result.violations == ()
    assert result.total_cost_per_hour == pytest.approx(3.0)


def test_under_contention_running_services_keep_their_gpus_and_the_newcomer_waits() -> None:
    # 4 GPUs: "zeta" runs on 3 of them; "alpha" (first in key order) asks for 2. Alone each
    # fits; together they do not. The running service is kept, whatever the names' order.
    running = service("zeta", 3.0)
    newcomer = service("alpha", 2.0)
    inputs = PlanningInputs(
        (POOL,),
        (newcomer, running),
        current_plan={(ServiceKey("team-a", "zeta"), ConfigKey("l4-spot", 1, "bf16")): 3},
    )
    result = solve(inputs)

    by_name = {plan.name: plan for plan in result.services}
    assert by_name["zeta"].status is SolveStatus.OPTIMAL
    assert planned(result.services, "zeta") == 3
    assert by_name["alpha"].status is SolveStatus.INFEASIBLE
    (reason,) = by_name["alpha"].reasons
    assert reason.code is ReasonCode.NO_CAPACITY
    assert "team-a/zeta" in reason.message and "L4" in reason.message
    assert result.violations == ()


def test_without_a_running_service_admission_follows_key_order() -> None:
    inputs = PlanningInputs((POOL,), (service("beta", 3.0), service("alpha", 2.0)))
    result = solve(inputs)

    by_name = {plan.name: plan for plan in result.services}
    assert by_name["alpha"].status is SolveStatus.OPTIMAL
    assert by_name["beta"].status is SolveStatus.INFEASIBLE


def running(name: str, replicas: int) -> dict[tuple[ServiceKey, ConfigKey], int]:
    return {(ServiceKey("team-a", name), ConfigKey("l4-spot", 1, "bf16")): replicas}


def test_gpus_of_a_service_that_keeps_its_last_plan_are_not_handed_out() -> None:
    # "broken" is not in the solve (the operator could not parse its new spec) but keeps
    # running its last plan on 3 of the 4 GPUs: "chat" may only use the last one.
    small = solve(PlanningInputs((POOL,), (service("chat", 1.0),), running("broken", 3)))
    assert planned(small.services, "chat") == 1

    large = solve(PlanningInputs((POOL,), (service("chat", 2.0),), running("broken", 3)))
    (chat,) = large.services
    assert chat.status is SolveStatus.INFEASIBLE
    assert "1 available" in chat.reasons[0].message


def test_a_running_service_refused_for_its_budget_keeps_its_gpus() -> None:
    # "frugal" runs on 3 GPUs; its new budget cannot pay for them, so it keeps its last plan
    # (Feasible=False) and the others are planned around it.
    inputs = PlanningInputs(
        (POOL,),
        (service("frugal", 3.0, budget=0.5), service("chat", 2.0), service("rag", 1.0)),
        running("frugal", 3),
    )
    result = solve(inputs)

    by_name = {plan.name: plan for plan in result.services}
    assert by_name["frugal"].reasons[0].code is ReasonCode.BUDGET_TOO_SMALL
    assert by_name["chat"].status is SolveStatus.INFEASIBLE  # needs 2 of the 1 left
    assert planned(result.services, "rag") == 1
