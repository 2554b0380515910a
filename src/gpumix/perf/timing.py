"""Time per prefill and per decode step on one replica (roofline + overheads)."""

from __future__ import annotations

from gpumix.catalog import ModelArchitecture
from gpumix.perf.constants import (
    ACTIVATION_BYTES,
    ALLREDUCE_LATENCY_SECONDS,
    BYTES_PER_PARAMETER,
    COMPUTE_EFFICIENCY,
    GB,
    MEMORY_BANDWIDTH_EFFICIENCY,
    STEP_OVERHEAD_SECONDS,
    TERA,
)
from gpumix.perf.memory import kv_bytes_per_token_per_gpu
from gpumix.perf.values import ServingConfig, WeightFormat


def peak_flops_per_gpu(config: ServingConfig) -> float:
    """fp8 weights run W8A8 fp8 GEMMs; every other format computes in 16 bits."""
    gpu = config.gpu
    if config.weight_format is WeightFormat.FP8 and gpu.fp8_tflops is not None:
        return gpu.fp8_tflops * TERA
    return gpu.bf16_tflops * TERA


def attention_flops_per_token(model: ModelArchitecture, context_tokens: float) -> float:
    """QK^T and AV against `context_tokens` earlier tokens: 2 matmuls x 2 flops, all layers."""
    return 4 * model.layers * model.attention_heads * model.head_dim * context_tokens


def weight_parameters_read(model: ModelArchitecture, batch: int) -> float:
    """Parameters streamed from memory in one decode step of `batch` tokens.

    Dense models read every weight. A MoE token touches a fraction a = active/total of the
    weights; with `batch` tokens routed independently the expected fraction touched is
    1 - (1 - a)^batch, which is `active` at batch 1 and approaches `total`.
    """
    total = model.parameters_billions * 1e9
    if model.active_parameters_billions is None:
        return total
    active_fraction = model.active_parameters_billions / model.parameters_billions
    return total * (1.0 - (1.0 - active_fraction) ** batch)


def allreduce_seconds(model: ModelArchitecture, config: ServingConfig, tokens: int) -> float:
    """Two ring all-reduces per layer of tokens x hidden activations over the interconnect."""
    tp = config.tensor_parallel
    if tp == 1:
        return 0.0
    message_bytes = tokens * model.hidden_size * ACTIVATION_BYTES
    ring_traffic = 2 * message_bytes * (tp - 1) / tp
    per_allreduce = ring_traffic / (config.gpu.interconnect_gbps * GB)
    per_allreduce += ALLREDUCE_LATENCY_SECONDS[config.gpu.interconnect]
    return 2 * model.layers * per_allreduce


def prefill_seconds(model: ModelArchitecture, config: ServingConfig, input_tokens: int) -> float:
    """Compute-bound forward pass over the prompt (causal attention: half of I^2)."""
    tp = config.tensor_parallel
    linear_flops = 2 * model.compute_parameters_billions * 1e9 * input_tokens
    attention_flops = attention_flops_per_token(model, input_tokens / 2) * input_tokens
    compute = (
        (linear_flops + attention_flops) / tp / (peak_flops_per_gpu(config) * COMPUTE_EFFICIENCY)
    )
    # a short prompt still streams the weights once
    weight_bytes = (
        weight_parameters_read(model, input_tokens) * BYTES_PER_PARAMETER[config.weight_format]
    )
    memory = (
        weight_bytes / tp / (config.gpu.memory_bandwidth_gbps * GB * MEMORY_BANDWIDTH_EFFICIENCY)
    )
    return (
        max(compute, memory)
        + allreduce_seconds(model, config, input_tokens)
        + STEP_OVERHEAD_SECONDS
    )


def decode_step_seconds(
    model: ModelArchitecture, config: ServingConfig, batch: int, context_tokens: float
) -> float:
    """One decode step for `batch` sequences of `context_tokens` each:
    max(compute, weights + KV reads) + tensor-parallel all-reduce + fixed overhead."""
    tp = config.tensor_parallel
    per_token_flops = 2 * model.compute_parameters_billions * 1e9
    per_token_flops += attention_flops_per_token(model, context_tokens)
    compute = batch * per_token_flops / tp / (peak_flops_per_gpu(config) * COMPUTE_EFFICIENCY)
    weight_bytes = (
        weight_parameters_read(model, batch) * BYTES_PER_PARAMETER[config.weight_format] / tp
    )
    kv_bytes = batch * context_tokens * kv_bytes_per_token_per_gpu(model, tp)
    memory = (weight_bytes + kv_bytes) / (
        config.gpu.memory_bandwidth_gbps * GB * MEMORY_BANDWIDTH_EFFICIENCY
    )
    return max(compute, memory) + allreduce_seconds(model, config, batch) + STEP_OVERHEAD_SECONDS
