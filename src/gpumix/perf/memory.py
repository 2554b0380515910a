"""Memory fit: weights, KV cache bytes per token, and how many tokens of KV cache fit."""

from __future__ import annotations

import math

from gpumix.catalog import ModelArchitecture
from gpumix.perf.constants import (
    GIB,
    GPU_MEMORY_UTILIZATION,
    KV_CACHE_BYTES_PER_ELEMENT,
    RUNTIME_RESERVE_GIB,
)
from gpumix.perf.counts import weight_bytes
from gpumix.perf.values import ServingConfig


def weight_bytes_per_gpu(model: ModelArchitecture, config: ServingConfig) -> float:
    """All weights (every expert for MoE; layers in the weight format, embeddings in 16
    bits), split evenly by tensor parallelism."""
    return weight_bytes(model, config.weight_format) / config.tensor_parallel


def kv_heads_per_gpu(model: ModelArchitecture, tensor_parallel: int) -> int:
    # vLLM replicates KV heads when tensor_parallel exceeds them, so never fewer than one.
    return max(1, math.ceil(model.kv_heads / tensor_parallel))


def kv_bytes_per_token_per_gpu(model: ModelArchitecture, tensor_parallel: int) -> float:
    """K and V for every layer: 2 x layers x kv_heads x head_dim x dtype bytes."""
    heads = kv_heads_per_gpu(model, tensor_parallel)
    return 2 * model.layers * heads * model.head_dim * KV_CACHE_BYTES_PER_ELEMENT


def usable_bytes_per_gpu(config: ServingConfig) -> float:
    """vLLM's budget (0.9 of the GPU) minus its runtime reserve, before weights."""
    budget = config.gpu.memory_gib * GIB * GPU_MEMORY_UTILIZATION
    return budget - RUNTIME_RESERVE_GIB * GIB


def kv_capacity_tokens(model: ModelArchitecture, config: ServingConfig) -> int:
    """Tokens of KV cache that fit next to the weights (0 when the weights do not fit)."""
    free = usable_bytes_per_gpu(config) - weight_bytes_per_gpu(model, config)
    if free <= 0:
        return 0
    return int(free // kv_bytes_per_token_per_gpu(model, config.tensor_parallel))
