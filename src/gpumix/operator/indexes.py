"""kopf indices: the live state the planner reads, parsed once at the boundary.

Every index keeps all its values under the key ``None`` (one bucket per index), so readers
iterate ``index.get(None, ())``. An indexing function returns ``{}`` rather than ``None`` for an
object it does not want: kopf keeps a previous value when a function returns ``None``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf

from gpumix.errors import InputError
from gpumix.operator import inventory
from gpumix.operator.manifests import LABEL_MANAGED_BY, LABEL_SERVICE, MANAGED_BY
from gpumix.resources import GPUPool, LLMService, LLMServiceStatus, parse_resource
from gpumix.resources.gpupool import GPUPoolStatus

GROUP = "gpumix.io"
NODES_INDEX = "gpumix_nodes"
PODS_INDEX = "gpumix_gpu_pods"
SERVICES_INDEX = "gpumix_llmservices"
POOLS_INDEX = "gpumix_gpupools"
# Namespace labels, for GPUPool namespaceSelectors: (name, labels).
NAMESPACES_INDEX = "gpumix_namespaces"
# The objects gpumix creates for each LLMService, by kind, keyed by (namespace, the
# gpumix.io/service label): a planning pass reads them here instead of listing six kinds per
# service (7000 LISTs a pass at 1000 services).
CHILDREN_INDEXES = {
    "ServiceAccount": "gpumix_child_serviceaccounts",
    "Role": "gpumix_child_roles",
    "RoleBinding": "gpumix_child_rolebindings",
    "Deployment": "gpumix_child_deployments",
    "PodDisruptionBudget": "gpumix_child_poddisruptionbudgets",
    "Service": "gpumix_child_services",
}
INDEX_NAMES = (
    NODES_INDEX,
    PODS_INDEX,
    SERVICES_INDEX,
    POOLS_INDEX,
    NAMESPACES_INDEX,
    *CHILDREN_INDEXES.values(),
)
OWNED = {LABEL_MANAGED_BY: MANAGED_BY}

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceRecord:
    """One LLMService: parsed, or the reason it could not be."""

    namespace: str
    name: str
    uid: str | None
    generation: int | None
    resource: LLMService | None
    problem: str | None
    status: LLMServiceStatus | None
    # The status as stored, to write only when it differs.
    raw_status: Mapping[str, Any]


@dataclass(frozen=True)
class PoolRecord:
    name: str
    resource: GPUPool | None
    problem: str | None
    raw_status: Mapping[str, Any]


def _parse_status(model: type[T], raw: Mapping[str, Any]) -> T | None:
    try:
        return model.model_validate(raw)  # type: ignore[attr-defined, no-any-return]
    except ValueError:
        return None  # a status we cannot read is rewritten from scratch


def service_record(body: Mapping[str, Any]) -> ServiceRecord:
    metadata = body.get("metadata") or {}
    raw_status = dict(body.get("status") or {})
    document = {key: value for key, value in body.items() if key != "status"}
    resource: LLMService | None = None
    problem: str | None = None
    try:
        parsed = parse_resource(document)
        assert isinstance(parsed, LLMService)
        resource = parsed
    except InputError as error:
        problem = error.one_line()
    return ServiceRecord(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=metadata.get("uid"),
        generation=metadata.get("generation"),
        resource=resource,
        problem=problem,
        status=_parse_status(LLMServiceStatus, raw_status),
        raw_status=raw_status,
    )


def pool_record(body: Mapping[str, Any]) -> PoolRecord:
    metadata = body.get("metadata") or {}
    document = {key: value for key, value in body.items() if key != "status"}
    resource: GPUPool | None = None
    problem: str | None = None
    try:
        parsed = parse_resource(document)
        assert isinstance(parsed, GPUPool)
        resource = parsed
    except InputError as error:
        problem = error.one_line()
    return PoolRecord(
        name=str(metadata.get("name", "")),
        resource=resource,
        problem=problem,
        raw_status=dict(body.get("status") or {}),
    )


def is_gpu_node(record: inventory.NodeRecord) -> bool:
    return record.allocatable_gpus > 0 or any(
        label in record.labels for label in inventory.GPU_LABELS
    )


def values(index: Mapping[Any, Iterable[T]] | None) -> list[T]:
    """All values of a one-bucket index (a snapshot: the index keeps changing)."""
    if index is None:
        return []
    return list(index.get(None, ()))


ChildKey = tuple[str, str]  # (namespace, gpumix.io/service label value)


def child_entry(kind: str, body: Mapping[str, Any]) -> dict[ChildKey, dict[str, Any]]:
    """One child object for its service's bucket, as a plain copy without managedFields (the
    bulk of a stored object, and nothing gpumix reads)."""
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    service = (metadata.get("labels") or {}).get(LABEL_SERVICE)
    if not service:
        return {}
    document = copy.deepcopy({k: v for k, v in body.items() if k != "metadata"})
    document.update(kind=kind, metadata=copy.deepcopy(metadata))
    return {(str(metadata.get("namespace", "")), str(service)): document}


def children_of(
    indices: Mapping[str, Any], namespace: str, service_label: str
) -> list[dict[str, Any]] | None:
    """Every indexed child of one service, or None when the children indices are not there
    (a planner built without them lists the children instead)."""
    found: list[dict[str, Any]] = []
    for index_name in CHILDREN_INDEXES.values():
        index = indices.get(index_name)
        if index is None:
            return None
        found.extend(index.get((namespace, service_label), ()))
    return found


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the indices; their names are the kwargs kopf passes to every handler."""

    @kopf.index("", "v1", "nodes", id=NODES_INDEX, registry=registry)
    def index_nodes(body: kopf.Body, **_: Any) -> dict[None, inventory.NodeRecord]:
        record = inventory.node_record(body)
        return {None: record} if is_gpu_node(record) else {}

    @kopf.index("", "v1", "pods", id=PODS_INDEX, registry=registry)
    def index_gpu_pods(body: kopf.Body, **_: Any) -> dict[None, inventory.PodRecord]:
        record = inventory.pod_record(body)
        return {None: record} if record is not None else {}

    @kopf.index(GROUP, "v1alpha1", "llmservices", id=SERVICES_INDEX, registry=registry)
    def index_llmservices(body: kopf.Body, **_: Any) -> dict[None, ServiceRecord]:
        return {None: service_record(body)}

    @kopf.index(GROUP, "v1alpha1", "gpupools", id=POOLS_INDEX, registry=registry)
    def index_gpupools(body: kopf.Body, **_: Any) -> dict[None, PoolRecord]:
        return {None: pool_record(body)}

    # Label changes take effect at the next planning pass (no wake-up: every namespace event
    # of a large cluster would cost a pass).
    @kopf.index("", "v1", "namespaces", id=NAMESPACES_INDEX, registry=registry)
    def index_namespaces(
        name: str, labels: Mapping[str, str], **_: Any
    ) -> dict[None, tuple[str, dict[str, str]]]:
        return {None: (name, dict(labels))}

    # One decorator per kind, spelled out: the chart's RBAC test reads the watched resources
    # from these lines.
    @kopf.index(
        "",
        "v1",
        "serviceaccounts",
        id=CHILDREN_INDEXES["ServiceAccount"],
        labels=OWNED,
        registry=registry,
    )
    def index_child_serviceaccounts(body: kopf.Body, **_: Any) -> dict[ChildKey, Any]:
        return child_entry("ServiceAccount", body)

    @kopf.index(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        id=CHILDREN_INDEXES["Role"],
        labels=OWNED,
        registry=registry,
    )
    def index_child_roles(body: kopf.Body, **_: Any) -> dict[ChildKey, Any]:
        return child_entry("Role", body)

    @kopf.index(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        id=CHILDREN_INDEXES["RoleBinding"],
        labels=OWNED,
        registry=registry,
    )
    def index_child_rolebindings(body: kopf.Body, **_: Any) -> dict[ChildKey, Any]:
        return child_entry("RoleBinding", body)

    @kopf.index(
        "apps",
        "v1",
        "deployments",
        id=CHILDREN_INDEXES["Deployment"],
        labels=OWNED,
        registry=registry,
    )
    def index_child_deployments(body: kopf.Body, **_: Any) -> dict[ChildKey, Any]:
        return child_entry("Deployment", body)

    @kopf.index(
        "policy",
        "v1",
        "poddisruptionbudgets",
        id=CHILDREN_INDEXES["PodDisruptionBudget"],
        labels=OWNED,
        registry=registry,
    )
    def index_child_poddisruptionbudgets(body: kopf.Body, **_: Any) -> dict[ChildKey, Any]:
        return child_entry("PodDisruptionBudget", body)

    @kopf.index(
        "", "v1", "services", id=CHILDREN_INDEXES["Service"], labels=OWNED, registry=registry
    )
    def index_child_services(body: kopf.Body, **_: Any) -> dict[ChildKey, Any]:
        return child_entry("Service", body)


def gpupool_status_document(status: GPUPoolStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)
