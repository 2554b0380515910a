"""Continuous batching with chunked prefill: the largest batch that meets the SLO, and its rate.

vLLM V1 fills every step up to a token budget T (``--max-num-batched-tokens``): one token for
each of the B decoding sequences, then chunks of waiting prompts. A prompt therefore does not
stop the decodes; it makes the step that carries it longer, and that step reads the weights
once for both. With I/O input/output tokens per request, in steady state B/O sequences finish
per step and as many prompts start. A prompt of I tokens runs in k = ceil(I / (T - B)) chunks,
and x(B) = (B/O) * k chunks land per step on average. Chunks come whole, so a step carries
floor(x) or ceil(x) of them, and with S_j(B) the step of B decodes and j chunks:

- TPOT(B) = s(B) = S_floor(x)(B) + frac(x) * (S_ceil(x)(B) - S_floor(x)(B)), the mean step;
- requests/s(B) = B / (O * s(B)) (Little's law over the decoding sequences);
- TTFT(B) = s(B)/2 (the step running when the request arrives) + k * s_own(B) (the steps
  carrying its chunks, each the mean step with at least one chunk) + the M/D/1 wait behind
  other prompts for the prefill budget, whose utilisation is rho = (B/O) * I / (T - B).

The mean is taken over steps, not over a step of the mean work: a step is memory-bound until
its tokens make the GEMMs compute-bound, so a whole prompt in one step costs far more than
1/O of it in every step (the simulator, which runs whole chunks, holds the model to this).

All three grow with B (a step's time is convex in its tokens), so the SLO-
limited batch is found by binary search between 1 and min(max_num_seqs, KV capacity /
(I + O)); a batch whose prompts would need the whole budget (rho >= 1) never meets an SLO.
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

    def chunking(self, batch: int) -> tuple[int, float] | None:
        """(chunks per prompt, tokens per chunk) with `batch` decodes, or None when the decodes
        leave no budget for prompts."""
        budget = self.token_budget - batch
        if budget <= 0:
            return None
        chunks = math.ceil(self.shape.input_tokens / budget)
        return chunks, self.shape.input_tokens / chunks

    def step_with_chunks(self, batch: int, chunks: int, chunk_tokens: float) -> float:
        """A step of `batch` decodes carrying `chunks` prompt chunks of `chunk_tokens` each."""
        prompt_tokens = chunks * chunk_tokens
        work = StepWork(
            decode_sequences=batch,
            decode_context=self.mean_context_tokens,
            prefill_tokens=prompt_tokens,
            # chunk tokens attend to half the prompt on average
            prefill_pairs=prompt_tokens * self.shape.input_tokens / 2,
            prompts_sampled=prompt_tokens / self.shape.input_tokens,
        )
        return step_seconds(self.model, self.config, work)

    def mean_step(self, batch: int, chunks_per_step: float, chunk_tokens: float) -> float:
        """The mean step when `chunks_per_step` chunks land per step on average.

        Chunks come whole, so steps carry floor(x) or ceil(x) of them, and the mean is taken
        over those steps. Averaging the work instead (x chunks in every step) would hide a
        prompt's math behind the weight stream that a memory-bound step has spare: one prompt
        may fit in that slack, two in one step do not.
        """
        fewer = math.floor(chunks_per_step)
        share_of_more = chunks_per_step - fewer
        step = self.step_with_chunks(batch, fewer, chunk_tokens)
        if share_of_more > 0:
            more = self.step_with_chunks(batch, fewer + 1, chunk_tokens)
            step += share_of_more * (more - step)
        return step

    def at_batch(self, batch: int) -> SteadyState:
        output = self.shape.output_tokens
        prompts_per_step = batch / output
        chunking = self.chunking(batch)
        if chunking is None:
            decode = self.decode_step(batch)
            return SteadyState(batch, decode, decode, math.inf, batch / (output * decode), 1.0)
        chunks, chunk_tokens = chunking
        step = self.mean_step(batch, prompts_per_step * chunks, chunk_tokens)
        utilisation = prompts_per_step * self.shape.input_tokens / (self.token_budget - batch)
        requests_per_second = batch / (output * step)
        if utilisation >= 1:
            return SteadyState(batch, step, step, math.inf, requests_per_second, utilisation)
        # the steps carrying a new prompt's chunks carry the others' too
        own_step = self.mean_step(batch, max(1.0, prompts_per_step * chunks), chunk_tokens)
        own_prefill = chunks * own_step
        queueing = utilisation * own_prefill / (2 * (1 - utilisation))
        return SteadyState(
            batch=batch,
            step_seconds=step,
            effective_tpot_seconds=step,
            ttft_seconds=step / 2 + own_prefill + queueing,
            requests_per_second=requests_per_second,
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
