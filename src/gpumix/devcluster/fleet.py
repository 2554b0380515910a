"""Simulated-fleet file -> Node objects that look like real GPU nodes to the scheduler and gpumix.

A fleet file lists node pools::

    nodePools:
      - name: h100-on-demand
        gpuType: H100-80GB          # catalogue name
        capacityType: on-demand     # on-demand | spot | reserved
        nodes: 1
        gpusPerNode: 8
        instanceType: p5.48xlarge   # optional
        cpu: "192"                  # optional, default 16 per GPU
        memory: 2048Gi              # optional, default 128Gi per GPU
        labels: {}                  # optional, added to every node
        taints: []                  # optional, added after nvidia.com/gpu=present:NoSchedule

The nodes carry the labels GPU feature discovery, Karpenter and the cloud put on real GPU nodes,
so gpumix's pool discovery cannot tell them apart from real ones; kwok manages them (heartbeats,
pod readiness) because of the ``kwok.x-k8s.io/node: fake`` annotation.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpumix.catalog import get_gpu
from gpumix.errors import InputError

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
POOL_LABEL = "gpumix.io/sim-pool"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
GPU_RESOURCE = "nvidia.com/gpu"
# The NVIDIA GPU operator taints GPU nodes so that only pods asking for GPUs land there.
GPU_TAINT: dict[str, str] = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}

CAPACITY_TYPES = ("on-demand", "spot", "reserved")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
PODS_PER_NODE = 110
DEFAULT_CPU_PER_GPU = 16
DEFAULT_MEMORY_GIB_PER_GPU = 128

# Pod IPs must be addresses of this machine: the network rule allows traffic to 127.0.0.0/8 only,
# and the pod runner binds each pod's servers to its pod IP. Every node gets a /24 of this
# range as its spec.podCIDR, and kwok hands out pod IPs from the node's podCIDR.
POD_NETWORK = ipaddress.IPv4Network("127.64.0.0/10")
NODE_POD_PREFIX = 24

# RFC 1123 label: node names are built from the pool name, so it must be one.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P)?$")


@dataclass(frozen=True)
class NodePool:
    """One simulated pool: identical nodes of one GPU type and capacity type."""

    name: str
    gpu_type: str
    gpu_product: str
    capacity_type: str
    nodes: int
    gpus_per_node: int
    instance_type: str
    cpu: str
    memory: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class Fleet:
    pools: tuple[NodePool, ...]

    def pool(self, name: str) -> NodePool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        known = ", ".join(pool.name for pool in self.pools)
        raise InputError(f"no node pool named {name!r} (known: {known})")


def gfd_product(gpu_type: str) -> str:
    """The ``nvidia.com/gpu.product`` value GPU feature discovery reports for a GPU type."""
    return get_gpu(gpu_type).gfd_products[0]


def _require(entry: dict[str, Any], key: str, kind: type, source: str, where: str) -> Any:
    if key not in entry:
        raise InputError("is required", source=source, field=f"{where}.{key}")
    value = entry[key]
    # bool is an int subclass; `nodes: true` is a typo, not a count.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(
            f"must be of type {kind.__name__}, got {value!r}", source=source, field=f"{where}.{key}"
        )
    return value


def _quantity(entry: dict[str, Any], key: str, default: str, source: str, where: str) -> str:
    value = str(entry.get(key, default))
    if not _QUANTITY.match(value):
        raise InputError(
            f"must be a Kubernetes quantity such as 16 or 64Gi, got {value!r}",
            source=source,
            field=f"{where}.{key}",
        )
    return value


def _string_map(entry: dict[str, Any], key: str, source: str, where: str) -> dict[str, str]:
    value = entry.get(key) or {}
    if not isinstance(value, dict):
        raise InputError("must be a mapping", source=source, field=f"{where}.{key}")
    return {str(k): str(v) for k, v in value.items()}


def _taints(entry: dict[str, Any], source: str, where: str) -> tuple[dict[str, str], ...]:
    value = entry.get("taints") or []
    if not isinstance(value, list):
        raise InputError("must be a list", source=source, field=f"{where}.taints")
    taints = []
    for index, taint in enumerate(value):
        taint_where = f"{where}.taints[{index}]"
        if not isinstance(taint, dict) or "key" not in taint:
            raise InputError("must be a mapping with a key", source=source, field=taint_where)
        effect = taint.get("effect", "NoSchedule")
        if effect not in TAINT_EFFECTS:
            raise InputError(
                f"must be one of {', '.join(TAINT_EFFECTS)}, got {effect!r}",
                source=source,
                field=f"{taint_where}.effect",
            )
        rendered = {"key": str(taint["key"]), "effect": effect}
        if "value" in taint:
            rendered["value"] = str(taint["value"])
        taints.append(rendered)
    return tuple(taints)


def parse_fleet(document: Any, source: str) -> Fleet:
    """Validate a parsed fleet document; errors name the file and the field."""
    if not isinstance(document, dict) or "nodePools" not in document:
        raise InputError(
            "must be a mapping with a nodePools list", source=source, field="nodePools"
        )
    entries = document["nodePools"]
    if not isinstance(entries, list) or not entries:
        raise InputError("must be a non-empty list", source=source, field="nodePools")
    pools: list[NodePool] = []
    for index, entry in enumerate(entries):
        where = f"nodePools[{index}]"
        if not isinstance(entry, dict):
            raise InputError("must be a mapping", source=source, field=where)
        name = _require(entry, "name", str, source, where)
        if not _DNS_LABEL.match(name):
            raise InputError(
                f"must be lower-case letters, digits and '-' (at most 50), got {name!r}",
                source=source,
                field=f"{where}.name",
            )
        if any(pool.name == name for pool in pools):
            raise InputError(f"duplicate pool name {name!r}", source=source, field=f"{where}.name")
        gpu_type = _require(entry, "gpuType", str, source, where)
        try:
            product = gfd_product(gpu_type)
        except InputError as error:
            raise InputError(error.detail, source=source, field=f"{where}.gpuType") from None
        capacity_type = _require(entry, "capacityType", str, source, where)
        if capacity_type not in CAPACITY_TYPES:
            raise InputError(
                f"must be one of {', '.join(CAPACITY_TYPES)}, got {capacity_type!r}",
                source=source,
                field=f"{where}.capacityType",
            )
        nodes = _require(entry, "nodes", int, source, where)
        if nodes < 0:
            raise InputError("must be >= 0", source=source, field=f"{where}.nodes")
        gpus = _require(entry, "gpusPerNode", int, source, where)
        if gpus < 1:
            raise InputError("must be >= 1", source=source, field=f"{where}.gpusPerNode")
        instance_type = str(entry.get("instanceType") or f"sim.{gpu_type.lower()}.{gpus}x")
        pools.append(
            NodePool(
                name=name,
                gpu_type=gpu_type,
                gpu_product=product,
                capacity_type=capacity_type,
                nodes=nodes,
                gpus_per_node=gpus,
                instance_type=instance_type,
                cpu=_quantity(entry, "cpu", str(DEFAULT_CPU_PER_GPU * gpus), source, where),
                memory=_quantity(
                    entry, "memory", f"{DEFAULT_MEMORY_GIB_PER_GPU * gpus}Gi", source, where
                ),
                labels=_string_map(entry, "labels", source, where),
                taints=_taints(entry, source, where),
            )
        )
    return Fleet(pools=tuple(pools))


def load_fleet(path: Path) -> Fleet:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise InputError(f"cannot read: {error.strerror}", source=str(path)) from None
    except yaml.YAMLError as error:
        raise InputError(f"not valid YAML: {error}".splitlines()[0], source=str(path)) from None
    return parse_fleet(document, str(path))


def node_name(pool: NodePool, index: int) -> str:
    return f"{pool.name}-{index}"


def free_pod_cidrs(used: Iterable[str]) -> Iterable[str]:
    """The node pod CIDRs of POD_NETWORK not in ``used``, lowest first."""
    taken = set(used)
    for subnet in POD_NETWORK.subnets(new_prefix=NODE_POD_PREFIX):
        if str(subnet) not in taken:
            yield str(subnet)


def node_manifest(pool: NodePool, index: int, pod_cidr: str | None = None) -> dict[str, Any]:
    """A complete Node object for node ``index`` of ``pool``, ready to create.

    ``pod_cidr`` (a /24 of POD_NETWORK, unique per node) becomes ``spec.podCIDR``; the cluster
    picks free ones with :func:`free_pod_cidrs`."""
    name = node_name(pool, index)
    resources = {
        "cpu": pool.cpu,
        "memory": pool.memory,
        "pods": str(PODS_PER_NODE),
        GPU_RESOURCE: str(pool.gpus_per_node),
    }
    labels = {
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": name,
        "type": "kwok",
        INSTANCE_TYPE_LABEL: pool.instance_type,
        CAPACITY_TYPE_LABEL: pool.capacity_type,
        # Karpenter names the pool a node came from; GPUPool examples select on it.
        "karpenter.sh/nodepool": pool.name,
        POOL_LABEL: pool.name,
        GPU_PRODUCT_LABEL: pool.gpu_product,
        GPU_COUNT_LABEL: str(pool.gpus_per_node),
        "nvidia.com/gpu.present": "true",
        **pool.labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": {
            "taints": [dict(GPU_TAINT), *(dict(taint) for taint in pool.taints)],
            **({"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]} if pod_cidr else {}),
        },
        # kwok's node-initialize stage keeps these and fills in nodeInfo, conditions and phase.
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }


# CPU nodes beside the fleet's GPU nodes, for pods that ask for no GPU (gpumix's routers, two
# per LLMService, spread over nodes): GPU nodes are tainted, as in a real cluster.
SYSTEM_POOL = "system"
SYSTEM_NODES = 2
SYSTEM_NODE_RESOURCES = {"cpu": "16", "memory": "64Gi", "pods": str(PODS_PER_NODE)}


def system_node_manifest(index: int, pod_cidr: str | None = None) -> dict[str, Any]:
    """Node ``system-<index>``: a CPU-only node (no GPU labels, resources or taint)."""
    name = f"{SYSTEM_POOL}-{index}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "type": "kwok",
                INSTANCE_TYPE_LABEL: "m6i.4xlarge",
                CAPACITY_TYPE_LABEL: "on-demand",
                POOL_LABEL: SYSTEM_POOL,
            },
            "annotations": {
                KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]} if pod_cidr else {},
        "status": {
            "capacity": dict(SYSTEM_NODE_RESOURCES),
            "allocatable": dict(SYSTEM_NODE_RESOURCES),
        },
    }


def fleet_nodes(fleet: Fleet) -> list[dict[str, Any]]:
    """Node objects for every node of every pool, in file order, each with its own pod CIDR."""
    cidrs = iter(free_pod_cidrs(()))
    return [
        node_manifest(pool, index, next(cidrs))
        for pool in fleet.pools
        for index in range(pool.nodes)
    ]
