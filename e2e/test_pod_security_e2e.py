"""A namespace that enforces the `restricted` Pod Security Standard admits gpumix's pods, on the
real API server's PodSecurity admission plugin (on by default in kube-apiserver).

kwok does not run containers, so what is proved here is admission, the Deployment's contents,
and that what the API server stores is not mistaken for a hand edit; that vLLM itself starts as
user 65532 is argued in the README, not tested.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import yaml

from support import (
    Kubectl,
    OperatorProcess,
    is_ready,
    llmservice,
    managed_deployments,
    vllm_selector,
    wait_for,
)

RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"
# Two planner intervals of the e2e operator (--planner-interval 20): every pass compares the
# live Deployments with the built ones.
TWO_PASSES_SECONDS = 45


def pod_from(namespace: str, name: str, pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": pod_spec,
    }


def admission(kubectl: Kubectl, pod: dict[str, Any]) -> str:
    """What the API server answers a pod's creation (a dry run: admission runs, nothing is
    stored)."""
    return kubectl.run(
        "create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(pod), check=False
    )


def without_security_contexts(pod_spec: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(pod_spec)
    stripped.pop("securityContext", None)
    for container in stripped["containers"]:
        container.pop("securityContext", None)
    return stripped


def all_pods_ready(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]] | None:
    pods = kubectl.json("pods", "-n", namespace)["items"]
    ready = [
        pod
        for pod in pods
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
    ]
    return pods if pods and len(ready) == len(pods) else None


def test_a_restricted_namespace_admits_a_service_with_a_secret_and_a_model_cache(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str
) -> None:
    kubectl.run("label", "namespace", namespace, RESTRICTED, "--overwrite")
    plain = pod_from(namespace, "plain", {"containers": [{"name": "c", "image": "busybox"}]})

    # The policy is really enforced here (the label reaches admission within moments).
    def refused() -> str | None:
        answer = admission(kubectl, plain)
        return answer if "violates PodSecurity" in answer else None

    refusal = wait_for("a plain pod to be refused", refused, timeout=30)
    assert '"restricted' in refusal, refusal

    kubectl.run(
        "create", "secret", "generic", "hf-token", "-n", namespace, "--from-literal=token=hf_e2e"
    )
    serving = {
        "env": [
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
            }
        ],
        # not the canonical form: the API server stores 1Gi, which must not read as an edit
        "modelCache": {"emptyDir": {"sizeLimit": "1024Mi"}},
    }
    kubectl.apply(llmservice("guarded", namespace, serving=serving))
    wait_for("guarded Ready", lambda: is_ready(kubectl, namespace, "guarded"))
    # Every pod gpumix made for it, vLLM and router, was admitted and is Ready.
    pods = wait_for("every pod Ready", lambda: all_pods_ready(kubectl, namespace))
    names = {pod["metadata"]["labels"].get("app.kubernetes.io/name") for pod in pods}
    assert names == {"vllm", "gpumix-router"}, names

    [deployment, *_] = managed_deployments(kubectl, namespace, "guarded")
    pod_spec = deployment["spec"]["template"]["spec"]
    env = {item["name"]: item for item in pod_spec["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert "value" not in env["HF_TOKEN"]
    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod_spec["containers"][0]["volumeMounts"]}
    cache = volumes[mounts[env["HF_HOME"]["value"]]]
    assert cache["emptyDir"]["sizeLimit"] == "1Gi", cache  # canonicalised by the server

    # It is the security context that gets these pods in: without it, the same pod is refused.
    admitted = admission(kubectl, pod_from(namespace, "copy", pod_spec))
    assert "created (server dry run)" in admitted, admitted
    stripped = admission(kubectl, pod_from(namespace, "copy", without_security_contexts(pod_spec)))
    assert "violates PodSecurity" in stripped, stripped

    # What the API server stored (defaults, the canonical size, no empty values) is not taken
    # for a hand edit: passes go by without rewriting the Deployments.
    time.sleep(TWO_PASSES_SECONDS)
    events = kubectl.run(
        "get", "events", "-n", namespace, "--field-selector", "reason=DriftReverted"
    )
    assert "DriftReverted" not in events, events
    assert f"restoring Deployment {namespace}/" not in operator.log_path.read_text(), (
        operator.log_tail()
    )
    assert kubectl.json("pods", "-n", namespace, "-l", vllm_selector("guarded"))["items"]
    kubectl.run("delete", "llmsvc", "guarded", "-n", namespace)
