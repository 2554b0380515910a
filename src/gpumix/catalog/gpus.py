"""The GPU catalogue: hardware figures, cluster label values and default prices per GPU type.

Data lives in ``gpus.yaml`` next to this module, one entry per type with the public source of
every figure; it is validated once, on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gpumix.catalog._validate import (
    CatalogError,
    entry_mapping,
    load_package_yaml,
    non_empty_string,
    optional_positive_number,
    positive_int,
    positive_number,
    string_list,
)
from gpumix.errors import InputError, UnknownNameError

GPU_FILE = "gpus.yaml"
INTERCONNECTS = ("NVLink", "PCIe")
CAPACITY_TYPES = ("on-demand", "spot", "reserved")
REQUIRED_SOURCES = ("specs", "labels", "onDemandPrice", "spotPrice", "retrieved")

# Reserved capacity (1-year commitments, savings plans) has no list price that applies to
# every buyer; AWS and GCP 1-year commitments for GPU instances are typically 35-45 % below
# on-demand. We default to 0.6 x on-demand and expect a GPUPool to state its real price.
RESERVED_PRICE_FRACTION_OF_ON_DEMAND = 0.6

# Karpenter labels both A100 sizes "a100"; karpenter.k8s.aws/instance-gpu-memory (MiB)
# tells them apart.
KARPENTER_GPU_NAME_LABEL = "karpenter.k8s.aws/instance-gpu-name"
KARPENTER_GPU_MEMORY_LABEL = "karpenter.k8s.aws/instance-gpu-memory"
GFD_PRODUCT_LABEL = "nvidia.com/gpu.product"
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
# GPU feature discovery appends this when a GPU is shared by time-slicing.
GFD_SHARED_SUFFIX = "-SHARED"
# Labels that name a node's GPU model, most trusted first (GFD reads the hardware).
DEFAULT_GPU_TYPE_LABELS = (GFD_PRODUCT_LABEL, GKE_ACCELERATOR_LABEL, KARPENTER_GPU_NAME_LABEL)


@dataclass(frozen=True)
class GPUType:
    name: str
    memory_gib: float
    bf16_tflops: float
    fp8_tflops: float | None
    memory_bandwidth_gbps: float
    interconnect: str
    interconnect_gbps: float
    gpus_per_node: int
    gfd_products: tuple[str, ...] = ()
    gke_accelerators: tuple[str, ...] = ()
    karpenter_gpu_names: tuple[str, ...] = ()
    on_demand_price: float = 0.0
    spot_price: float = 0.0

    @property
    def supports_fp8(self) -> bool:
        return self.fp8_tflops is not None


def parse_gpu_entry(name: str, raw: object) -> GPUType:
    """One catalogue entry -> GPUType; raises InputError naming the offending field."""
    entry = entry_mapping(raw, name)
    interconnect = entry.get("interconnect")
    if interconnect not in INTERCONNECTS:
        raise InputError(
            f"must be one of {', '.join(INTERCONNECTS)}, got {interconnect!r}",
            field=f"{name}.interconnect",
        )
    labels = entry_mapping(entry.get("labels", {}), f"{name}.labels")
    sources = entry_mapping(entry.get("sources", {}), f"{name}.sources")
    for key in REQUIRED_SOURCES:
        non_empty_string(sources, key, f"{name}.sources")
    return GPUType(
        name=name,
        memory_gib=positive_number(entry, "memoryGiB", name),
        bf16_tflops=positive_number(entry, "bf16TFLOPS", name),
        fp8_tflops=optional_positive_number(entry, "fp8TFLOPS", name),
        memory_bandwidth_gbps=positive_number(entry, "memoryBandwidthGBps", name),
        interconnect=str(interconnect),
        interconnect_gbps=positive_number(entry, "interconnectGBps", name),
        gpus_per_node=positive_int(entry, "gpusPerNode", name),
        gfd_products=string_list(labels, "gfdProducts", f"{name}.labels"),
        gke_accelerators=string_list(labels, "gkeAccelerators", f"{name}.labels"),
        karpenter_gpu_names=string_list(labels, "karpenterGpuNames", f"{name}.labels"),
        on_demand_price=positive_number(entry, "onDemandPrice", name),
        spot_price=positive_number(entry, "spotPrice", name),
    )


def parse_gpu_catalog(data: Mapping[str, Any], source: str = GPU_FILE) -> dict[str, GPUType]:
    try:
        catalog = {str(name): parse_gpu_entry(str(name), raw) for name, raw in data.items()}
    except InputError as error:
        raise CatalogError(f"{source}: {error.one_line()}") from error
    _check_labels_unique(catalog, source)
    return catalog


def _check_labels_unique(catalog: Mapping[str, GPUType], source: str) -> None:
    # A label value naming two GPU types would make node discovery ambiguous.
    owner: dict[str, str] = {}
    for gpu in catalog.values():
        for value in (*gpu.gfd_products, *gpu.gke_accelerators, *gpu.karpenter_gpu_names):
            key = value.lower()
            if key in owner and owner[key] != gpu.name:
                raise CatalogError(
                    f"{source}: label value {value!r} is claimed by {owner[key]} and {gpu.name}"
                )
            owner[key] = gpu.name


@functools.cache
def gpu_catalog() -> Mapping[str, GPUType]:
    return MappingProxyType(parse_gpu_catalog(load_package_yaml(GPU_FILE)))


def get_gpu(name: str) -> GPUType:
    """Catalogue lookup by name, case-insensitively; UnknownNameError lists close matches."""
    catalog = gpu_catalog()
    if name in catalog:
        return catalog[name]
    for known_name, gpu in catalog.items():
        if known_name.lower() == name.lower():
            return gpu
    from_label = gpu_type_from_label(name)
    if from_label is not None:
        return catalog[from_label]
    raise UnknownNameError("GPU type", name, catalog)


@functools.cache
def _label_index() -> Mapping[str, str]:
    index: dict[str, str] = {}
    for gpu in gpu_catalog().values():
        for value in (*gpu.gfd_products, *gpu.gke_accelerators, *gpu.karpenter_gpu_names):
            index[value.lower()] = gpu.name
    return MappingProxyType(index)


def gpu_type_from_label(value: str) -> str | None:
    """Any GFD / GKE / Karpenter GPU label value -> catalogue name (None if unknown)."""
    key = value.strip().lower()
    if key.endswith(GFD_SHARED_SUFFIX.lower()):
        key = key[: -len(GFD_SHARED_SUFFIX)]
    return _label_index().get(key)


def gpu_type_from_labels(
    labels: Mapping[str, str], keys: Sequence[str] = DEFAULT_GPU_TYPE_LABELS
) -> str | None:
    """A node's labels -> catalogue name, from the first of ``keys`` whose value names a type.

    ``keys`` are the label keys to read, most trusted first (the operator's
    ``discovery.gpuTypeLabels``). Any key's value may be a GFD, GKE or Karpenter spelling.
    Karpenter's "a100" is resolved with the GPU memory label (A100-80GB reports about 81920 MiB).
    """
    for key in keys:
        if key not in labels:
            continue
        found = gpu_type_from_label(labels[key])
        if found == "A100-40GB" and key == KARPENTER_GPU_NAME_LABEL:
            memory_mib = labels.get(KARPENTER_GPU_MEMORY_LABEL, "")
            if memory_mib.isdigit() and int(memory_mib) > 48 * 1024:
                return "A100-80GB"
        if found is not None:
            return found
    return None


def default_price(gpu_type: str, capacity_type: str) -> float:
    """Catalogue $/GPU-hour for a capacity type ("on-demand", "spot" or "reserved")."""
    gpu = get_gpu(gpu_type)
    if capacity_type == "on-demand":
        return gpu.on_demand_price
    if capacity_type == "spot":
        return gpu.spot_price
    if capacity_type == "reserved":
        return round(gpu.on_demand_price * RESERVED_PRICE_FRACTION_OF_ON_DEMAND, 4)
    raise UnknownNameError("capacity type", capacity_type, CAPACITY_TYPES)


def custom_gpu_type(
    name: str,
    spec: Mapping[str, Any],
    *,
    gpus_per_node: int,
    price_per_gpu_hour: float,
    source: str | None = None,
) -> GPUType:
    """A GPU type described inline (GPUPool ``spec.gpu``): memoryGiB, bf16TFLOPS, fp8TFLOPS,
    memoryBandwidthGBps, interconnectGBps. Raises InputError naming the field."""
    where = "spec.gpu"
    try:
        interconnect_gbps = positive_number(spec, "interconnectGBps", where)
        return GPUType(
            name=name,
            memory_gib=positive_number(spec, "memoryGiB", where),
            bf16_tflops=positive_number(spec, "bf16TFLOPS", where),
            fp8_tflops=optional_positive_number(spec, "fp8TFLOPS", where),
            memory_bandwidth_gbps=positive_number(spec, "memoryBandwidthGBps", where),
            # PCIe Gen5 x16 tops out at 128 GB/s; anything faster is a GPU-to-GPU fabric
            interconnect="NVLink" if interconnect_gbps > 128 else "PCIe",
            interconnect_gbps=interconnect_gbps,
            gpus_per_node=gpus_per_node,
            on_demand_price=price_per_gpu_hour,
            spot_price=price_per_gpu_hour,
        )
    except InputError as error:
        raise InputError(error.detail, source=source, field=error.field) from error
