"""The GPU inventory: which pools exist, how many GPUs each has and how many the planner may use.

Pure: raw Node and Pod dicts are parsed once into small frozen records (:func:`node_record`,
:func:`pod_record`; the kopf indices store those), and :func:`build_inventory` turns records plus
GPUPool objects into :class:`PoolInventory` values. No Kubernetes client, no kopf. Which labels
discovery reads and which default prices apply come in as :class:`InventorySettings` (from the
operator's configuration file); its defaults are the built-in label keys and catalogue prices.

Membership: a GPUPool holds every node its ``nodeSelector`` matches; a discovered pool holds the
nodes whose own labels identify it (:func:`discovered_identity`), so no node counts twice, and
its pods avoid the capacity-type labels that would identify another pool
(:attr:`PoolDefinition.excluded_label_keys`).

Availability rules (what the planner may place on a pool now):

- a node is usable for a pool when it is Ready, not cordoned, and every ``NoSchedule`` and
  ``NoExecute`` taint on it is tolerated by the tolerations gpumix gives the pool's pods (the
  ``nvidia.com/gpu`` toleration plus the pool's ``spec.tolerations``); ``PreferNoSchedule`` never
  blocks. A node being drained (``karpenter.sh/disrupted:NoSchedule``) is therefore not usable;
- its free GPUs are its allocatable ``nvidia.com/gpu`` minus what running pods that gpumix does
  *not* manage request there; GPUs held by gpumix's own pods count as free, because the plan
  being computed replaces the plan those pods belong to;
- with ``maxGPUs`` (an autoscaler ceiling) the pool may grow: available =
  max(0, maxGPUs − GPUs on existing nodes) + free GPUs on usable nodes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpumix import catalog
from gpumix.catalog.gpus import (
    DEFAULT_GPU_TYPE_LABELS,
    KARPENTER_GPU_MEMORY_LABEL,
    KARPENTER_GPU_NAME_LABEL,
)
from gpumix.errors import InputError
from gpumix.operator.manifests import GPU_TOLERATION, LABEL_DEPLOYMENT
from gpumix.resources import GPUPool
from gpumix.resources.selectors import LabelSelector
from gpumix.solver import Pool

GPU_RESOURCE = "nvidia.com/gpu"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "gpumix"

# Labels that name the GPU model, in the order we trust them (GFD reads the hardware).
GPU_LABELS = DEFAULT_GPU_TYPE_LABELS
KARPENTER_CAPACITY_LABEL = "karpenter.sh/capacity-type"
GKE_SPOT_LABEL = "cloud.google.com/gke-spot"
EKS_CAPACITY_LABEL = "eks.amazonaws.com/capacityType"
CAPACITY_LABELS = (KARPENTER_CAPACITY_LABEL, GKE_SPOT_LABEL, EKS_CAPACITY_LABEL)

ON_DEMAND = "on-demand"
SPOT = "spot"
RESERVED = "reserved"


@dataclass(frozen=True)
class InventorySettings:
    """What the operator's configuration file changes about the inventory.

    ``prices`` maps (catalogue GPU type, capacity type) to USD per GPU-hour; pairs not in it
    fall back to the catalogue. Label keys are read in order, most trusted first.
    """

    gpu_type_labels: tuple[str, ...] = GPU_LABELS
    capacity_type_labels: tuple[str, ...] = CAPACITY_LABELS
    prices: Mapping[tuple[str, str], float] = field(default_factory=dict)


DEFAULT_SETTINGS = InventorySettings()

TERMINATED_POD_PHASES = frozenset({"Succeeded", "Failed"})


# ---------------------------------------------------------------------------------------------
# Records parsed from Node and Pod objects


# Taint effects that keep a pod without a matching toleration off a node (the scheduler's
# TaintToleration filter); PreferNoSchedule only scores.
BLOCKING_TAINT_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class NodeRecord:
    """What the inventory needs from one Node."""

    name: str
    labels: Mapping[str, str]
    allocatable_gpus: int
    ready: bool
    unschedulable: bool
    taints: tuple[Taint, ...] = ()


def tolerates(toleration: Mapping[str, Any], taint: Taint) -> bool:
    """Kubernetes' ``Toleration.ToleratesTaint``: effect, key, then operator and value.

    An empty effect matches every effect; an empty key with ``Exists`` matches every taint.
    ``tolerationSeconds`` is ignored, as the scheduler ignores it when placing a pod.
    """
    effect = toleration.get("effect") or ""
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key") or ""
    if key and key != taint.key:
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == taint.value
    return False


def node_usable(node: NodeRecord, tolerations: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the scheduler may place a new pod with ``tolerations`` on ``node`` now."""
    if not node.ready or node.unschedulable:
        return False
    tolerations = tuple(tolerations)
    return all(
        any(tolerates(toleration, taint) for toleration in tolerations)
        for taint in node.taints
        if taint.effect in BLOCKING_TAINT_EFFECTS
    )


