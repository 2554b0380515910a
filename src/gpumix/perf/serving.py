"""Continuous batching with chunked prefill: the largest batch that meets the SLO, and its rate.

vLLM V1 fills every step up to a token budget T (``--max-num-batched-tokens``): one token for
each of the B decoding sequences, then chunks of waiting prompts. A prompt therefore does not
stop the decodes; it makes the steps it shares longer, and the weights are read once for
both. With I/O input/output tokens per request, in steady state B/O sequences finish per
step and as many prompts start, so each step also carries P(B) = B * I / O prompt tokens:

- TPOT(B) = s(B), the time of a step of B decodes and P(B) prompt tokens
  (``gpumix.perf.timing.step_seconds``);
- requests/s(B) = B / (O * s(B)) (Little's law over the decoding sequences);
- TTFT(B) = s(B)/2 (the step running when the request arrives) + k * s_own(B) (the k =
  ceil(I / (T - B)) steps carrying its prompt, each with max(P(B), its chunk) prompt tokens)
  + the M/D/1 wait behind other prompts for the prefill budget, whose utilisation is
  rho = P(B) / (T - B).

All three grow with B, so the SLO-limited batch is found by binary search between 1 and
min(max_num_seqs, KV capacity / (I + O)); a batch whose prompts would need the whole budget
(rho >= 1) never meets an SLO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpumix.catalog import ModelArchitecture
from gpumix.perf.constants import MAX_NUM_BATCHED_TOKENS
from gpumix.perf.timing import StepWork, decode_step_seconds, prefill_seconds, step_seconds
from gpumix.perf.values import LatencySLO, RequestShape, ServingConfig


@dataclass(frozen=True)
class SteadyState:
    batch: int
    step_seconds: float  # a step with its share of prompt work: the TPOT
    effective_tpot_seconds: float
    ttft_seconds: float
    requests_per_second: float
    prefill_budget_utilisation: float


class ReplicaModel:
    """One replica serving one request class; cheap to build, pure to evaluate."""

    def __init__(
        self,
        model: ModelArchitecture,
        config: ServingConfig,
        shape: RequestShape,
        max_num_batched_tokens: int = MAX_NUM_BATCHED_TOKENS,
    ):
        self.model = model
        self.config = config
        self.shape = shape
        self.token_budget = max_num_batched_tokens
        # a prompt alone in a step, for reports; serving mixes it with decodes
        self.prefill_seconds = prefill_seconds(model, config, shape.input_tokens)
        # sequences are on average half-way through their output
        self.mean_context_tokens = shape.input_tokens + shape.output_tokens / 2

    def decode_step(self, batch: int) -> float:
        """A step of `batch` decodes and no prompt work."""
        return decode_step_seconds(self.model, self.config, batch, self.mean_context_tokens)

    def _step(self, batch: int, prompt_tokens: float, prompts_sampled: float) -> float:
        work = StepWork(
            decode_sequences=batch,
            decode_context=self.mean_context_tokens,
            prefill_tokens=prompt_tokens,
            # prompt tokens attend to half their prompt on average
            prefill_pairs=prompt_tokens * self.shape.input_tokens / 2,
            prompts_sampled=prompts_sampled,
        )
        return step_seconds(self.model, self.config, work)

    def at_batch(self, batch: int) -> SteadyState:
        prompt = self.shape.input_tokens
        output = self.shape.output_tokens
        prompts_per_step = batch / output
        prompt_tokens = prompts_per_step * prompt
        step = self._step(batch, prompt_tokens, prompts_per_step)
        budget_for_prompts = self.token_budget - batch
        if budget_for_prompts <= 0 or prompt_tokens >= budget_for_prompts:
            return SteadyState(batch, step, step, math.inf, batch / (output * step), 1.0)
        utilisation = prompt_tokens / budget_for_prompts
        chunk = min(prompt, budget_for_prompts)
        steps_per_prompt = math.ceil(prompt / budget_for_prompts)
        own_step = self._step(batch, max(prompt_tokens, chunk), max(prompts_per_step, 1.0))
        own_prefill = steps_per_prompt * own_step
        queueing = utilisation * own_prefill / (2 * (1 - utilisation))
        return SteadyState(
            batch=batch,
            step_seconds=step,
            effective_tpot_seconds=step,
            ttft_seconds=step / 2 + own_prefill + queueing,
            requests_per_second=batch / (output * step),
            prefill_budget_utilisation=utilisation,
        )

    def largest_batch_within(self, slo: LatencySLO, batch_limit: int) -> SteadyState | None:
        """The steady state at the largest batch <= batch_limit that meets the SLO."""

        def meets(state: SteadyState) -> bool:
            return (
                state.effective_tpot_seconds <= slo.tpot_seconds
                and state.ttft_seconds <= slo.ttft_seconds
            )

        best = self.at_batch(1)
        if batch_limit < 1 or not meets(best):
            return None
        low, high = 1, batch_limit  # invariant: low meets the SLO
        while low < high:
            middle = (low + high + 1) // 2
            state = self.at_batch(middle)
            if meets(state):
                low, best = middle, state
            else:
                high = middle - 1
        return best
