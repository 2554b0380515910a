"""The custom resources (LLMService, GPUPool) as typed models: parse once, at the boundary.

Pure pydantic: no Kubernetes client imports, so the CLI, the operator and the CRD generator
share one definition.
"""

from gpumix.resources.gpupool import CustomGPUSpec, GPUPool, GPUPoolSpec, GPUPoolStatus, Toleration
from gpumix.resources.llmservice import (
    ArchitectureSpec,
    AutoscalingSpec,
    CapacityType,
    LLMService,
    LLMServiceSpec,
    LLMServiceStatus,
    Objective,
    ObservedDemandStatus,
    PlanEntryStatus,
    RequestClassSpec,
    WeightFormatName,
)
from gpumix.resources.loader import Resource, load_manifests, parse_resource
from gpumix.resources.meta import Condition, ObjectMeta

__all__ = [
    "ArchitectureSpec",
    "AutoscalingSpec",
    "CapacityType",
    "Condition",
    "CustomGPUSpec",
    "GPUPool",
    "GPUPoolSpec",
    "GPUPoolStatus",
    "LLMService",
    "LLMServiceSpec",
    "LLMServiceStatus",
    "ObjectMeta",
    "Objective",
    "ObservedDemandStatus",
    "PlanEntryStatus",
    "RequestClassSpec",
    "Resource",
    "Toleration",
    "WeightFormatName",
    "load_manifests",
    "parse_resource",
]
