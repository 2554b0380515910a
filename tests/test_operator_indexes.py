"""The children index: what a planning pass reads instead of listing six kinds per service."""

from __future__ import annotations

from gpumix.operator.indexes import CHILDREN_INDEXES, child_entry, children_of


def deployment(name: str, service: str | None) -> dict:
    labels = {"app.kubernetes.io/managed-by": "gpumix"}
    if service is not None:
        labels["gpumix.io/service"] = service
    return {
        "apiVersion": "apps/v1",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "labels": labels,
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"replicas": 2},
        "status": {"readyReplicas": 1},
    }


def test_a_child_is_filed_under_its_service_with_its_kind_and_without_managed_fields() -> None:
    entry = child_entry("Deployment", deployment("chat-l4-spot-tp1-bf16", "chat"))
    assert list(entry) == [("team-a", "chat")]
    document = entry[("team-a", "chat")]
    assert document["kind"] == "Deployment"
    assert document["status"] == {"readyReplicas": 1}
    assert "managedFields" not in document["metadata"]


def test_an_object_without_the_service_label_is_not_indexed() -> None:
    assert child_entry("Deployment", deployment("stray", None)) == {}


def test_children_come_from_every_kind_and_only_from_their_service() -> None:
    ours = child_entry("Deployment", deployment("chat-a", "chat"))[("team-a", "chat")]
    theirs = child_entry("Deployment", deployment("rag-a", "rag"))[("team-a", "rag")]
    indices = {name: {} for name in CHILDREN_INDEXES.values()}
    indices[CHILDREN_INDEXES["Deployment"]] = {
        ("team-a", "chat"): [ours],
        ("team-a", "rag"): [theirs],
    }
    assert children_of(indices, "team-a", "chat") == [ours]


def test_without_the_children_indices_the_caller_must_list() -> None:
    assert children_of({}, "team-a", "chat") is None
