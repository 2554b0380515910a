"""`gpumix profile`: what one replica of each GPU configuration can serve for a request class.

Defaults: every catalogue GPU, tensor parallel 1/2/4/8 up to the GPUs of one node, bf16
weights only (the LLMService default ``weightFormats: [bf16]``; ask for others with
``--weight-format``), 512 in / 256 out, TTFT 2000 ms, TPOT 100 ms, maxModelLen 8192.

fp8 on a GPU without fp8 tensor cores is an input error when the user named that GPU; when
the GPU list is the default, such rows are simply left out.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from gpumix.catalog import GPUType, ModelArchitecture, get_gpu, get_model, gpu_catalog
from gpumix.errors import InputError, UnknownNameError
from gpumix.perf import LatencySLO, Prediction, RequestShape, ServingConfig, WeightFormat, predict

DEFAULT_TENSOR_PARALLEL = (1, 2, 4, 8)
DEFAULT_WEIGHT_FORMATS = (WeightFormat.BF16,)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="predict per-replica capacity of GPU configurations for a model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="catalogue HF id or short name")
    parser.add_argument("--gpu", action="append", default=[], metavar="TYPE")
    parser.add_argument("--tp", action="append", type=int, default=[], metavar="N")
    parser.add_argument("--weight-format", action="append", default=[], metavar="F")
    parser.add_argument("--input-tokens", type=int, default=512, metavar="I")
    parser.add_argument("--output-tokens", type=int, default=256, metavar="O")
    parser.add_argument("--ttft-ms", type=float, default=2000.0, metavar="X")
    parser.add_argument("--tpot-ms", type=float, default=100.0, metavar="Y")
    parser.add_argument("--max-model-len", type=int, default=8192, metavar="L")
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        metavar="B",
        help="report decode figures at this batch (default: SLO-limited batch)",
    )
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.set_defaults(run=run)  # fmt: skip


def _weight_formats(names: Sequence[str]) -> list[WeightFormat]:
    formats = []
    for name in names or DEFAULT_WEIGHT_FORMATS:
        try:
            formats.append(WeightFormat(name.lower()))
        except ValueError:
            raise UnknownNameError(
                "weight format", name, [f.value for f in WeightFormat], field="--weight-format"
            ) from None
    return list(dict.fromkeys(formats))


def _check_positive(args: argparse.Namespace) -> None:
    checks = [
        ("--input-tokens", args.input_tokens),
        ("--output-tokens", args.output_tokens),
        ("--ttft-ms", args.ttft_ms),
        ("--tpot-ms", args.tpot_ms),
        ("--max-model-len", args.max_model_len),
        *([("--batch", args.batch)] if args.batch is not None else []),
        *[("--tp", tp) for tp in args.tp],
    ]
    for flag, value in checks:
        if value <= 0:
            raise InputError(f"must be positive, got {value}", field=flag)


def build_configs(
    gpu_names: Sequence[str], tensor_parallel: Sequence[int], formats: Sequence[WeightFormat]
) -> list[ServingConfig]:
    explicit_gpus = bool(gpu_names)
    gpus: list[GPUType] = [get_gpu(name) for name in gpu_names] or list(gpu_catalog().values())
    if explicit_gpus and WeightFormat.FP8 in formats:
        for gpu in gpus:
            if not gpu.supports_fp8:
                raise InputError(
                    f"weight format fp8 is impossible on {gpu.name} (no fp8 tensor cores)",
                    field="--weight-format",
                )
    configs = []
    for gpu in dict.fromkeys(gpus):
        sizes = tensor_parallel or [tp for tp in DEFAULT_TENSOR_PARALLEL if tp <= gpu.gpus_per_node]
        for tp in sizes:
            for weight_format in formats:
                if weight_format is WeightFormat.FP8 and not gpu.supports_fp8:
                    continue
                configs.append(ServingConfig(gpu, tp, weight_format))
    return configs


def row(config: ServingConfig, prediction: Prediction) -> dict[str, Any]:
    return {
        "gpuType": config.gpu.name,
        "tensorParallel": config.tensor_parallel,
        "weightFormat": config.weight_format.value,
        "fits": prediction.fits,
        "maxConcurrentSequences": prediction.max_concurrent_sequences,
        "prefillSeconds": round(prediction.prefill_seconds, 6),
        "decodeStepSeconds": round(prediction.decode_step_seconds, 6),
        "decodeBatch": prediction.batch,
        "decodeTokensPerSecond": round(prediction.decode_tokens_per_second, 1),
        "maxRequestsPerSecond": round(prediction.max_requests_per_second, 3),
        "reason": prediction.reason,
    }


TABLE_COLUMNS = (
    # header, key, width, format
    ("GPU", "gpuType", 10, "{}"),
    ("TP", "tensorParallel", 2, "{}"),
    ("FMT", "weightFormat", 4, "{}"),
    ("FIT", "fits", 3, "{}"),
    ("MAXSEQ", "maxConcurrentSequences", 6, "{}"),
    ("PREFILL", "prefillSeconds", 7, "ms"),
    ("STEP", "decodeStepSeconds", 6, "ms"),
    ("BATCH", "decodeBatch", 5, "{}"),
    ("TOK/S", "decodeTokensPerSecond", 7, "{:.0f}"),
    ("REQ/S", "maxRequestsPerSecond", 7, "{:.2f}"),
)
TABLE_WIDTH = 100


def _cell(value: Any, fmt: str, fits: bool) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not fits:
        return "-"
    if fmt == "ms":
        return f"{value * 1000:.1f}" if value else "-"
    return fmt.format(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = " ".join(f"{title:<{width}}" for title, _, width, _ in TABLE_COLUMNS) + " REASON"
    lines = [header]
    for entry in rows:
        texts = [
            _cell(entry[key], fmt, entry["fits"] or index < 4)
            for index, (_, key, _, fmt) in enumerate(TABLE_COLUMNS)
        ]
        # identifying columns left-aligned, figures right-aligned
        cells = [
            f"{text:<{width}}" if index < 4 else f"{text:>{width}}"
            for index, (text, (_, _, width, _)) in enumerate(zip(texts, TABLE_COLUMNS, strict=True))
        ]
        line = " ".join(cells)
        reason = entry["reason"]
        room = TABLE_WIDTH - len(line) - 1
        if reason and len(reason) > room:
            # keep every line inside the terminal: the reason wraps onto its own line
            lines.append(line)
            lines.append(f"    {reason}")
        else:
            lines.append(f"{line} {reason}".rstrip())
    return "\n".join(lines)


def profile_rows(
    model: ModelArchitecture,
    configs: Sequence[ServingConfig],
    shape: RequestShape,
    slo: LatencySLO,
    max_model_len: int,
    batch: int | None,
) -> list[dict[str, Any]]:
    return [
        row(config, predict(model, config, shape, slo, max_model_len, batch)) for config in configs
    ]


def run(args: argparse.Namespace) -> int:
    _check_positive(args)
    model = get_model(args.model)
    configs = build_configs(args.gpu, args.tp, _weight_formats(args.weight_format))
    shape = RequestShape(args.input_tokens, args.output_tokens)
    slo = LatencySLO(args.ttft_ms / 1000, args.tpot_ms / 1000)
    rows = profile_rows(model, configs, shape, slo, args.max_model_len, args.batch)
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(
            f"{model.name}: {shape.input_tokens} in / {shape.output_tokens} out, "
            f"TTFT {args.ttft_ms:g} ms, TPOT {args.tpot_ms:g} ms, maxModelLen {args.max_model_len}"
        )
        print(format_table(rows))
    return 0