@dataclass(frozen=True)
class PodRecord:
    """A non-terminated pod that requests GPUs."""

    namespace: str
    name: str
    node_name: str | None
    gpus: int
    managed_by_gpumix: bool
    # gpumix's pods: the Deployment they belong to (the gpumix.io/deployment label).
    deployment: str | None = None
    # Why the scheduler cannot place the pod (its PodScheduled=False message), while Pending.
    unschedulable: str | None = None
    # Why a container cannot start (ImagePullBackOff, CrashLoopBackOff, ...), with the message.
    container_problem: str | None = None


def parse_quantity_count(value: Any) -> int:
    """A count-like quantity ("8", 8, "8.0") as an int; anything unparsable counts as 0."""
    try:
        return max(0, math.floor(float(str(value))))
    except (TypeError, ValueError):
        return 0


def node_record(body: Mapping[str, Any]) -> NodeRecord:
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in conditions
    )
    return NodeRecord(
        name=str(metadata.get("name", "")),
        labels=dict(metadata.get("labels") or {}),
        allocatable_gpus=parse_quantity_count((status.get("allocatable") or {}).get(GPU_RESOURCE)),
        ready=ready,
        unschedulable=bool(spec.get("unschedulable", False)),
        taints=tuple(
            Taint(
                key=str(taint.get("key") or ""),
                value=str(taint.get("value") or ""),
                effect=str(taint.get("effect") or ""),
            )
            for taint in spec.get("taints") or []
            if isinstance(taint, Mapping)
        ),
    )


def pod_gpu_request(pod_spec: Mapping[str, Any]) -> int:
    """GPUs a pod holds: the sum over its containers, or its largest init container if more."""

    def container_gpus(container: Mapping[str, Any]) -> int:
        resources = container.get("resources") or {}
        # Extended resources must have limits == requests; either may be written alone.
        requests = (resources.get("requests") or {}).get(GPU_RESOURCE)
        limits = (resources.get("limits") or {}).get(GPU_RESOURCE)
        return parse_quantity_count(requests if requests is not None else limits)

    running = sum(container_gpus(c) for c in pod_spec.get("containers") or [])
    init = max((container_gpus(c) for c in pod_spec.get("initContainers") or []), default=0)
    return max(running, init)


def pod_record(body: Mapping[str, Any]) -> PodRecord | None:
    """The pod's GPU claim, or None when it claims no GPUs or has terminated."""
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    phase = (body.get("status") or {}).get("phase")
    if phase in TERMINATED_POD_PHASES:
        return None
    gpus = pod_gpu_request(spec)
    if gpus == 0:
        return None
    labels = metadata.get("labels") or {}
    managed = labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
    return PodRecord(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        node_name=spec.get("nodeName") or None,
        gpus=gpus,
        managed_by_gpumix=managed,
        deployment=labels.get(LABEL_DEPLOYMENT) if managed else None,
        unschedulable=_unschedulable_message(body),
        container_problem=_container_problem(body),
    )


# Container states that do not fix themselves: the kubelet retries them with backoff, forever.
STUCK_CONTAINER_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


