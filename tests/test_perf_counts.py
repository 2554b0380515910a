"""Parameter, byte and FLOP counts from the architecture, checked against known figures."""

from __future__ import annotations

import dataclasses

import pytest

from gpumix.catalog import get_model
from gpumix.perf.counts import (
    active_expert_fraction,
    gemm_flops,
    layer_bytes_read,
    layer_parameters,
    lm_head_bytes,
    weight_bytes,
)
from gpumix.perf.h200 import measurements
from gpumix.perf.values import WeightFormat

LLAMA_8B = get_model("meta-llama/Llama-3.1-8B-Instruct")
QWEN_7B = get_model("Qwen/Qwen2.5-7B-Instruct")
MISTRAL_7B = get_model("mistralai/Mistral-7B-Instruct-v0.3")


def test_llama_8b_layers_match_the_h200_file_s_count() -> None:
    counted = measurements()["param_counts_llama_3_1_8b"]["layers"]
    assert layer_parameters(LLAMA_8B) == pytest.approx(counted, rel=0.001)


def test_a_decode_step_streams_the_layers_and_lm_head_not_the_input_embedding() -> None:
    streamed = layer_bytes_read(LLAMA_8B, WeightFormat.BF16, 1) + lm_head_bytes(LLAMA_8B)
    assert streamed == pytest.approx(15.01e9, rel=0.002)  # not 16.06 GB
    assert weight_bytes(LLAMA_8B, WeightFormat.BF16) == pytest.approx(16.06e9, rel=0.002)


@pytest.mark.parametrize(("model", "overcount"), [(LLAMA_8B, 0.15), (QWEN_7B, 0.17)])
def test_prefill_flops_count_lm_head_once_per_prompt(model, overcount) -> None:
    """Counting every parameter for every prompt token overstates prefill by 15-17 %."""
    tokens = 2048
    naive = 2 * model.parameters_billions * 1e9 * tokens
    assert naive / gemm_flops(model, tokens, sampled=1) - 1 == pytest.approx(overcount, abs=0.01)


def test_mistral_s_small_vocabulary_leaves_more_of_it_in_the_layers() -> None:
    """Same layer shapes as Llama-3.1-8B, a quarter of the vocabulary: same layers, smaller
    lm_head, so a decode step streams less for the same reason, not by a separate fit."""
    assert layer_parameters(MISTRAL_7B) == pytest.approx(layer_parameters(LLAMA_8B), rel=0.01)
    assert lm_head_bytes(MISTRAL_7B) == pytest.approx(lm_head_bytes(LLAMA_8B) / 3.91, rel=0.01)


def test_quantised_checkpoints_keep_embeddings_in_16_bits() -> None:
    fp8 = weight_bytes(LLAMA_8B, WeightFormat.FP8)
    assert fp8 == pytest.approx(6.98e9 + 2 * 1.05e9, rel=0.005)  # 9.08 GB, not 8.03


def test_tied_embeddings_are_stored_once() -> None:
    tied = dataclasses.replace(LLAMA_8B, tied_embeddings=True, parameters_billions=7.505)
    assert layer_parameters(tied) == pytest.approx(layer_parameters(LLAMA_8B), rel=0.001)
    assert weight_bytes(tied, WeightFormat.BF16) < weight_bytes(LLAMA_8B, WeightFormat.BF16)


def test_mixtral_routes_each_token_to_two_of_eight_experts() -> None:
    mixtral = get_model("mistralai/Mixtral-8x7B-Instruct-v0.1")
    assert active_expert_fraction(mixtral) == pytest.approx(2 / 8, abs=0.01)
    one, many = (layer_bytes_read(mixtral, WeightFormat.BF16, n) for n in (1, 256))
    assert one < 0.35 * many  # one token touches two experts; 256 touch all eight
    assert many == pytest.approx(layer_parameters(mixtral) * 2, rel=0.001)
