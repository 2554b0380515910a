"""How long one engine step takes on the simulated hardware: `gpumix.perf`, step by step.

The simulator charges each step exactly what the planner's performance model charges a
replica: ``gpumix.perf.timing.step_seconds`` of the step's work, the decodes of the running
batch at their mean context and the prompt chunks scheduled with them, in one step that reads
the weights once (vLLM's chunked prefill). So a replica the planner sized for batch B decodes
at the planner's TPOT(B), and one pushed past its capacity queues and misses its SLO the way
the model (and, to the model's accuracy, vLLM) says it would.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from gpumix.catalog import ModelArchitecture
from gpumix.perf import ServingConfig, decode_step_seconds, kv_capacity_tokens
from gpumix.perf.predict import configuration_problem
from gpumix.perf.timing import StepWork, step_seconds


@dataclass(frozen=True)
class PromptChunk:
    """`tokens` of a prompt after `done` of its tokens ran; `last`: the prompt ends here."""

    tokens: int
    done: int = 0
    last: bool = True


@dataclass(frozen=True)
class StepTiming:
    model: ModelArchitecture
    config: ServingConfig
    slowdown_factor: float = 1.0

    def decode_seconds(self, batch: int, mean_context_tokens: float) -> float:
        if batch <= 0:
            return 0.0
        return decode_step_seconds(self.model, self.config, batch, mean_context_tokens)

    def step_seconds(
        self, decode_batch: int, mean_context_tokens: float, prefill_chunks: Sequence[PromptChunk]
    ) -> float:
        work = StepWork(
            decode_sequences=decode_batch,
            decode_context=mean_context_tokens,
            prefill_tokens=sum(chunk.tokens for chunk in prefill_chunks),
            # each chunk token attends to the prompt before it and half the chunk
            prefill_pairs=sum(c.tokens * (c.done + c.tokens / 2) for c in prefill_chunks),
            prompts_sampled=sum(1 for chunk in prefill_chunks if chunk.last),
        )
        return _step_seconds(self.model, self.config, work) * self.slowdown_factor

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
def _step_seconds(model: ModelArchitecture, config: ServingConfig, work: StepWork) -> float:
    # a steady load repeats the same few steps (one batch size, one prompt length), so a small
    # cache saves most calls
    return step_seconds(model, config, work)
