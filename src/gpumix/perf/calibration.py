"""Published vLLM measurements and what the model predicts for them.

Run ``python -m gpumix.perf.calibration`` (``make calibrate``) to print the Markdown tables
kept in docs/perf-model.md: these points, then the H200 points of :mod:`gpumix.perf.h200`.
Every entry names its source; lengths a source does not state are marked as assumed in
``note``. The tests hold every prediction within :data:`CALIBRATION_TOLERANCE` of the
published value.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from gpumix.catalog import get_gpu, get_model
from gpumix.perf import h200
from gpumix.perf.serving import ReplicaModel
from gpumix.perf.values import RequestShape, ServingConfig, WeightFormat

# Single-run blog measurements on different vLLM versions (0.6 to 0.23; vLLM 0.6 alone
# doubled throughput per Lambda's report) with partly unstated prompt lengths: a model within
# 25 % of them is as close as the measurements agree with each other.
CALIBRATION_TOLERANCE = 0.25


class Metric(StrEnum):
    # mean time per output token with `concurrency` sequences decoding together
    TPOT_MS = "TPOT ms"
    # output tokens/s of a closed loop keeping `concurrency` requests in flight
    OUTPUT_TOKENS_PER_SECOND = "output tok/s"


@dataclass(frozen=True)
class Measurement:
    source: str
    model: str
    gpu: str
    concurrency: int
    input_tokens: int
    output_tokens: int
    metric: Metric
    published: float
    note: str = ""
    tensor_parallel: int = 1
    weight_format: WeightFormat = WeightFormat.BF16
    # False when all requests arrived at once, so their prefills ran before decoding
    prefills_interleaved: bool = True


INFERENCEBENCH = "InferenceBench concurrency-sweep recipe (yobitelcomm.github.io/bench), vLLM 0.21"
MUSGRAVE = (
    "J. Musgrave, 'vLLM throughput-latency sweep on NVIDIA A100' (johnmusgrave.com), vLLM 0.23"
)
DATABASEMART = "databasemart.com, 'A40 vLLM Benchmark: 7B to 14B LLMs', 50 concurrent requests"
RAHMAN = "M. Rahman, Mistral-7B on RTX 4090 capacity planning (mushfiqrahman.dev/?p=1668)"

MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement(INFERENCEBENCH, "meta-llama/Llama-3.1-8B-Instruct", "H100-80GB", 1, 256, 256,
                Metric.TPOT_MS, 6.48, "p50; chatbot-short lengths not stated, 256/256 assumed"),
    Measurement(INFERENCEBENCH, "meta-llama/Llama-3.1-8B-Instruct", "H100-80GB", 4, 256, 256,
                Metric.TPOT_MS, 6.59, "p50; chatbot-short lengths not stated, 256/256 assumed"),
    Measurement(MUSGRAVE, "meta-llama/Llama-3.1-8B-Instruct", "A100-40GB", 1, 1024, 128,
                Metric.TPOT_MS, 1000 / 75, "'about 75 tokens/sec' at concurrency 1"),
    Measurement(DATABASEMART, "meta-llama/Llama-3.1-8B-Instruct", "A40", 50, 100, 443,
                Metric.TPOT_MS, 35.96, "median; 600 requested, 443 generated on average",
                prefills_interleaved=False),
    Measurement(RAHMAN, "mistralai/Mistral-7B-Instruct-v0.3", "RTX-4090", 4, 256, 128,
                Metric.OUTPUT_TOKENS_PER_SECOND, 210),
    Measurement(RAHMAN, "mistralai/Mistral-7B-Instruct-v0.3", "RTX-4090", 8, 256, 128,
                Metric.OUTPUT_TOKENS_PER_SECOND, 377),
    Measurement(RAHMAN, "mistralai/Mistral-7B-Instruct-v0.3", "RTX-4090", 16, 256, 128,
                Metric.OUTPUT_TOKENS_PER_SECOND, 644),
)  # fmt: skip


def predicted(measurement: Measurement) -> float:
    """The model's figure for the measured setting.

    A closed loop keeps C requests in flight: when one finishes, the next starts, so (C - 1)/O
    of the others' prompts land per step (chunked prefill): TPOT is the mean step of C decodes
    carrying that many prompts (``ReplicaModel.mean_step``). A request's own prompt runs in one
    step with the other C - 1 decodes, so output tokens/s = C * O / (that step + O * TPOT).
    When all requests arrive together (the A40 run) their prompts run before decoding starts
    and the decode steps carry none.
    """
    replica = ReplicaModel(
        get_model(measurement.model),
        ServingConfig(
            get_gpu(measurement.gpu), measurement.tensor_parallel, measurement.weight_format
        ),
        RequestShape(measurement.input_tokens, measurement.output_tokens),
    )
    concurrency = measurement.concurrency
    prompt, output = measurement.input_tokens, measurement.output_tokens
    others = (concurrency - 1) / output if measurement.prefills_interleaved else 0.0
    step = replica.mean_step(concurrency, others, prompt)
    if measurement.metric is Metric.TPOT_MS:
        return step * 1000
    own_prompt = replica.step_with_chunks(concurrency - 1, 1, prompt)
    return concurrency * output / (own_prompt + output * step)


def relative_error(measurement: Measurement) -> float:
    return (predicted(measurement) - measurement.published) / measurement.published


def markdown_table(measurements: Sequence[Measurement] = MEASUREMENTS) -> str:
    lines = [
        "| Model | GPU | C | In/Out | Metric | Published | Predicted | Error | Source |",
        "|---|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for m in measurements:
        source = f"{m.source}; {m.note}" if m.note else m.source
        lines.append(
            f"| {m.model.split('/')[-1]} | {m.gpu} | {m.concurrency} | "
            f"{m.input_tokens}/{m.output_tokens} | {m.metric} | {m.published:.2f} | "
            f"{predicted(m):.2f} | {relative_error(m) * 100:+.1f} % | {source} |"
        )
    return "\n".join(lines)


def main() -> int:
    print("## Published vLLM measurements\n")
    print(markdown_table())
    worst = max(abs(relative_error(m)) for m in MEASUREMENTS)
    print(f"\nlargest error {worst * 100:.1f} % (tolerance {CALIBRATION_TOLERANCE * 100:.0f} %)")
    print("\n## H200 measurements (GPU-side times, no vLLM)\n")
    points = h200.points()
    print(h200.markdown_table(points))
    rms = h200.rms_error(points)
    worst_decode = max(abs(point.error) for point in points if point.kind == "decode")
    print(
        f"\nRMS error {rms * 100:.1f} % over {len(points)} points (limit "
        f"{h200.RMS_ERROR_LIMIT * 100:.0f} %); largest decode-step error "
        f"{worst_decode * 100:.1f} % (limit {h200.DECODE_ERROR_LIMIT * 100:.0f} %)"
    )
    passed = (
        worst <= CALIBRATION_TOLERANCE
        and rms <= h200.RMS_ERROR_LIMIT
        and worst_decode <= h200.DECODE_ERROR_LIMIT
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