def _container_problem(body: Mapping[str, Any]) -> str | None:
    status = body.get("status") or {}
    for container in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_CONTAINER_REASONS:
            message = waiting.get("message")
            return f"{waiting['reason']}: {message}" if message else str(waiting["reason"])
    return None


def _unschedulable_message(body: Mapping[str, Any]) -> str | None:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("message") or condition.get("reason") or "not scheduled")
    return None


# ---------------------------------------------------------------------------------------------
# Pools


@dataclass(frozen=True)
class PoolDefinition:
    """A pool as configured (GPUPool) or discovered (node labels), before counting nodes."""

    name: str
    gpu_type: str
    capacity_type: str
    node_selector: Mapping[str, str]
    price_per_gpu_hour: float | None
    max_gpus: int | None = None
    gpus_per_node: int | None = None
    tolerations: tuple[Mapping[str, Any], ...] = ()
    discovered: bool = False
    # Label keys the pool's nodes must not carry: a discovered pool of nodes without a
    # capacity-type label must keep its pods off the labelled (e.g. spot) nodes of the same GPU
    # type, which its node selector alone also matches.
    excluded_label_keys: tuple[str, ...] = ()
    # The namespaces whose services may use the pool (GPUPool spec.namespaceSelector); None: all.
    namespace_selector: LabelSelector | None = None

    @property
    def pod_tolerations(self) -> tuple[Mapping[str, Any], ...]:
        """The tolerations the pool's pods carry (what the manifest builder gives them)."""
        return (GPU_TOLERATION, *self.tolerations)

    def selects(self, node: NodeRecord) -> bool:
        """Whether the pool's node selector matches ``node`` (GPUPool semantics)."""
        return all(node.labels.get(key) == value for key, value in self.node_selector.items())

    def contains(self, node: NodeRecord, settings: InventorySettings = DEFAULT_SETTINGS) -> bool:
        """Whether ``node`` belongs to the pool and counts towards its GPUs.

        A discovered pool holds exactly the nodes whose own discovered identity is the pool's:
        its selector alone matches more (``{gpu.product: X}`` also matches spot nodes of X), and
        a node must count in one discovered pool only.
        """
        if not self.discovered:
            return self.selects(node)
        identity = discovered_identity(node, settings)
        return identity is not None and identity == (
            self.gpu_type,
            self.capacity_type,
            dict(self.node_selector),
        )


@dataclass(frozen=True)
class PoolInventory:
    """A pool with its live counts; what the planner sees and what GPUPool status shows."""

    definition: PoolDefinition
    nodes: int
    ready_nodes: int
    gpus: int
    allocated_gpus: int
    available_gpus: int
    gpus_per_node: int
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def plannable(self) -> bool:
        return self.problem is None and self.definition.price_per_gpu_hour is not None

    def solver_pool(self) -> Pool:
        if self.definition.price_per_gpu_hour is None:
            raise ValueError(f"pool {self.name} has no price")
        return Pool(
            name=self.name,
            gpu_type=self.definition.gpu_type,
            capacity_type=self.definition.capacity_type,
            price_per_gpu_hour=self.definition.price_per_gpu_hour,
            available_gpus=self.available_gpus,
            gpus_per_node=self.gpus_per_node,
        )


def _capacity_from_value(key: str, value: str) -> str:
    """What one capacity label's value says, in the dialect of the provider that sets the key."""
    normalised = value.strip().lower()
    if key == GKE_SPOT_LABEL:
        return SPOT if normalised == "true" else ON_DEMAND
    if key == EKS_CAPACITY_LABEL:
        return SPOT if normalised == "spot" else ON_DEMAND
    # Karpenter's values (spot, on-demand, reserved, capacity-block) and any other configured
    # key: a capacity-type name, or a boolean "is spot" label like GKE's (e.g.
    # cloud.google.com/gke-preemptible=true).
    if normalised in ("spot", "preemptible", "true"):
        return SPOT
    return RESERVED if normalised in ("reserved", "capacity-block") else ON_DEMAND


