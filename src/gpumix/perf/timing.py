"""Time of one engine step on one replica: per-phase rooflines plus fixed latencies.

vLLM V1 runs decodes and chunks of prompts in one step (chunked prefill), so a step is
described by its work (:class:`StepWork`), and a pure prefill or a pure decode step is the
special case with no work of the other kind. Its time is the sum of phases that run as
separate kernels, each bound by its own resource:

- weight GEMMs: stream the layer weights (and lm_head) once per step, or do the math for all
  of the step's tokens, whichever is longer, plus GEMM_OVERLAP_LOSS of the shorter;
- attention: read the decodes' KV cache, or do the math of the prompts' causal attention,
  plus a fixed latency per layer;
- a per-step overhead growing with the sequences sampled;
- with tensor parallelism, two all-reduces per layer.

Summing the phases (rather than one max over the whole step) is what makes a large batch
right: the GEMMs turn compute-bound from batch ~128 while attention stays bound by the KV
bytes it reads, and their times add.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpumix.catalog import ModelArchitecture
from gpumix.perf.constants import (
    ACTIVATION_BYTES,
    ALLREDUCE_LATENCY_SECONDS,
    ATTENTION_BANDWIDTH_EFFICIENCY,
    ATTENTION_LAYER_SECONDS,
    COMPUTE_EFFICIENCY,
    GB,
    GEMM_BANDWIDTH_EFFICIENCY,
    GEMM_OVERLAP_LOSS,
    STEP_OVERHEAD_PER_SEQUENCE_SECONDS,
    STEP_OVERHEAD_SECONDS,
    TERA,
)
from gpumix.perf.counts import attention_flops, gemm_flops, layer_bytes_read, lm_head_bytes
from gpumix.perf.memory import kv_bytes_per_token_per_gpu
from gpumix.perf.values import ServingConfig, WeightFormat


@dataclass(frozen=True)
class StepWork:
    """What one step computes.

    decode_sequences: sequences emitting one token each, attending to decode_context tokens
    on average. prefill_tokens: prompt tokens of the step (whole prompts or chunks);
    prefill_pairs: (query token, earlier token) pairs their attention covers, S^2/2 for a
    whole prompt of S, k * (done + k/2) for a chunk of k after `done` tokens.
    prompts_sampled: prompts whose last chunk runs in the step (each samples a first token).
    """

    decode_sequences: float = 0.0
    decode_context: float = 0.0
    prefill_tokens: float = 0.0
    prefill_pairs: float = 0.0
    prompts_sampled: float = 0.0

    @property
    def tokens(self) -> float:
        return self.decode_sequences + self.prefill_tokens

    @property
    def sampled(self) -> float:
        return self.decode_sequences + self.prompts_sampled


def whole_prompt(tokens: float) -> StepWork:
    return StepWork(prefill_tokens=tokens, prefill_pairs=tokens * tokens / 2, prompts_sampled=1)


def peak_flops_per_gpu(config: ServingConfig) -> float:
    """fp8 weights run W8A8 fp8 GEMMs; every other format computes in 16 bits."""
    gpu = config.gpu
    if config.weight_format is WeightFormat.FP8 and gpu.fp8_tflops is not None:
        return gpu.fp8_tflops * TERA
    return gpu.bf16_tflops * TERA


def _bandwidth(config: ServingConfig) -> float:
    return config.gpu.memory_bandwidth_gbps * GB


def _attention_peak(config: ServingConfig) -> float:
    # attention runs in 16 bits whatever the weight format
    return config.gpu.bf16_tflops * TERA * COMPUTE_EFFICIENCY


def gemm_seconds(model: ModelArchitecture, config: ServingConfig, work: StepWork) -> float:
    tp = config.tensor_parallel
    streamed = layer_bytes_read(model, config.weight_format, work.tokens)
    if work.sampled > 0:
        streamed += lm_head_bytes(model)
    memory = streamed / tp / (_bandwidth(config) * GEMM_BANDWIDTH_EFFICIENCY[config.weight_format])
    flops = gemm_flops(model, work.tokens, work.sampled)
    compute = flops / tp / (peak_flops_per_gpu(config) * COMPUTE_EFFICIENCY)
    return max(memory, compute) + GEMM_OVERLAP_LOSS * min(memory, compute)


def attention_seconds(model: ModelArchitecture, config: ServingConfig, work: StepWork) -> float:
    tp = config.tensor_parallel
    kv_read = work.decode_sequences * work.decode_context * kv_bytes_per_token_per_gpu(model, tp)
    decode_memory = kv_read / (_bandwidth(config) * ATTENTION_BANDWIDTH_EFFICIENCY)
    decode_compute = (
        attention_flops(model, work.decode_sequences * work.decode_context)
        / tp
        / _attention_peak(config)
    )
    prefill_compute = attention_flops(model, work.prefill_pairs) / tp / _attention_peak(config)
    return (
        max(decode_memory, decode_compute)
        + prefill_compute
        + model.layers * ATTENTION_LAYER_SECONDS
    )


def allreduce_seconds(model: ModelArchitecture, config: ServingConfig, tokens: float) -> float:
    """Two ring all-reduces per layer of tokens x hidden activations over the interconnect."""
    tp = config.tensor_parallel
    if tp == 1:
        return 0.0
    message_bytes = tokens * model.hidden_size * ACTIVATION_BYTES
    ring_traffic = 2 * message_bytes * (tp - 1) / tp
    per_allreduce = ring_traffic / (config.gpu.interconnect_gbps * GB)
    per_allreduce += ALLREDUCE_LATENCY_SECONDS[config.gpu.interconnect]
    return 2 * model.layers * per_allreduce


def overhead_seconds(work: StepWork) -> float:
    return STEP_OVERHEAD_SECONDS + STEP_OVERHEAD_PER_SEQUENCE_SECONDS * work.sampled


def step_seconds(model: ModelArchitecture, config: ServingConfig, work: StepWork) -> float:
    """One engine step doing `work` (0 for an empty step)."""
    if work.tokens <= 0:
        return 0.0
    return (
        gemm_seconds(model, config, work)
        + attention_seconds(model, config, work)
        + overhead_seconds(work)
        + allreduce_seconds(model, config, work.tokens)
    )


def prefill_seconds(model: ModelArchitecture, config: ServingConfig, input_tokens: int) -> float:
    """A step that runs one whole prompt and nothing else."""
    return step_seconds(model, config, whole_prompt(input_tokens))


def decode_step_seconds(
    model: ModelArchitecture, config: ServingConfig, batch: int, context_tokens: float
) -> float:
    """A step of `batch` decodes attending to `context_tokens` each, and no prompt."""
    work = StepWork(decode_sequences=batch, decode_context=context_tokens)
    return step_seconds(model, config, work)
