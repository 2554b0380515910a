"""A re-plan of an unchanged fleet keeps the class shares that run now (solver.stability)."""

from __future__ import annotations

import pytest

from gpumix.solver import (
    Candidate,
    ConfigKey,
    PlanningInputs,
    Pool,
    RequestClass,
    ServiceDemand,
    ServiceKey,
    ServicePlan,
    SolveOptions,
    solve,
)

KEY = ServiceKey("team", "chat")
A, B = ConfigKey("a", 1, "bf16"), ConfigKey("b", 1, "bf16")


def inputs(chat_rps: float, rag_rps: float, **current: object) -> PlanningInputs:
    """Two equally priced one-GPU pools whose replicas serve either class at 10 req/s: with a
    replica on each, many class splits are optimal."""
    pools = (
        Pool("a", "L4", "on-demand", 1.0, available_gpus=1, gpus_per_node=1),
        Pool("b", "L4", "on-demand", 1.0, available_gpus=1, gpus_per_node=1),
    )
    candidates = tuple(
        Candidate(pool.name, 1, "bf16", {"chat": 10.0, "rag": 10.0}) for pool in pools
    )
    service = ServiceDemand(
        KEY.namespace,
        KEY.name,
        (RequestClass("chat", chat_rps), RequestClass("rag", rag_rps)),
        candidates,
        min_replicas=2,
    )
    return PlanningInputs(pools, (service,), **current)  # type: ignore[arg-type]


def shares(plan: ServicePlan) -> dict[ConfigKey, dict[str, float]]:
    return {entry.key: dict(entry.assignment) for entry in plan.entries}


def test_running_shares_stay_when_the_replicas_still_carry_them() -> None:
    running = {(KEY, A): {"chat": 1.0, "rag": 0.0}, (KEY, B): {"chat": 0.0, "rag": 1.0}}
    result = solve(
        inputs(6.0, 6.0, current_plan={(KEY, A): 1, (KEY, B): 1}, current_assignment=running),
        SolveOptions(),
    )
    (plan,) = result.services
    assert shares(plan) == {A: {"chat": 1.0, "rag": 0.0}, B: {"chat": 0.0, "rag": 1.0}}
    assert result.violations == ()
    assert plan.class_capacity_rps == pytest.approx({"chat": 10.0, "rag": 10.0})


def test_running_shares_that_would_overload_a_replica_are_replaced() -> None:
    # chat grew to 12 req/s: all of it on one 10 req/s replica no longer fits
    running = {(KEY, A): {"chat": 1.0, "rag": 0.0}, (KEY, B): {"chat": 0.0, "rag": 1.0}}
    result = solve(
        inputs(12.0, 6.0, current_plan={(KEY, A): 1, (KEY, B): 1}, current_assignment=running),
        SolveOptions(),
    )
    (plan,) = result.services
    assert plan.entries and result.violations == ()
    assert shares(plan) != {A: {"chat": 1.0, "rag": 0.0}, B: {"chat": 0.0, "rag": 1.0}}


def test_running_shares_do_not_survive_a_change_of_configurations() -> None:
    # the service ran two replicas on pool a (before it shrank to one GPU): shares that name
    # only a cannot describe a plan on a and b
    running = {(KEY, A): {"chat": 1.0, "rag": 1.0}}
    result = solve(
        inputs(6.0, 6.0, current_plan={(KEY, A): 2}, current_assignment=running),
        SolveOptions(),
    )
    (plan,) = result.services
    assert result.violations == ()
    assert sum(entry.assignment["chat"] for entry in plan.entries) == pytest.approx(1.0)


def test_a_second_pass_over_the_first_pass_plan_returns_the_same_shares() -> None:
    """What the operator does on every pass and after a restart: the plan in status (shares to
    3 decimals) is the current plan of the next solve."""
    first = solve(inputs(7.0, 4.0), SolveOptions()).services[0]
    current_plan = {(KEY, entry.key): entry.replicas for entry in first.entries}
    current_assignment = {
        (KEY, entry.key): {name: round(share, 3) for name, share in entry.assignment.items()}
        for entry in first.entries
    }
    second = solve(
        inputs(7.0, 4.0, current_plan=current_plan, current_assignment=current_assignment),
        SolveOptions(),
    ).services[0]
    assert {(KEY, e.key): e.replicas for e in second.entries} == current_plan
    assert shares(second) == {key: dict(value) for (_, key), value in current_assignment.items()}
