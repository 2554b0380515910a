"""The plan API over the real fleet planner's memory (fake Kubernetes, real inventory and
solver): what it reports matches what the planner wrote, and a what-if writes nothing."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

from gpumix.api import create_app
from gpumix.operator.api_source import PlannerSource
from test_operator_planner import NAMESPACE, Fleet, gpu_node, llmservice


def l4_node(name: str, capacity_type: str) -> dict[str, Any]:
    node = gpu_node(name, gpus=4)
    node["metadata"]["labels"]["karpenter.sh/capacity-type"] = capacity_type
    return node


async def planned_fleet() -> Fleet:
    fleet = Fleet([l4_node("spot-0", "spot"), l4_node("od-0", "on-demand")], [llmservice()])
    await fleet.run_pass(force=True)
    fleet.mark_ready()
    await fleet.run_pass()
    return fleet


async def test_before_the_first_pass_the_api_has_nothing_to_show_and_no_what_if() -> None:
    fleet = Fleet([l4_node("spot-0", "spot")], [llmservice()])
    with TestClient(create_app(PlannerSource(fleet.planner))) as client:
        assert client.get("/api/v1/fleet").json()["pools"] == []
        assert client.post("/api/v1/whatif", json={}).status_code == 503


async def test_fleet_and_services_report_what_the_planner_wrote() -> None:
    fleet = await planned_fleet()
    written = fleet.kube.statuses["chat"]
    with TestClient(create_app(PlannerSource(fleet.planner))) as client:
        pools = {pool["name"]: pool for pool in client.get("/api/v1/fleet").json()["pools"]}
        chat = client.get(f"/api/v1/services/{NAMESPACE}/chat").json()

    assert set(pools) == {"l4-spot", "l4-on-demand"}
    assert pools["l4-spot"]["gpus"] == 4 and pools["l4-spot"]["capacityType"] == "spot"
    held = {p: sum(h["gpus"] for h in pool["holdings"]) for p, pool in pools.items()}
    by_pool: dict[str, int] = {}
    for entry in written["plan"]:
        by_pool[entry["pool"]] = by_pool.get(entry["pool"], 0) + entry["gpus"]
    assert {p: g for p, g in held.items() if g} == by_pool

    assert chat["costPerHour"] == float(written["costPerHour"])
    assert [e["deployment"] for e in chat["plan"]] == [e["deployment"] for e in written["plan"]]
    assert chat["readyReplicas"] == written["readyReplicas"] > 0
    assert chat["feasible"] is True
    assert {c["type"] for c in chat["conditions"]} >= {"Ready", "Feasible"}
    assert chat["demand"]["plannedRequestsPerSecond"] == 2.4  # 2 req/s + 20 % headroom
    # One plan change so far (the first plan), with the PlanChanged event's text.
    changes = chat["planChanges"]
    assert len(changes) == 1
    planned_events = [e for e in fleet.kube.events if e["reason"] == "PlanChanged"]
    assert changes[0]["message"] == planned_events[0]["message"]


async def test_plan_changes_are_kept_in_order_and_bounded() -> None:
    fleet = await planned_fleet()
    fleet.planner.history.kept = 2  # applies to histories started from now on
    fleet.planner.history.keep_only(())
    for generation, rps in enumerate(("6", "12", "3"), start=2):
        fleet.set_service(llmservice(generation=generation, rps=rps))
        await fleet.run_pass()
    with TestClient(create_app(PlannerSource(fleet.planner))) as client:
        changes = client.get(f"/api/v1/services/{NAMESPACE}/chat").json()["planChanges"]
    assert [c["generation"] for c in changes] == [3, 4]
    assert changes[-1]["costAfter"] < changes[-1]["costBefore"]


async def test_a_what_if_plans_without_the_spot_pool_and_writes_nothing() -> None:
    fleet = await planned_fleet()
    running = fleet.kube.statuses["chat"]["plan"]
    assert {entry["pool"] for entry in running} == {"l4-spot"}
    calls = list(fleet.kube.calls)
    objects = copy.deepcopy(fleet.kube.objects)
    statuses = copy.deepcopy(fleet.kube.statuses)

    with TestClient(create_app(PlannerSource(fleet.planner))) as client:
        body = client.post("/api/v1/whatif", json={"removedPools": ["l4-spot"]}).json()

    chat = next(s for s in body["services"] if s["name"] == "chat")
    assert chat["feasible"]
    assert {entry["pool"] for entry in chat["plan"]} == {"l4-on-demand"}
    moved = {c["pool"]: c["delta"] for c in chat["changes"]}
    assert moved["l4-spot"] == -sum(entry["replicas"] for entry in running)
    assert moved["l4-on-demand"] > 0
    assert chat["costDeltaPerHour"] > 0  # on-demand costs more than spot
    # Read-only: not one call to the Kubernetes adapter, and the planner's memory unchanged.
    assert fleet.kube.calls == calls
    assert fleet.kube.objects == objects and fleet.kube.statuses == statuses
    await fleet.run_pass()
    assert fleet.kube.statuses["chat"]["plan"] == running


async def test_a_service_already_without_a_plan_for_its_spec_does_not_become_infeasible() -> None:
    fleet = await planned_fleet()
    fleet.set_service(llmservice(generation=2, budget={"maxCostPerHour": "0.01"}))
    await fleet.run_pass()
    assert fleet.condition("Feasible")["status"] == "False"
    assert fleet.kube.statuses["chat"]["plan"], "the last good plan keeps running"
    with TestClient(create_app(PlannerSource(fleet.planner))) as client:
        body = client.post("/api/v1/whatif", json={}).json()
    [chat] = body["services"]
    assert not chat["feasible"] and not chat["becomesInfeasible"]
    assert "BudgetTooSmall" in chat["reasonCodes"]
    # Losing its pool is news for a service that has a plan now, and this one does not.
    lost = client_post_removing_spot(fleet)
    assert not lost["becomesInfeasible"]


def client_post_removing_spot(fleet: Fleet) -> dict[str, Any]:
    with TestClient(create_app(PlannerSource(fleet.planner))) as client:
        body = client.post("/api/v1/whatif", json={"removedPools": ["l4-spot"]}).json()
    return dict(body["services"][0])


async def test_losing_every_pool_a_planned_service_can_use_makes_it_infeasible() -> None:
    fleet = await planned_fleet()
    with TestClient(create_app(PlannerSource(fleet.planner))) as client:
        body = client.post(
            "/api/v1/whatif", json={"removedPools": ["l4-spot", "l4-on-demand"]}
        ).json()
    [chat] = body["services"]
    assert chat["becomesInfeasible"] and chat["plan"] == [] and chat["reasons"]
