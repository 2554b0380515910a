"""The GPUPool custom resource: one GPU type × one capacity type, selected by node labels."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gpumix.resources.llmservice import CapacityType
from gpumix.resources.meta import Condition, ObjectMeta
from gpumix.resources.selectors import LabelSelector
from gpumix.resources.types import CamelModel, DecimalString


class Toleration(CamelModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class CustomGPUSpec(CamelModel):
    """Performance figures for a GPU type that is not in gpumix's catalogue."""

    memory_gib: int = Field(alias="memoryGiB", ge=1, description="Memory per GPU, GiB.")
    bf16_tflops: int = Field(alias="bf16TFLOPS", ge=1, description="Dense bf16 TFLOPS.")
    fp8_tflops: int | None = Field(
        default=None, alias="fp8TFLOPS", ge=1, description="Dense fp8 TFLOPS; absent = no fp8."
    )
    memory_bandwidth_gbps: int = Field(
        alias="memoryBandwidthGBps", ge=1, description="Memory bandwidth, GB/s."
    )
    interconnect_gbps: int = Field(
        default=64,
        alias="interconnectGBps",
        ge=1,
        description="GPU-to-GPU bandwidth within a node, GB/s (PCIe 4.0 x16 = 64).",
    )


class GPUPoolSpec(CamelModel):
    gpu_type: str = Field(
        alias="gpuType",
        min_length=1,
        description="Catalogue GPU type (e.g. H100-80GB), or a custom name with spec.gpu.",
    )
    capacity_type: CapacityType = Field(
        default=CapacityType.ON_DEMAND, description="on-demand, spot or reserved."
    )
    node_selector: dict[str, str] = Field(
        min_length=1, description="Labels that select this pool's nodes; also set on its pods."
    )
    price_per_gpu_hour: DecimalString | None = Field(
        default=None,
        alias="pricePerGPUHour",
        description="USD per GPU-hour; absent = the catalogue default for type and capacity.",
    )
    max_gpus: int | None = Field(
        default=None,
        alias="maxGPUs",
        ge=0,
        description="Autoscaler ceiling; absent = only the GPUs of existing nodes.",
    )
    gpus_per_node: int | None = Field(
        default=None,
        alias="gpusPerNode",
        ge=1,
        le=64,
        description="GPUs per node; read from the nodes when absent.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Added to the pods gpumix places on this pool (only in the namespaces "
        "namespaceSelector admits).",
    )
    namespace_selector: LabelSelector | None = Field(
        default=None,
        description="The namespaces whose LLMServices may be planned onto this pool; absent = "
        "all. Select by name with the kubernetes.io/metadata.name label.",
    )
    gpu: CustomGPUSpec | None = Field(default=None, description="Custom GPU types only.")


class GPUPoolStatus(CamelModel):
    observed_generation: int | None = None
    nodes: int = 0
    ready_nodes: int = 0
    gpus: int = Field(default=0, alias="gpus")
    allocated_gpus: int = Field(default=0, alias="allocatedGPUs")
    available_gpus: int = Field(
        default=0,
        alias="availableGPUs",
        description="GPUs the planner may use now, including scalable headroom.",
    )
    price_per_gpu_hour: DecimalString | None = Field(
        default=None, alias="pricePerGPUHour", description="Effective price, USD per GPU-hour."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )


class GPUPool(CamelModel):
    api_version: Literal["gpumix.io/v1alpha1"] = "gpumix.io/v1alpha1"
    kind: Literal["GPUPool"] = "GPUPool"
    metadata: ObjectMeta
    spec: GPUPoolSpec
    status: GPUPoolStatus | None = None
