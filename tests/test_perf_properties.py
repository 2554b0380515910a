"""Physical invariants of the performance model, over random models, GPUs and batches."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from gpumix.catalog import gpu_catalog, model_catalog
from gpumix.perf.constants import BYTES_PER_PARAMETER
from gpumix.perf.timing import decode_step_seconds, peak_flops_per_gpu, prefill_seconds
from gpumix.perf.values import ServingConfig, WeightFormat

models = st.sampled_from(sorted(model_catalog().values(), key=lambda m: m.name))
gpus = st.sampled_from(sorted(gpu_catalog().values(), key=lambda g: g.name))
tensor_parallel = st.sampled_from([1, 2, 4, 8])
formats = st.sampled_from([WeightFormat.BF16, WeightFormat.INT8, WeightFormat.INT4])
batches = st.integers(min_value=1, max_value=512)
contexts = st.integers(min_value=1, max_value=32768)
EXAMPLES = settings(max_examples=60, deadline=None)


@EXAMPLES
@given(models, gpus, tensor_parallel, formats, batches, contexts)
def test_decode_never_beats_the_memory_roofline(model, gpu, tp, fmt, batch, context) -> None:
    config = ServingConfig(gpu, tp, fmt)
    # every GPU must at least stream its shard of the active weights once per step
    weight_bytes = model.compute_parameters_billions * 1e9 * BYTES_PER_PARAMETER[fmt] / tp
    roofline = weight_bytes / (gpu.memory_bandwidth_gbps * 1e9)
    assert decode_step_seconds(model, config, batch, context) >= roofline


@EXAMPLES
@given(models, gpus, tensor_parallel, formats, st.integers(min_value=1, max_value=16384))
def test_prefill_never_beats_peak_flops(model, gpu, tp, fmt, input_tokens) -> None:
    config = ServingConfig(gpu, tp, fmt)
    flops = 2 * model.compute_parameters_billions * 1e9 * input_tokens
    assert prefill_seconds(model, config, input_tokens) >= flops / (tp * peak_flops_per_gpu(config))


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
