"""Physical invariants of the performance model, over random models, GPUs and batches."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from gpumix.catalog import gpu_catalog, model_catalog
from gpumix.perf.counts import attention_flops, gemm_flops, layer_bytes_read, lm_head_bytes
from gpumix.perf.memory import kv_bytes_per_token_per_gpu
from gpumix.perf.serving import ReplicaModel
from gpumix.perf.timing import decode_step_seconds, peak_flops_per_gpu, prefill_seconds
from gpumix.perf.values import RequestShape, ServingConfig, WeightFormat

models = st.sampled_from(sorted(model_catalog().values(), key=lambda m: m.name))
gpus = st.sampled_from(sorted(gpu_catalog().values(), key=lambda g: g.name))
tensor_parallel = st.sampled_from([1, 2, 4, 8])
formats = st.sampled_from(list(WeightFormat))
batches = st.integers(min_value=1, max_value=512)
contexts = st.integers(min_value=1, max_value=32768)
EXAMPLES = settings(max_examples=60, deadline=None)


@EXAMPLES
@given(models, gpus, tensor_parallel, formats, batches, contexts)
def test_decode_never_beats_the_memory_roofline(model, gpu, tp, fmt, batch, context) -> None:
    config = ServingConfig(gpu, tp, fmt)
    # every GPU must at least stream its shard of the weights the batch touches, and its KV
    streamed = layer_bytes_read(model, fmt, batch) + lm_head_bytes(model)
    streamed += tp * batch * context * kv_bytes_per_token_per_gpu(model, tp)
    roofline = streamed / tp / (gpu.memory_bandwidth_gbps * 1e9)
    assert decode_step_seconds(model, config, batch, context) >= roofline


@EXAMPLES
@given(models, gpus, tensor_parallel, formats, st.integers(min_value=1, max_value=16384))
def test_prefill_never_beats_peak_flops(model, gpu, tp, fmt, input_tokens) -> None:
    config = ServingConfig(gpu, tp, fmt)
    flops = gemm_flops(model, input_tokens, sampled=1)
    flops += attention_flops(model, input_tokens * input_tokens / 2)
    assert prefill_seconds(model, config, input_tokens) >= flops / (tp * peak_flops_per_gpu(config))


@EXAMPLES
@given(models, gpus, tensor_parallel, formats, st.integers(min_value=1, max_value=16384))
def test_a_longer_prompt_takes_longer(model, gpu, tp, fmt, input_tokens) -> None:
    config = ServingConfig(gpu, tp, fmt)
    longer = prefill_seconds(model, config, input_tokens + 1)
    assert longer >= prefill_seconds(model, config, input_tokens)


@EXAMPLES
@given(models, gpus, tensor_parallel, formats, batches, contexts)
def test_a_longer_context_makes_decode_slower(model, gpu, tp, fmt, batch, context) -> None:
    config = ServingConfig(gpu, tp, fmt)
    longer = decode_step_seconds(model, config, batch, context + 1)
    assert longer >= decode_step_seconds(model, config, batch, context)


@EXAMPLES
@given(
    models,
    gpus,
    tensor_parallel,
    formats,
    st.integers(min_value=1, max_value=255),
    st.integers(min_value=1, max_value=8192),
    st.integers(min_value=1, max_value=2048),
)
def test_serving_latencies_grow_with_the_batch(model, gpu, tp, fmt, batch, prompt, output) -> None:
    """The binary search for the SLO-limited batch relies on this."""
    replica = ReplicaModel(model, ServingConfig(gpu, tp, fmt), RequestShape(prompt, output))
    small, large = replica.at_batch(batch), replica.at_batch(batch + 1)
    assert large.effective_tpot_seconds >= small.effective_tpot_seconds
    assert large.ttft_seconds >= small.ttft_seconds


@EXAMPLES
@given(models, gpus, tensor_parallel, formats, batches, contexts)
def test_bigger_batches_raise_tpot_and_throughput(model, gpu, tp, fmt, batch, context) -> None:
    config = ServingConfig(gpu, tp, fmt)
    small = decode_step_seconds(model, config, batch, context)
    large = decode_step_seconds(model, config, batch + 1, context)
    assert large >= small  # TPOT grows with batch
    assert (batch + 1) / large >= batch / small  # tokens/s grows with batch


@EXAMPLES
@given(models, gpus, tensor_parallel, formats, batches, contexts, st.floats(1.01, 4.0))
def test_more_bandwidth_never_slows_decode(model, gpu, tp, fmt, batch, context, factor) -> None:
    faster = dataclasses.replace(gpu, memory_bandwidth_gbps=gpu.memory_bandwidth_gbps * factor)
    slow = decode_step_seconds(model, ServingConfig(gpu, tp, fmt), batch, context)
    assert decode_step_seconds(model, ServingConfig(faster, tp, fmt), batch, context) <= slow