def capacity_type_from_labels(
    labels: Mapping[str, str], keys: Sequence[str] = CAPACITY_LABELS
) -> str | None:
    """The capacity type the first present label of ``keys`` states, or None when none says."""
    for key in keys:
        if key in labels:
            return _capacity_from_value(key, labels[key])
    return None


def discovered_identity(
    node: NodeRecord, settings: InventorySettings = DEFAULT_SETTINGS
) -> tuple[str, str, dict[str, str]] | None:
    """(GPU type, capacity type, node selector) of a GPU node, from its labels alone.

    The selector holds exactly the labels that identified the pool, so pods land on nodes of
    this GPU type and capacity type and nowhere else.
    """
    gpu_type = catalog.gpu_type_from_labels(node.labels, settings.gpu_type_labels)
    if gpu_type is None:
        return None
    selector: dict[str, str] = {}
    for key in settings.gpu_type_labels:
        if key in node.labels and catalog.gpu_type_from_label(node.labels[key]) is not None:
            selector[key] = node.labels[key]
            break
    if KARPENTER_GPU_NAME_LABEL in selector and KARPENTER_GPU_MEMORY_LABEL in node.labels:
        # Karpenter names both A100 sizes "a100"; the memory label tells them apart.
        selector[KARPENTER_GPU_MEMORY_LABEL] = node.labels[KARPENTER_GPU_MEMORY_LABEL]
    capacity_type = (
        capacity_type_from_labels(node.labels, settings.capacity_type_labels) or ON_DEMAND
    )
    for key in settings.capacity_type_labels:
        if key in node.labels:
            selector[key] = node.labels[key]
            break
    return gpu_type, capacity_type, selector


def excluded_capacity_keys(
    selector: Mapping[str, str], settings: InventorySettings = DEFAULT_SETTINGS
) -> tuple[str, ...]:
    """Capacity-type label keys a discovered pool's nodes must not carry.

    A node's capacity type comes from the first configured key it carries, so a pool identified
    by a later key (or by none: on-demand by default) must avoid nodes with an earlier one.
    """
    excluded: list[str] = []
    for key in settings.capacity_type_labels:
        if key in selector:
            break
        excluded.append(key)
    return tuple(excluded)


def discover_pools(
    nodes: Iterable[NodeRecord], settings: InventorySettings = DEFAULT_SETTINGS
) -> list[PoolDefinition]:
    """Pools from node labels (used when no GPUPool exists), named ``<gpu-type>-<capacity>``."""
    identities: dict[tuple[str, ...], tuple[str, str, dict[str, str]]] = {}
    for node in nodes:
        identity = discovered_identity(node, settings)
        if identity is None:
            continue
        gpu_type, capacity_type, selector = identity
        key = (gpu_type, capacity_type, *sorted(f"{k}={v}" for k, v in selector.items()))
        identities[key] = identity
    pools: list[PoolDefinition] = []
    used_names: set[str] = set()
    for key in sorted(identities):
        gpu_type, capacity_type, selector = identities[key]
        base = f"{gpu_type.lower()}-{capacity_type}"
        name = base
        suffix = 2
        # Two label values for one GPU type (e.g. two GFD product strings) make two pools.
        while name in used_names:
            name = f"{base}-{suffix}"
            suffix += 1
        used_names.add(name)
        pools.append(
            PoolDefinition(
                name=name,
                gpu_type=gpu_type,
                capacity_type=capacity_type,
                node_selector=selector,
                price_per_gpu_hour=default_price(gpu_type, capacity_type, settings),
                discovered=True,
                excluded_label_keys=excluded_capacity_keys(selector, settings),
            )
        )
    return pools


def catalogue_price(gpu_type: str, capacity_type: str) -> float | None:
    try:
        return catalog.default_price(gpu_type, capacity_type)
    except InputError:
        return None


