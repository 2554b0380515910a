"""The H200 measurements and what the model predicts for each of them.

``data/h200-llama-3.1-8b-bf16.json`` holds GPU-side times of a Llama-3.1-8B-shaped decoder on
one H200 (its ``about`` field says what ran): whole decode steps, prefills, decode steps
sharing one prompt (chunked prefill), and the weight GEMMs alone in bf16 and fp8. Each is
compared with the model's time for the same work, so every term is checked where it
dominates: the weight stream at small batch, GEMM math at large batch, the KV read at long
context, prefill math for long prompts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from gpumix.catalog import get_gpu, get_model
from gpumix.perf.timing import StepWork, gemm_seconds, step_seconds
from gpumix.perf.values import ServingConfig, WeightFormat

DATA_FILE = "h200-llama-3.1-8b-bf16.json"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
GPU = "H200-141GB"

# The limits the tests hold (issue 9): over all H200 points, and over the decode steps.
RMS_ERROR_LIMIT = 0.05
DECODE_ERROR_LIMIT = 0.10


@dataclass(frozen=True)
class H200Point:
    kind: str  # decode, prefill, mixed, gemm bf16, gemm fp8
    setting: str
    measured_ms: float
    predicted_ms: float

    @property
    def error(self) -> float:
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


@cache
def measurements() -> dict[str, Any]:
    text = resources.files("gpumix.perf").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _config(weight_format: WeightFormat = WeightFormat.BF16) -> ServingConfig:
    return ServingConfig(get_gpu(GPU), 1, weight_format)


def _prompts(sequences: int, tokens: int) -> StepWork:
    return StepWork(
        prefill_tokens=sequences * tokens,
        prefill_pairs=sequences * tokens * tokens / 2,
        prompts_sampled=sequences,
    )


def points() -> tuple[H200Point, ...]:
    data = measurements()
    model = get_model(MODEL)
    bf16, fp8 = _config(), _config(WeightFormat.FP8)
    found: list[H200Point] = []
    for row in data["decode_step"]:
        work = StepWork(decode_sequences=row["batch"], decode_context=row["context"])
        found.append(
            H200Point(
                "decode",
                f"B={row['batch']} context {row['context']}",
                row["step_ms"],
                step_seconds(model, bf16, work) * 1000,
            )
        )
    for row in data["prefill"]:
        work = _prompts(row["sequences"], row["tokens_each"])
        found.append(
            H200Point(
                "prefill",
                f"{row['sequences']} x {row['tokens_each']} tokens",
                row["ms"],
                step_seconds(model, bf16, work) * 1000,
            )
        )
    for row in data["mixed_step_decode_plus_one_prefill"]:
        prompt = _prompts(1, row["prefill_tokens"])
        work = StepWork(
            decode_sequences=row["batch"],
            decode_context=row["context"],
            prefill_tokens=prompt.prefill_tokens,
            prefill_pairs=prompt.prefill_pairs,
            prompts_sampled=1,
        )
        found.append(
            H200Point(
                "mixed",
                f"B={row['batch']} context {row['context']} + {row['prefill_tokens']}-token prompt",
                row["mixed_ms"],
                step_seconds(model, bf16, work) * 1000,
            )
        )
    for kind, config, rows in (
        ("gemm bf16", bf16, data["weight_gemms_alone_bf16"]),
        ("gemm fp8", fp8, data["weight_gemms_alone_fp8"]),
    ):
        for row in rows:
            work = StepWork(decode_sequences=row["batch"])
            found.append(
                H200Point(
                    kind,
                    f"M={row['batch']}",
                    row["ms"],
                    gemm_seconds(model, config, work) * 1000,
                )
            )
    return tuple(found)


def rms_error(found: Sequence[H200Point]) -> float:
    return math.sqrt(sum(point.error**2 for point in found) / len(found))


def markdown_table(found: Sequence[H200Point]) -> str:
    lines = [
        "| Kind | Setting | Measured ms | Predicted ms | Error |",
        "|---|---|---:|---:|---:|",
    ]
    for point in found:
        lines.append(
            f"| {point.kind} | {point.setting} | {point.measured_ms:.2f} | "
            f"{point.predicted_ms:.2f} | {point.error * 100:+.1f} % |"
        )
    return "\n".join(lines)
