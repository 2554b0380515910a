"""Pure parts of the operator: conditions, PlanChanged texts, reconcile decisions, flags."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gpumix.cli import build_parser
from gpumix.operator import events, reconcile, status
from gpumix.operator.manifests import SPEC_HASH_ANNOTATION
from gpumix.resources import Condition, PlanEntryStatus

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"


def entry(
    name: str = "chat-l4-spot-tp1-bf16", replicas: int = 2, ready: int = 0
) -> PlanEntryStatus:
    return PlanEntryStatus.model_validate(
        {
            "deployment": name,
            "pool": "l4-spot",
            "gpuType": "L4",
            "capacityType": "spot",
            "tensorParallel": 1,
            "weightFormat": "bf16",
            "replicas": replicas,
            "readyReplicas": ready,
            "gpus": replicas,
            "costPerHour": "0.88",
        }
    )


def view(**changes: Any) -> status.ServiceView:
    values: dict[str, Any] = {
        "generation": 3,
        "feasible": True,
        "infeasible_reason": "",
        "messages": (),
        "entries": (entry(),),
        "cost_per_hour": Decimal("0.88"),
        "baseline": None,
        "savings_percent": None,
        "migrating": False,
        "last_plan_time": T0,
    }
    values.update(changes)
    return status.ServiceView(**values)


def by_type(conditions: list[Condition]) -> dict[str, Condition]:
    return {condition.type: condition for condition in conditions}


# -- conditions ---------------------------------------------------------------------------------


def test_planned_but_not_ready() -> None:
    result = status.build_status(view(), None, T0)
    conditions = by_type(result.conditions)
    assert [c.type for c in result.conditions] == ["Ready", "Planned", "Feasible", "Progressing"]
    assert conditions["Ready"].status == "False"
    assert conditions["Ready"].reason == "ReplicasNotReady"
    assert conditions["Planned"].status == "True"
    assert conditions["Feasible"].status == "True"
    assert all(c.observed_generation == 3 for c in result.conditions)
    assert result.replicas == "0/2" and result.observed_generation == 3


def test_transition_time_moves_only_when_status_changes() -> None:
    first = status.build_status(view(), None, T0)
    ready = status.build_status(view(entries=(entry(ready=2),)), first, T1)
    conditions = by_type(ready.conditions)
    assert conditions["Ready"].status == "True"
    assert conditions["Ready"].last_transition_time == T1
    assert conditions["Planned"].last_transition_time == T0
    again = status.build_status(view(entries=(entry(ready=2),)), ready, "2026-01-02T00:00:00Z")
    assert again == ready
    assert again.replicas == "2/2"


def test_infeasible_with_a_previous_plan_keeps_it() -> None:
    result = status.build_status(
        view(feasible=False, infeasible_reason="BudgetTooSmall", messages=("needs $2/h",)),
        None,
        T0,
    )
    conditions = by_type(result.conditions)
    assert conditions["Feasible"].status == "False"
    assert conditions["Feasible"].reason == "BudgetTooSmall"
    assert conditions["Feasible"].message == "needs $2/h"
    assert conditions["Planned"].reason == "LastGoodPlanKept"
    assert result.reasons == ["needs $2/h"]


def test_invalid_spec_without_plan() -> None:
    result = status.build_status(
        view(feasible=False, infeasible_reason="InvalidSpec", messages=("bad",), entries=()),
        None,
        T0,
    )
    conditions = by_type(result.conditions)
    assert conditions["Planned"].status == "False"
    assert conditions["Ready"].reason == "NoPlan"
    assert result.replicas == "0/0"


def test_migrating_is_progressing() -> None:
    conditions = by_type(status.build_status(view(migrating=True), None, T0).conditions)
    assert conditions["Progressing"].status == "True"
    assert conditions["Progressing"].reason == "Migrating"


def test_status_document_is_camel_case_with_decimal_strings() -> None:
    document = status.status_document(status.build_status(view(), None, T0))
    assert document["costPerHour"] == "0.88"
    assert document["plan"][0]["costPerHour"] == "0.88"
    assert "baseline" not in document


# -- events ------------------------------------------------------------------------------------


def summary(gpu: str, capacity: str, replicas: int, tp: int = 1) -> events.EntrySummary:
    pool = f"{gpu.lower()}-{capacity}"
    return events.EntrySummary(gpu, capacity, pool, tp, "bf16", replicas)


def test_plan_change_message_names_both_plans_costs_and_cause() -> None:
    old = {"l4-spot": events.PoolFacts(3, 3, 3, 0.29)}
    new = {"l4-spot": events.PoolFacts(1, 1, 1, 0.29)}
    cause = events.change_cause(old_generation=4, new_generation=4, old_pools=old, new_pools=new)
    message = events.plan_change_message(
        [summary("L4", "spot", 3)], [summary("A100-80GB", "on-demand", 1)], 2.61, 3.67, cause
    )
    assert message == (
        "L4/spot ×3 → A100-80GB/on-demand ×1 ($2.61/h → $3.67/h): pool l4-spot lost 2 nodes"
    )


def test_causes_spec_change_price_and_new_pool() -> None:
    old = {"a": events.PoolFacts(1, 1, 8, 1.0)}
    new = {"a": events.PoolFacts(1, 1, 8, 2.0), "b": events.PoolFacts(2, 2, 16, 1.0)}
    cause = events.change_cause(old_generation=1, new_generation=2, old_pools=old, new_pools=new)
    assert cause == (
        "spec changed (generation 1 → 2); pool a price $1.00/h → $2.00/h per GPU; pool b appeared"
    )
    assert (
        events.change_cause(old_generation=None, new_generation=1, old_pools=None, new_pools=new)
        == "first plan"
    )
    assert (
        events.change_cause(old_generation=1, new_generation=1, old_pools=None, new_pools=new)
        == "operator restarted"
    )


def test_a_newcomer_sharing_the_pools_is_named_as_the_cause() -> None:
    # A running service moved because team-b's new service took its GPUs: say so, not
    # "periodic re-plan".
    pools = {"a": events.PoolFacts(1, 1, 8, 1.0)}
    cause = events.change_cause(
        old_generation=3,
        new_generation=3,
        old_pools=pools,
        new_pools=pools,
        old_peers=frozenset({"team-a/rag", "team-c/old"}),
        new_peers=frozenset({"team-a/rag", "team-b/newcomer"}),
    )
    assert cause == (
        "services sharing the pools planned: team-b/newcomer; "
        "services sharing the pools removed: team-c/old"
    )
    unchanged = events.change_cause(
        old_generation=3, new_generation=3, old_pools=pools, new_pools=pools,
        old_peers=frozenset({"team-a/rag"}), new_peers=frozenset({"team-a/rag"}),
    )  # fmt: skip
    assert unchanged == "periodic re-plan"


def test_tensor_parallel_and_format_appear_only_when_not_default() -> None:
    text = events.EntrySummary("H100-80GB", "spot", "h", 2, "fp8", 1).text()
    assert text == "H100-80GB/spot tp2 fp8 ×1"
    assert events.same_plan([summary("L4", "spot", 1)], [summary("L4", "spot", 1)])
    assert not events.same_plan([summary("L4", "spot", 1)], [summary("L4", "spot", 2)])


# -- reconcile decisions -----------------------------------------------------------------------


def desired(kind: str, name: str, spec_hash: str, replicas: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "kind": kind,
        "metadata": {"name": name, "annotations": {SPEC_HASH_ANNOTATION: spec_hash}},
        "spec": {},
    }
    if kind == "Deployment":
        obj["spec"]["replicas"] = replicas
    return obj


def child(
    kind: str, name: str, spec_hash: str, replicas: int = 1, ready: int = 0
) -> reconcile.Child:
    return reconcile.Child(kind, "ns", name, spec_hash, replicas, ready)


def test_unchanged_and_ready_means_no_writes() -> None:
    actions = reconcile.decide(
        [desired("Deployment", "a", "h1"), desired("Service", "a", "s1")],
        [child("Deployment", "a", "h1", ready=1), child("Service", "a", "s1")],
        deadline_passed=False,
    )
    assert actions.idle and not actions.migrating and actions.not_ready == ()


def test_changed_hash_is_applied() -> None:
    actions = reconcile.decide(
        [desired("Deployment", "a", "h2")], [child("Deployment", "a", "h1")], deadline_passed=False
    )
    assert [obj["metadata"]["name"] for obj in actions.apply] == ["a"]


def test_a_deployment_scaled_by_hand_is_scaled_back() -> None:
    actions = reconcile.decide(
        [desired("Deployment", "a", "h1", replicas=3)],
        [child("Deployment", "a", "h1", replicas=0, ready=0)],
        deadline_passed=False,
    )
    assert [obj["spec"]["replicas"] for obj in actions.apply] == [3]


def test_obsolete_children_wait_for_the_new_ones() -> None:
    actual = [child("Deployment", "old", "h0", ready=1), child("Service", "old", "s0")]
    wanted = [desired("Deployment", "new", "h1"), desired("Service", "new", "s1")]
    waiting = reconcile.decide(wanted, actual, deadline_passed=False)
    assert [obj["metadata"]["name"] for obj in waiting.apply] == ["new", "new"]
    assert waiting.delete == () and {c.name for c in waiting.kept} == {"old"}
    assert waiting.migrating and waiting.not_ready == ("new",)

    ready = [*actual, child("Deployment", "new", "h1", ready=1), child("Service", "new", "s1")]
    done = reconcile.decide(wanted, ready, deadline_passed=False)
    assert done.apply == () and {(c.kind, c.name) for c in done.delete} == {
        ("Deployment", "old"),
        ("Service", "old"),
    }


def test_an_obsolete_deployment_without_ready_pods_goes_at_once() -> None:
    # It serves nothing; its pending pods would only take GPUs the new plan needs.
    actions = reconcile.decide(
        [desired("Deployment", "new", "h1")],
        [
            child("Deployment", "old", "h0", ready=0),
            child("Service", "old", "s0"),
            child("Deployment", "new", "h1", ready=0),
        ],
        deadline_passed=False,
    )
    assert {(c.kind, c.name) for c in actions.delete} == {("Deployment", "old"), ("Service", "old")}
    assert not actions.migrating and actions.not_ready == ("new",) and not actions.stalled


def test_past_the_deadline_what_serves_stays_and_the_migration_stalls() -> None:
    # Make-before-break under scarcity: the new plan is not ready at the deadline (say its pods
    # cannot be scheduled). Nothing that serves goes; the planner is told to re-plan instead.
    wanted = [desired("Deployment", "new", "h1", replicas=2), desired("Service", "new", "s1")]
    actual = [
        child("Deployment", "old-a", "h0", replicas=2, ready=2),
        child("Service", "old-a", "s0"),
        child("Deployment", "old-b", "h0", replicas=1, ready=0),
        child("Service", "old-b", "s0"),
        child("Deployment", "new", "h1", replicas=2, ready=0),
        child("Service", "new", "s1"),
    ]
    assert not reconcile.decide(wanted, actual, deadline_passed=False).stalled
    stalled = reconcile.decide(wanted, actual, deadline_passed=True)
    assert stalled.stalled and stalled.migrating and stalled.not_ready == ("new",)
    assert {(c.kind, c.name) for c in stalled.kept} == {
        ("Deployment", "old-a"),
        ("Service", "old-a"),
    }
    assert {(c.kind, c.name) for c in stalled.delete} == {
        ("Deployment", "old-b"),
        ("Service", "old-b"),
    }


def test_partially_ready_deployment_is_not_ready() -> None:
    actions = reconcile.decide(
        [desired("Deployment", "new", "h1", replicas=3)],
        [
            child("Deployment", "old", "h0", ready=1),
            child("Deployment", "new", "h1", replicas=3, ready=2),
        ],
        deadline_passed=False,
    )
    assert actions.delete == () and actions.not_ready == ("new",)


def test_migration_clock_restarts_only_for_a_new_target() -> None:
    clock = reconcile.advance_clock(None, "target-1", now=100.0, timeout=600.0)
    assert clock.deadline == 700.0
    assert reconcile.advance_clock(clock, "target-1", now=200.0, timeout=600.0) is clock
    assert reconcile.advance_clock(clock, "target-2", now=200.0, timeout=600.0).deadline == 800.0


def test_child_from_body_reads_hash_and_readiness() -> None:
    body = {
        "kind": "Deployment",
        "metadata": {"name": "a", "namespace": "ns", "annotations": {SPEC_HASH_ANNOTATION: "h"}},
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 2},
    }
    assert reconcile.child_from_body(body) == reconcile.Child("Deployment", "ns", "a", "h", 3, 2)


# -- command line ------------------------------------------------------------------------------


def test_operator_flags() -> None:
    args = build_parser().parse_args(
        [
            "operator",
            "-n",
            "team-a",
            "--namespace",
            "team-b",
            "--planner-interval",
            "30",
            "--time-limit",
            "5",
            "--liveness",
            "none",
            "--verbose",
        ]
    )
    assert args.namespace == ["team-a", "team-b"]
    assert args.planner_interval == 30.0 and args.time_limit == 5.0
    assert args.liveness == "none" and args.verbose and args.peering is None
    defaults = build_parser().parse_args(["operator"])
    assert defaults.namespace == [] and defaults.liveness == "http://0.0.0.0:8080/healthz"
    assert defaults.planner_interval == 60.0 and defaults.migration_timeout == 600.0
