"""Hostile specs against the real API server and operator: each is refused by the API server or
answered with a Feasible=False condition that has a reason and a message, and none of them
touches a healthy service in the same namespace."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest

from support import Kubectl, OperatorProcess, condition, is_ready, llmservice, wait_for

Spec = dict[str, Any]


def workload(spec: Spec, **fields: Any) -> None:
    spec["workload"].update(fields)


def first_class(spec: Spec, **fields: Any) -> None:
    spec["workload"]["classes"][0].update(fields)


def placement(spec: Spec, **fields: Any) -> None:
    spec.setdefault("placement", {}).update(fields)


def serving(spec: Spec, **fields: Any) -> None:
    spec.setdefault("serving", {}).update(fields)


HOSTILE: dict[str, Callable[[Spec], None]] = {
    "huge-demand": lambda s: workload(s, requestsPerSecond="1000000000"),
    "prompt-longer-than-max-model-len": lambda s: first_class(s, inputTokens=100_000),
    "unknown-model": lambda s: s["model"].update(name="acme/no-such-model"),
    "unknown-gpu-type": lambda s: placement(s, gpuTypes=["NoSuchGPU"]),
    "budget-of-a-cent": lambda s: s.update(budget={"maxCostPerHour": "0.01"}),
    "ttft-of-one-ms": lambda s: s["slo"].update(ttftMilliseconds=1),
    "min-above-max-replicas": lambda s: placement(s, minReplicas=5, maxReplicas=2),
    "autoscaling-min-above-max": lambda s: workload(
        s,
        autoscaling={"enabled": True, "minRequestsPerSecond": "50", "maxRequestsPerSecond": "5"},
    ),
    "max-model-len-of-ten-million": lambda s: s["model"].update(maxModelLen=10_000_000),
    "zero-shares": lambda s: [c.update(share=0) for c in s["workload"]["classes"]],
    "no-output-tokens": lambda s: first_class(s, outputTokens=0),
    "owned-tensor-parallel-size-in-extra-args": lambda s: serving(
        s, extraArgs=["--enable-prefix-caching", "--tensor-parallel-size", "8"]
    ),
    "cuda-visible-devices-in-env": lambda s: serving(
        s, env=[{"name": "CUDA_VISIBLE_DEVICES", "value": "0,1,2,3,4,5,6,7"}]
    ),
}
# What the answer must name, where a generic reason would not tell the user what to change.
MUST_NAME = {
    "owned-tensor-parallel-size-in-extra-args": (
        "spec.serving.extraArgs[1]: --tensor-parallel-size is set by gpumix from the plan"
    ),
    "cuda-visible-devices-in-env": "CUDA_VISIBLE_DEVICES is set by the GPU device plugin",
    "autoscaling-min-above-max": "minRequestsPerSecond must not exceed maxRequestsPerSecond",
}
REASONS = {"InvalidSpec", "SLOUnreachable", "BudgetTooSmall", "NoCapacity", "NoSolutionFound"}


def refused_or_answered(kubectl: Kubectl, namespace: str, name: str, spec: Spec) -> str:
    body = llmservice(name, namespace)
    body["spec"].update(copy.deepcopy(spec))
    output = kubectl.apply(body, check=False)
    if "NotFound" in kubectl.run("get", "llmsvc", name, "-n", namespace, check=False):
        assert "invalid" in output.lower() or "error" in output.lower(), output
        return f"refused by the API server: {output.strip().splitlines()[-1][:160]}"

    def answered() -> dict[str, Any] | None:
        feasible = condition(kubectl.json("llmsvc", name, "-n", namespace), "Feasible")
        return feasible if feasible.get("status") == "False" else None

    feasible = wait_for(f"{name} to get Feasible=False", answered, timeout=60)
    assert feasible.get("reason") in REASONS, feasible
    assert feasible.get("message"), feasible
    assert ": :" not in feasible["message"], f"an empty prefix in the message: {feasible}"
    return f"{feasible['reason']}: {feasible['message'][:160]}"


def terminating_namespaces(kubectl: Kubectl) -> list[str]:
    return [
        ns["metadata"]["name"]
        for ns in kubectl.json("namespaces")["items"]
        if ns.get("status", {}).get("phase") == "Terminating"
    ]


@pytest.mark.parametrize("case", HOSTILE, ids=HOSTILE)
def test_a_hostile_spec_is_refused_or_answered_and_reaches_no_one_else(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str, case: str
) -> None:
    # The previous case's namespace is deleted without waiting; until its pods are gone their
    # GPUs are taken, and "good" would be planned around them and move (cheaper) once they
    # are free: a move this test would blame on the hostile spec.
    deadline = time.monotonic() + 120  # a namespace stuck for other reasons is not this test's
    while terminating_namespaces(kubectl) and time.monotonic() < deadline:
        time.sleep(1)
    kubectl.apply(llmservice("good", namespace))
    wait_for("good Ready", lambda: is_ready(kubectl, namespace, "good"))
    good_plan = kubectl.json("llmsvc", "good", "-n", namespace)["status"]["plan"]

    spec = llmservice("x", namespace)["spec"]
    HOSTILE[case](spec)
    outcome = refused_or_answered(kubectl, namespace, "hostile", spec)
    print(f"\n{case}: {outcome}")
    assert MUST_NAME.get(case, "") in outcome, outcome

    after = wait_for("good still Ready", lambda: is_ready(kubectl, namespace, "good"))
    assert after["status"]["plan"] == good_plan, "a hostile spec moved another service's plan"
