"""The router's objects: golden files, and the properties an operator of the cluster relies on
(least privilege, no outage while the router starts, make-before-break unaffected)."""

from __future__ import annotations

from typing import Any

import pytest

from gpumix.operator import reconcile
from gpumix.operator.manifests import build_deployment, build_service
from gpumix.operator.router_manifests import (
    RouterOptions,
    build_router_deployment,
    build_router_objects,
    build_router_pdb,
    build_router_role,
    build_router_role_binding,
    build_router_service_account,
    router_name,
    router_selector,
)
from gpumix.resources import LLMService
from test_manifests import H100_ENTRY, H100_ON_DEMAND, check_golden, make_service

OPTIONS = RouterOptions(image="ghcr.io/gpumix/gpumix:0.1.0")


def test_golden_router_objects() -> None:
    service = make_service()
    check_golden("router-deployment", build_router_deployment(service, OPTIONS))
    check_golden("router-pdb", build_router_pdb(service))
    check_golden("router-role", build_router_role(service))
    check_golden("router-rolebinding", build_router_role_binding(service))
    check_golden("router-serviceaccount", build_router_service_account(service))


def test_the_router_may_only_list_and_watch_pods_and_llmservices() -> None:
    rules = build_router_role(make_service())["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}  # fmt: skip
    assert granted == {
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("gpumix.io", "llmservices", "list"),
        ("gpumix.io", "llmservices", "watch"),
    }
    binding = build_router_role_binding(make_service())
    assert binding["roleRef"]["name"] == router_name("chat")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "chat-router", "namespace": "team-a"}
    ]


def test_the_router_runs_unprivileged_with_two_replicas_a_pdb_and_its_own_identity() -> None:
    service = make_service()
    deployment = build_router_deployment(service, OPTIONS)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == "chat-router"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["args"] == [
        "router", "--namespace", "team-a", "--service", "chat", "--port", "8000"
    ]  # fmt: skip
    assert "nvidia.com/gpu" not in container["resources"]["requests"]
    assert container["ports"][0]["name"] == "http"  # the entry Service's targetPort
    pdb = build_router_pdb(service)
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert (
        deployment["spec"]["template"]["metadata"]["labels"].items()
        >= router_selector("chat").items()
    )


def test_apply_order_puts_identity_and_rights_before_the_pods() -> None:
    kinds = [obj["kind"] for obj in build_router_objects(make_service(), OPTIONS)]
    assert kinds.index("ServiceAccount") < kinds.index("Deployment")
    assert kinds.index("RoleBinding") < kinds.index("Deployment")


def test_every_router_object_is_owned_by_the_llmservice() -> None:
    for obj in build_router_objects(make_service(), OPTIONS):
        owner = obj["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("LLMService", "chat", True)


def test_the_entry_service_selects_the_router_only_when_asked() -> None:
    service = make_service()
    assert build_service(service)["spec"]["selector"]["app.kubernetes.io/name"] == "vllm"
    routed = build_service(service, router_selector("chat"))
    assert routed["spec"]["selector"] == router_selector("chat")
    assert (
        routed["metadata"]["annotations"]["gpumix.io/spec-hash"]
        != (build_service(service)["metadata"]["annotations"]["gpumix.io/spec-hash"])
    )


@pytest.mark.parametrize("name", ["chat", "a" * 63])
def test_router_names_are_dns_labels(name: str) -> None:
    assert len(router_name(name)) <= 63 and router_name(name)[0].isalpha()


def _child(obj: dict[str, Any], ready: int) -> reconcile.Child:
    return reconcile.Child(
        kind=obj["kind"],
        namespace="team-a",
        name=obj["metadata"]["name"],
        spec_hash=obj["metadata"]["annotations"]["gpumix.io/spec-hash"],
        replicas=int(obj.get("spec", {}).get("replicas") or 0),
        ready_replicas=ready,
    )


def test_a_router_that_is_not_ready_does_not_hold_back_a_migration() -> None:
    service: LLMService = make_service()
    router = build_router_deployment(service, OPTIONS)
    new = build_deployment(service, H100_ENTRY, H100_ON_DEMAND)
    old = {**new, "metadata": {**new["metadata"], "name": "chat-old"}}
    actual = [_child(router, ready=0), _child(new, ready=1), _child(old, ready=1)]
    actions = reconcile.decide([router, new], actual, deadline_passed=False)
    assert actions.not_ready == ()
    assert [child.name for child in actions.delete] == ["chat-old"]
