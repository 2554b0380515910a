"""kopf indices: the live state the planner reads, parsed once at the boundary.

Every index keeps all its values under the key ``None`` (one bucket per index), so readers
iterate ``index.get(None, ())``. An indexing function returns ``{}`` rather than ``None`` for an
object it does not want: kopf keeps a previous value when a function returns ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf

from gpumix.errors import InputError
from gpumix.operator import inventory
from gpumix.resources import GPUPool, LLMService, LLMServiceStatus, parse_resource
from gpumix.resources.gpupool import GPUPoolStatus

GROUP = "gpumix.io"
NODES_INDEX = "gpumix_nodes"
PODS_INDEX = "gpumix_gpu_pods"
SERVICES_INDEX = "gpumix_llmservices"
POOLS_INDEX = "gpumix_gpupools"
INDEX_NAMES = (NODES_INDEX, PODS_INDEX, SERVICES_INDEX, POOLS_INDEX)

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


def gpupool_status_document(status: GPUPoolStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)
