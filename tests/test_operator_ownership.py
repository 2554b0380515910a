"""Ownership by controller reference: gpumix overwrites and deletes only what the LLMService at
hand controls; another owner's object of the same name is a Conflict, an orphan is adopted."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from gpumix.operator import reconcile
from gpumix.operator.kube import Kube, KubeError
from gpumix.operator.manifests import SPEC_HASH_ANNOTATION


def owned_by(uid: str | None, name: str = "chat") -> list[dict[str, Any]]:
    if uid is None:
        return []
    return [{"apiVersion": "gpumix.io/v1alpha1", "kind": "LLMService", "name": name,
             "uid": uid, "controller": True}]  # fmt: skip


def service(name: str, owner_uid: str | None, spec_hash: str = "h1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "labels": {"app.kubernetes.io/managed-by": "gpumix", "gpumix.io/service": "chat"},
            "annotations": {SPEC_HASH_ANNOTATION: spec_hash},
            "ownerReferences": owned_by(owner_uid),
            "resourceVersion": "7",
        },
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 8000}]},
    }


class RecordingKube(Kube):
    def __init__(self, live: dict[str, Any] | None) -> None:
        super().__init__(client.ApiClient())
        self.live = live
        self.writes: list[str] = []

    def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.live

    def _create(self, kind: str, namespace: str, body: Any) -> None:
        self.writes.append("create")

    def _replace(self, kind: str, namespace: str, name: str, body: Any) -> None:
        self.writes.append("replace")


def test_an_object_another_llmservice_controls_is_a_conflict_and_left_alone() -> None:
    kube = RecordingKube(service("chat-l4-spot-tp1-bf16", owner_uid="uid-other", spec_hash="h0"))
    kube.live["metadata"]["ownerReferences"][0]["name"] = "chat-l4-spot-tp1-bf16"  # type: ignore[index]
    with pytest.raises(KubeError) as raised:
        kube.apply(service("chat-l4-spot-tp1-bf16", owner_uid="uid-chat"))
    assert raised.value.status == 409
    assert "Conflict: Service chat-l4-spot-tp1-bf16 exists and is controlled by LLMService " \
        "chat-l4-spot-tp1-bf16" in str(raised.value)  # fmt: skip
    assert kube.writes == []


def test_an_orphan_is_adopted_even_when_its_spec_hash_matches() -> None:
    kube = RecordingKube(service("chat", owner_uid=None))
    assert kube.apply(service("chat", owner_uid="uid-chat")) == "replaced"
    ours = RecordingKube(service("chat", owner_uid="uid-chat"))
    assert ours.apply(service("chat", owner_uid="uid-chat")) == "unchanged"
    assert ours.writes == []


def test_an_obsolete_child_that_this_service_does_not_control_is_never_deleted() -> None:
    users_own = reconcile.child_from_body(
        {**service("my-deployment", owner_uid=None), "kind": "Deployment"}, owner_uid="uid-chat"
    )
    ours = reconcile.child_from_body(
        {**service("chat-old", owner_uid="uid-chat"), "kind": "Deployment"}, owner_uid="uid-chat"
    )
    actions = reconcile.decide([], [users_own, ours], deadline_passed=False)
    assert [child.name for child in actions.delete] == ["chat-old"]
    assert not users_own.controlled and ours.controlled
