"""The performance model: memory fit, reasons, and SLO-limited capacity."""

from __future__ import annotations

import time

import pytest

from gpumix.catalog import get_gpu, get_model
from gpumix.errors import InputError
from gpumix.perf import LatencySLO, RequestShape, ServingConfig, WeightFormat, predict
from gpumix.perf.memory import kv_bytes_per_token_per_gpu

LLAMA_8B = get_model("Llama-3.1-8B-Instruct")
LLAMA_70B = get_model("Llama-3.1-70B-Instruct")
CHAT = RequestShape(512, 256)
RELAXED = LatencySLO(ttft_seconds=2.0, tpot_seconds=0.1)


def config(gpu: str, tp: int = 1, fmt: WeightFormat = WeightFormat.BF16) -> ServingConfig:
    return ServingConfig(get_gpu(gpu), tp, fmt)


def test_llama_8b_kv_cache_is_128_kib_per_token() -> None:
    # 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 bytes
    assert kv_bytes_per_token_per_gpu(LLAMA_8B, 1) == 131072


def test_70b_in_bf16_needs_more_than_one_h100() -> None:
    alone = predict(LLAMA_70B, config("H100-80GB"), CHAT, RELAXED, 8192)
    assert not alone.fits
    assert alone.reason == "weights need 131.5 GiB per GPU, 70.0 GiB usable"
    assert predict(LLAMA_70B, config("H100-80GB", 4), CHAT, RELAXED, 8192).fits


def test_quantised_weights_make_a_model_fit_where_bf16_does_not() -> None:
    assert not predict(LLAMA_8B, config("T4"), CHAT, RELAXED, 8192).fits
    assert predict(LLAMA_8B, config("T4", fmt=WeightFormat.INT8), CHAT, RELAXED, 8192).fits


def test_a_long_max_model_len_can_stop_a_config_that_holds_the_weights() -> None:
    h100_2 = config("H100-80GB", 2)
    assert predict(LLAMA_70B, h100_2, CHAT, RELAXED, 8192).fits
    too_long = predict(LLAMA_70B, h100_2, CHAT, RELAXED, 131072)
    assert not too_long.fits and "maxModelLen 131072" in too_long.reason


@pytest.mark.parametrize(
    ("gpu", "tp", "fmt", "expected"),
    [
        ("A100-80GB", 1, WeightFormat.FP8, "fp8 needs fp8 tensor cores"),
        ("H100-80GB", 3, WeightFormat.BF16, "does not divide 32 attention heads"),
        ("L4", 16, WeightFormat.BF16, "exceeds the 8 GPUs"),
    ],
)
def test_configs_vllm_would_refuse_do_not_fit(
    gpu: str, tp: int, fmt: WeightFormat, expected: str
) -> None:
    prediction = predict(LLAMA_8B, config(gpu, tp, fmt), CHAT, RELAXED, 8192)
    assert not prediction.fits and expected in prediction.reason
    assert prediction.max_requests_per_second == 0.0


def test_a_tight_tpot_target_is_missed_with_the_measured_figure() -> None:
    prediction = predict(LLAMA_8B, config("L4"), CHAT, LatencySLO(2.0, 0.02), 8192)
    assert prediction.fits and prediction.max_requests_per_second == 0.0
    assert prediction.reason.startswith("TPOT at batch 1 is ")
    assert prediction.reason.endswith(" ms > 20 ms target")


def test_stricter_slo_gives_less_capacity() -> None:
    loose = predict(LLAMA_8B, config("A10G"), CHAT, RELAXED, 8192)
    strict = predict(LLAMA_8B, config("A10G"), CHAT, LatencySLO(1.0, 0.038), 8192)
    assert 0 < strict.max_requests_per_second < loose.max_requests_per_second
    assert strict.batch < loose.batch


def test_fp8_is_faster_than_bf16_on_h100() -> None:
    bf16 = predict(LLAMA_70B, config("H100-80GB", 2), CHAT, RELAXED, 8192, batch=1)
    fp8 = predict(LLAMA_70B, config("H100-80GB", 2, WeightFormat.FP8), CHAT, RELAXED, 8192, 1)
    assert fp8.decode_step_seconds < bf16.decode_step_seconds
    assert fp8.prefill_seconds < bf16.prefill_seconds


def test_moe_decodes_faster_than_a_dense_model_of_the_same_size_at_batch_1() -> None:
    mixtral = get_model("Mixtral-8x7B-Instruct-v0.1")
    dense = get_model("Llama-3.1-70B-Instruct")
    h100x2 = config("H100-80GB", 2)
    moe_step = predict(mixtral, h100x2, CHAT, RELAXED, 8192, batch=1).decode_step_seconds
    assert moe_step < predict(dense, h100x2, CHAT, RELAXED, 8192, batch=1).decode_step_seconds


def test_batch_argument_sets_the_decode_figures_only() -> None:
    at_slo = predict(LLAMA_8B, config("L4"), CHAT, RELAXED, 8192)
    at_8 = predict(LLAMA_8B, config("L4"), CHAT, RELAXED, 8192, batch=8)
    assert at_8.batch == 8
    assert at_8.max_requests_per_second == at_slo.max_requests_per_second
    assert at_8.decode_tokens_per_second == pytest.approx(8 / at_8.decode_step_seconds)


def test_requests_longer_than_max_model_len_get_no_capacity() -> None:
    prediction = predict(LLAMA_8B, config("H100-80GB"), RequestShape(8000, 500), RELAXED, 8192)
    assert prediction.max_requests_per_second == 0.0
    assert "exceeds maxModelLen 8192" in prediction.reason


def test_nonsense_request_is_an_input_error() -> None:
    with pytest.raises(InputError):
        predict(LLAMA_8B, config("L4"), RequestShape(0, 10), RELAXED, 8192)


def test_predict_is_fast_enough_for_the_solver() -> None:
    h100 = config("H100-80GB")
    start = time.perf_counter()
    for _ in range(500):
        predict(LLAMA_8B, h100, CHAT, RELAXED, 8192)
    assert (time.perf_counter() - start) / 500 < 1e-3
