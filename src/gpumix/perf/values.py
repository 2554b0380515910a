"""The value types the performance model takes and returns (frozen, hashable)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gpumix.catalog import GPUType


class WeightFormat(StrEnum):
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"


@dataclass(frozen=True)
class RequestShape:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class LatencySLO:
    ttft_seconds: float
    tpot_seconds: float


@dataclass(frozen=True)
class ServingConfig:
    gpu: GPUType
    tensor_parallel: int
    weight_format: WeightFormat


@dataclass(frozen=True)
class Prediction:
    fits: bool
    reason: str
    max_concurrent_sequences: int
    prefill_seconds: float
    decode_step_seconds: float
    decode_tokens_per_second: float
    max_requests_per_second: float
    batch: int
