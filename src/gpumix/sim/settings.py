"""What one simulated vLLM replica is: its served names, limits and hardware.

``parse_vllm_args`` reads the command line gpumix's Deployments give vLLM
(``--model``, ``--served-model-name``, ``--tensor-parallel-size``, ``--max-model-len``,
``--quantization``, ``--port`` and any user ``extraArgs``), so the pod runner can start the
simulator from the very container spec the operator applied. vLLM flags the simulator has no
use for are accepted and ignored, as the real server would accept them. The flags only the
simulator knows (``--gpu``, ``--warmup-seconds``, ``--slowdown-factor``,
``--default-max-tokens``) let a developer run it by hand.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from gpumix.errors import InputError

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
DEFAULT_GPU = "H100-80GB"
# vLLM's V1 defaults for online serving.
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
# A simulated model has no end-of-sequence token: a request without max_tokens "stops" after
# this many tokens, as if the model had emitted EOS.
DEFAULT_MAX_TOKENS = 256

# vLLM's --quantization values -> gpumix's weight formats (what the performance model prices).
QUANTIZATION_FORMATS = {
    "fp8": "fp8",
    "fbgemm_fp8": "fp8",
    "modelopt": "fp8",
    "compressed-tensors": "fp8",
    "awq": "int4",
    "awq_marlin": "int4",
    "gptq": "int4",
    "gptq_marlin": "int4",
    "bitsandbytes": "int4",
    "experts_int8": "int8",
}


@dataclass(frozen=True)
class SimSettings:
    model: str = DEFAULT_MODEL
    served_model_names: tuple[str, ...] = ()
    gpu: str = DEFAULT_GPU
    tensor_parallel_size: int = 1
    weight_format: str = "bf16"
    max_model_len: int | None = None  # None: vLLM's default, the KV capacity
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS
    port: int = 8000
    warmup_seconds: float = 0.0
    slowdown_factor: float = 1.0
    default_max_tokens: int = DEFAULT_MAX_TOKENS

    @property
    def names(self) -> tuple[str, ...]:
        """Names clients may ask for; vLLM labels its metrics with the first."""
        return self.served_model_names or (self.model,)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit; callers want an InputError
        raise InputError(f"vLLM arguments: {message}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def add_vllm_arguments(parser: argparse.ArgumentParser) -> None:
    """vLLM's flags that matter to the simulator, and the simulator's own."""
    parser.add_argument("--model", default=None)
    parser.add_argument("--served-model-name", nargs="+", default=None)
    parser.add_argument("--tensor-parallel-size", "-tp", type=_positive_int, default=1)
    parser.add_argument("--max-model-len", type=_positive_int, default=None)
    parser.add_argument("--quantization", "-q", default=None)
    parser.add_argument("--max-num-seqs", type=_positive_int, default=DEFAULT_MAX_NUM_SEQS)
    parser.add_argument(
        "--max-num-batched-tokens", type=_positive_int, default=DEFAULT_MAX_NUM_BATCHED_TOKENS
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--gpu", default=DEFAULT_GPU)
    parser.add_argument("--weight-format", default=None, choices=["bf16", "fp8", "int8", "int4"])
    parser.add_argument("--warmup-seconds", type=_non_negative_float, default=0.0)
    parser.add_argument("--slowdown-factor", type=float, default=1.0)
    parser.add_argument("--default-max-tokens", type=_positive_int, default=DEFAULT_MAX_TOKENS)


def parse_vllm_args(argv: list[str]) -> SimSettings:
    """Settings from a vLLM command line; unknown vLLM flags are ignored."""
    parser = _Parser(prog="vllm", add_help=False, allow_abbrev=False)
    parser.add_argument("model_tag", nargs="?", default=None)  # `vllm serve MODEL`
    add_vllm_arguments(parser)
    args, _unknown = parser.parse_known_args(argv)
    return settings_from_arguments(args)


def settings_from_arguments(args: argparse.Namespace) -> SimSettings:
    if args.slowdown_factor <= 0:
        raise InputError(
            f"vLLM arguments: --slowdown-factor must be positive, got {args.slowdown_factor}"
        )
    weight_format = args.weight_format or QUANTIZATION_FORMATS.get(
        (args.quantization or "").lower(), "bf16"
    )
    return SimSettings(
        model=args.model or getattr(args, "model_tag", None) or DEFAULT_MODEL,
        served_model_names=tuple(args.served_model_name or ()),
        gpu=args.gpu,
        tensor_parallel_size=args.tensor_parallel_size,
        weight_format=weight_format,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        port=args.port,
        warmup_seconds=args.warmup_seconds,
        slowdown_factor=args.slowdown_factor,
        default_max_tokens=args.default_max_tokens,
    )
