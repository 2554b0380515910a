"""How long one engine step takes on the simulated hardware: `gpumix.perf`, step by step.

The simulator charges each step exactly what the planner's performance model charges a
replica (``gpumix.perf.serving``): a decode step of the running batch at its mean context,
``decode_step_seconds(B, context)``, plus ``prefill_seconds(chunk)`` for every prompt chunk
scheduled in the same step. So a replica the planner sized for batch B decodes at the
planner's TPOT(B), and one pushed past its capacity queues and misses its SLO the way the
model (and, to the model's accuracy, vLLM) says it would. When ``gpumix.perf`` improves (per-
phase rooflines, chunked-prefill mixing), the simulator follows without change here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from gpumix.catalog import ModelArchitecture
from gpumix.perf import ServingConfig, decode_step_seconds, kv_capacity_tokens, prefill_seconds
from gpumix.perf.predict import configuration_problem


@dataclass(frozen=True)
class StepTiming:
    model: ModelArchitecture
    config: ServingConfig
    slowdown_factor: float = 1.0

    def decode_seconds(self, batch: int, mean_context_tokens: float) -> float:
        if batch <= 0:
            return 0.0
        return decode_step_seconds(self.model, self.config, batch, mean_context_tokens)

    def prefill_seconds(self, chunk_tokens: int) -> float:
        return _prefill_seconds(self.model, self.config, chunk_tokens)

    def step_seconds(
        self, decode_batch: int, mean_context_tokens: float, prefill_chunks: Sequence[int]
    ) -> float:
        seconds = self.decode_seconds(decode_batch, mean_context_tokens)
        seconds += sum(self.prefill_seconds(chunk) for chunk in prefill_chunks)
        return seconds * self.slowdown_factor

    def kv_capacity_tokens(self) -> int:
        return kv_capacity_tokens(self.model, self.config)

    def startup_problem(self, max_model_len: int) -> str:
        """Why vLLM would refuse to start ("" when it would start), in vLLM's words."""
        problem = configuration_problem(self.model, self.config)
        if problem:
            return problem
        capacity = self.kv_capacity_tokens()
        if capacity <= 0:
            return (
                f"the weights of {self.model.name} do not fit on {self.config.tensor_parallel}"
                f" x {self.config.gpu.name} ({self.config.weight_format})"
            )
        if max_model_len > capacity:
            return (
                f"The model's max seq len ({max_model_len}) is larger than the maximum number"
                f" of tokens that can be stored in KV cache ({capacity}). Try increasing"
                " `gpu_memory_utilization` or decreasing `max_model_len` when initializing"
                " the engine."
            )
        return ""


@functools.lru_cache(maxsize=4096)
def _prefill_seconds(model: ModelArchitecture, config: ServingConfig, tokens: int) -> float:
    # prompts of one class have one length, so a small cache saves almost every call
    return prefill_seconds(model, config, tokens)