def default_price(
    gpu_type: str, capacity_type: str, settings: InventorySettings = DEFAULT_SETTINGS
) -> float | None:
    """The configured default price (``pricing.defaults``), else the catalogue's, else None."""
    try:
        # GPUPools may spell a catalogue type in any case or by a label value.
        canonical = catalog.get_gpu(gpu_type).name
    except InputError:
        return None  # a custom type: only spec.pricePerGPUHour can price it
    configured = settings.prices.get((canonical, capacity_type))
    if configured is not None:
        return configured
    return catalogue_price(canonical, capacity_type)


def pool_definition(
    pool: GPUPool, settings: InventorySettings = DEFAULT_SETTINGS
) -> PoolDefinition:
    spec = pool.spec
    capacity_type = str(spec.capacity_type.value)
    price = (
        float(spec.price_per_gpu_hour)
        if spec.price_per_gpu_hour is not None
        else default_price(spec.gpu_type, capacity_type, settings)
    )
    return PoolDefinition(
        name=pool.metadata.name,
        gpu_type=spec.gpu_type,
        capacity_type=capacity_type,
        node_selector=dict(spec.node_selector),
        price_per_gpu_hour=price,
        max_gpus=spec.max_gpus,
        gpus_per_node=spec.gpus_per_node,
        tolerations=tuple(
            toleration.model_dump(by_alias=True, exclude_none=True)
            for toleration in spec.tolerations
        ),
        namespace_selector=spec.namespace_selector,
    )


def _catalogue_gpus_per_node(gpu_type: str) -> int | None:
    try:
        return catalog.get_gpu(gpu_type).gpus_per_node
    except InputError:
        return None


def count_pool(
    definition: PoolDefinition,
    nodes: Sequence[NodeRecord],
    pods: Sequence[PodRecord],
    settings: InventorySettings = DEFAULT_SETTINGS,
) -> PoolInventory:
    members = [node for node in nodes if definition.contains(node, settings)]
    member_names = {node.name for node in members}
    foreign_by_node: dict[str, int] = {}
    allocated = 0
    for pod in pods:
        if pod.node_name is None or pod.node_name not in member_names:
            continue
        allocated += pod.gpus
        if not pod.managed_by_gpumix:
            foreign_by_node[pod.node_name] = foreign_by_node.get(pod.node_name, 0) + pod.gpus
    gpus = sum(node.allocatable_gpus for node in members)
    tolerations = definition.pod_tolerations
    free = sum(
        max(0, node.allocatable_gpus - foreign_by_node.get(node.name, 0))
        for node in members
        if node_usable(node, tolerations)
    )
    if definition.max_gpus is not None:
        available = max(0, definition.max_gpus - gpus) + free
    else:
        available = free
    gpus_per_node = (
        definition.gpus_per_node
        or max((node.allocatable_gpus for node in members), default=0)
        or _catalogue_gpus_per_node(definition.gpu_type)
        or 1
    )
    problem = None
    if definition.price_per_gpu_hour is None:
        problem = (
            f"no price for GPU type {definition.gpu_type} ({definition.capacity_type}) in the "
            "catalogue: set spec.pricePerGPUHour"
        )
    return PoolInventory(
        definition=definition,
        nodes=len(members),
        ready_nodes=sum(1 for node in members if node.ready),
        gpus=gpus,
        allocated_gpus=allocated,
        available_gpus=available,
        gpus_per_node=gpus_per_node,
        problem=problem,
    )


def build_inventory(
    gpupools: Sequence[GPUPool],
    nodes: Sequence[NodeRecord],
    pods: Sequence[PodRecord],
    settings: InventorySettings = DEFAULT_SETTINGS,
) -> tuple[PoolInventory, ...]:
    """Every pool with its counts: the GPUPool objects, or pools discovered when there are none."""
    if gpupools:
        definitions = [pool_definition(pool, settings) for pool in gpupools]
    else:
        definitions = discover_pools(nodes, settings)
    inventories = (count_pool(definition, nodes, pods, settings) for definition in definitions)
    return tuple(sorted(inventories, key=lambda inventory: inventory.name))
