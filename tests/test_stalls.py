"""Stalled migrations: the reason in the API's words, and which candidates a block leaves out."""

from __future__ import annotations

from typing import Any

from gpumix.operator import inventory, stalls
from gpumix.solver import Candidate, ConfigKey, ReasonCode, RequestClass, ServiceDemand
from gpumix.solver.explain import precheck


def pending_pod(deployment: str, message: str | None) -> dict[str, Any]:
    conditions = (
        [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]
        if message
        else []
    )
    return {
        "metadata": {
            "name": f"{deployment}-x",
            "namespace": "team-a",
            "labels": {
                "app.kubernetes.io/managed-by": "gpumix",
                "gpumix.io/deployment": deployment,
            },
        },
        "spec": {"containers": [{"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": 2}}}]},
        "status": {"phase": "Pending", "conditions": conditions},
    }


def test_a_pending_pod_record_keeps_its_deployment_and_the_scheduler_s_message() -> None:
    record = inventory.pod_record(pending_pod("chat-h100-spot-tp2-bf16", "0/9 nodes: Insufficient"))
    assert record is not None
    assert record.deployment == "chat-h100-spot-tp2-bf16"
    assert record.unschedulable == "0/9 nodes: Insufficient"
    scheduled = inventory.pod_record(pending_pod("chat-h100-spot-tp2-bf16", None))
    assert scheduled is not None and scheduled.unschedulable is None


def test_the_problem_is_quoted_from_the_api() -> None:
    refused = {
        "status": {
            "conditions": [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": 'pods "x" is forbidden: exceeded quota: gpus',
                }
            ]
        }
    }
    pods = [inventory.pod_record(pending_pod("new", "0/9 nodes are available"))]
    found = stalls.deployment_problems(
        "team-a", {"new": {}, "quota": refused, "other": {}}, [p for p in pods if p]
    )
    assert found == {
        "new": "its pods cannot be scheduled: 0/9 nodes are available",
        "quota": 'its pods cannot be created: pods "x" is forbidden: exceeded quota: gpus',
    }
    assert stalls.replacement_problem(None, []) == stalls.NOT_READY


def block(
    pool: str, until: float = 100.0, nodes: int = 2, running: frozenset[ConfigKey] = frozenset()
) -> stalls.PoolBlock:
    return stalls.PoolBlock(pool, "its pods cannot be scheduled", until, nodes, running)


def test_a_block_ends_when_it_expires_or_the_pool_grows() -> None:
    blocks = {"a": block("a", until=100.0), "b": block("b", until=500.0, nodes=2)}
    assert set(stalls.active(blocks, 50.0, {"a": 2, "b": 2})) == {"a", "b"}
    assert set(stalls.active(blocks, 150.0, {"a": 2, "b": 2})) == {"b"}
    assert set(stalls.active(blocks, 150.0, {"a": 2, "b": 3})) == set()


def candidate(pool: str, tp: int = 1) -> Candidate:
    return Candidate(pool, tp, "bf16", {"chat": 5.0})


def demand(*candidates: Candidate) -> ServiceDemand:
    return ServiceDemand(
        "team-a", "chat", (RequestClass("chat", 2.0, 512, 128),), tuple(candidates)
    )


def test_a_blocked_pool_keeps_only_the_configurations_that_run_now() -> None:
    running = frozenset({ConfigKey("h100", 1, "bf16")})
    planned = stalls.without_blocked(
        demand(candidate("h100"), candidate("h100", tp=2), candidate("l4")),
        {"h100": block("h100", running=running)},
    )
    assert [c.key for c in planned.candidates] == [
        ConfigKey("h100", 1, "bf16"),
        ConfigKey("l4", 1, "bf16"),
    ]
    assert precheck(planned) == ()


def test_a_service_left_with_no_pool_says_which_pools_are_left_out_and_why() -> None:
    planned = stalls.without_blocked(demand(candidate("h100")), {"h100": block("h100")})
    (reason,) = precheck(planned)
    assert reason.code is ReasonCode.NO_CAPACITY
    assert "pool h100 is left out for now (its pods cannot be scheduled)" in reason.message


def test_a_container_that_cannot_start_is_quoted() -> None:
    body = pending_pod("new", None)
    body["status"] = {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": "vllm",
                "state": {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": 'Back-off pulling image "vllm/vllm-openai:v9"',
                    }
                },
            }
        ],
    }
    starting = pending_pod("new", None)
    starting["status"] = {
        "phase": "Pending",
        "containerStatuses": [
            {"name": "vllm", "state": {"waiting": {"reason": "ContainerCreating"}}}
        ],
    }
    stuck, fine = inventory.pod_record(body), inventory.pod_record(starting)
    assert stuck is not None and fine is not None and fine.container_problem is None
    assert stalls.replacement_problem({}, [fine, stuck]) == (
        "its containers cannot start: "
        'ImagePullBackOff: Back-off pulling image "vllm/vllm-openai:v9"'
    )
