"""predict(): one (model, GPU config, request class, SLO) -> capacity at the SLO."""

from __future__ import annotations

from gpumix.catalog import ModelArchitecture
from gpumix.errors import InputError
from gpumix.perf.constants import GIB, MAX_NUM_SEQS
from gpumix.perf.memory import kv_capacity_tokens, usable_bytes_per_gpu, weight_bytes_per_gpu
from gpumix.perf.serving import ReplicaModel
from gpumix.perf.values import LatencySLO, Prediction, RequestShape, ServingConfig, WeightFormat


def configuration_problem(model: ModelArchitecture, config: ServingConfig) -> str:
    """Why vLLM would refuse to start this configuration ("" when it would start)."""
    gpu, tp = config.gpu, config.tensor_parallel
    if config.weight_format is WeightFormat.FP8 and not gpu.supports_fp8:
        return f"fp8 needs fp8 tensor cores (Ada or Hopper); {gpu.name} has none"
    if tp > gpu.gpus_per_node:
        return f"tensor parallel {tp} exceeds the {gpu.gpus_per_node} GPUs of a {gpu.name} node"
    if model.attention_heads % tp != 0:
        return f"tensor parallel {tp} does not divide {model.attention_heads} attention heads"
    if tp > model.kv_heads and tp % model.kv_heads != 0:
        return f"tensor parallel {tp} is not a multiple of {model.kv_heads} KV heads"
    return ""


def _does_not_fit(reason: str) -> Prediction:
    return Prediction(
        fits=False,
        reason=reason,
        max_concurrent_sequences=0,
        prefill_seconds=0.0,
        decode_step_seconds=0.0,
        decode_tokens_per_second=0.0,
        max_requests_per_second=0.0,
        batch=0,
    )


def _validate_request(shape: RequestShape, slo: LatencySLO, max_model_len: int) -> None:
    if shape.input_tokens < 1 or shape.output_tokens < 1:
        raise InputError("input and output tokens must be at least 1")
    if slo.ttft_seconds <= 0 or slo.tpot_seconds <= 0:
        raise InputError("TTFT and TPOT targets must be positive")
    if max_model_len < 1:
        raise InputError("maxModelLen must be at least 1")


def predict(
    model: ModelArchitecture,
    config: ServingConfig,
    shape: RequestShape,
    slo: LatencySLO,
    max_model_len: int,
    batch: int | None = None,
) -> Prediction:
    """Capacity of one replica for one request class within the SLO.

    Configurations vLLM cannot run (fp8 without fp8 tensor cores, tensor parallelism that
    does not divide the heads or spans nodes, weights or one maxModelLen sequence that do not
    fit) come back with ``fits=False`` and the reason: the solver screens thousands of
    candidates and must not need try/except. Nonsensical numbers (zero tokens, negative
    targets) raise InputError.

    Decode figures are at ``batch`` when given, else at the SLO-limited batch (batch 1 when
    even that misses the SLO).
    """
    _validate_request(shape, slo, max_model_len)
    problem = configuration_problem(model, config)
    if problem:
        return _does_not_fit(problem)
    weights_gib = weight_bytes_per_gpu(model, config) / GIB
    usable_gib = usable_bytes_per_gpu(config) / GIB
    if weights_gib >= usable_gib:
        return _does_not_fit(
            f"weights need {weights_gib:.1f} GiB per GPU, {max(usable_gib, 0):.1f} GiB usable"
        )
    capacity = kv_capacity_tokens(model, config)
    if capacity < max_model_len:
        return _does_not_fit(
            f"KV cache holds {capacity} tokens, less than one maxModelLen {max_model_len} sequence"
        )

    replica = ReplicaModel(model, config, shape)
    request_tokens = shape.input_tokens + shape.output_tokens
    max_concurrent = min(MAX_NUM_SEQS, capacity // request_tokens)
    slo_state = None
    reason = ""
    if request_tokens > max_model_len:
        reason = f"request of {request_tokens} tokens exceeds maxModelLen {max_model_len}"
    else:
        slo_state = replica.largest_batch_within(slo, max_concurrent)
        if slo_state is None:
            reason = _slo_miss_reason(replica, slo)

    decode_batch = batch if batch is not None else (slo_state.batch if slo_state else 1)
    decode_batch = max(1, decode_batch)
    step = replica.decode_step(decode_batch)
    return Prediction(
        fits=True,
        reason=reason,
        max_concurrent_sequences=max_concurrent,
        prefill_seconds=replica.prefill_seconds,
        decode_step_seconds=step,
        decode_tokens_per_second=decode_batch / step,
        max_requests_per_second=slo_state.requests_per_second if slo_state else 0.0,
        batch=decode_batch,
    )


def _slo_miss_reason(replica: ReplicaModel, slo: LatencySLO) -> str:
    state = replica.at_batch(1)
    if state.effective_tpot_seconds > slo.tpot_seconds:
        return (
            f"TPOT at batch 1 is {state.effective_tpot_seconds * 1000:.0f} ms > "
            f"{slo.tpot_seconds * 1000:.0f} ms target"
        )
    return (
        f"TTFT at batch 1 is {state.ttft_seconds * 1000:.0f} ms > "
        f"{slo.ttft_seconds * 1000:.0f} ms target"
    )
