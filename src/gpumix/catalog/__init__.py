"""GPU and model catalogues (pure: no Kubernetes imports).

>>> get_gpu("H100-80GB").memory_bandwidth_gbps
3350.0
>>> get_model("llama-3.1-8b-instruct").name
'meta-llama/Llama-3.1-8B-Instruct'
"""

from gpumix.catalog._validate import CatalogError
from gpumix.catalog.gpus import (
    CAPACITY_TYPES,
    RESERVED_PRICE_FRACTION_OF_ON_DEMAND,
    GPUType,
    custom_gpu_type,
    default_price,
    get_gpu,
    gpu_catalog,
    gpu_type_from_label,
    gpu_type_from_labels,
)
from gpumix.catalog.models import (
    ARCHITECTURE_FIELDS,
    ModelArchitecture,
    architecture_from_spec,
    find_model,
    get_model,
    model_catalog,
    resolve_model,
)

__all__ = [
    "ARCHITECTURE_FIELDS",
    "CAPACITY_TYPES",
    "RESERVED_PRICE_FRACTION_OF_ON_DEMAND",
    "CatalogError",
    "GPUType",
    "ModelArchitecture",
    "architecture_from_spec",
    "custom_gpu_type",
    "default_price",
    "find_model",
    "get_gpu",
    "get_model",
    "gpu_catalog",
    "gpu_type_from_label",
    "gpu_type_from_labels",
    "model_catalog",
    "resolve_model",
]
