"""Continuous-batching steady state: the largest batch that meets the SLO, and its rate.

With B sequences decoding, step time s(B), prefill time p, O output tokens per request:

- every request's prefill steals p from the decode steps of the B running sequences, and B
  requests finish (so B new prefills run) every O steps, so each sequence sees
  TPOT_eff(B) = s(B) + B * p / O
- a request lives p + O * TPOT_eff(B), so Little's law gives
  requests/s(B) = B / (p + O * s(B) + B * p)
- a new request waits for the running step, queues behind other prefills (M/D/1 with
  utilisation rho = requests/s * p) and runs its own prefill:
  TTFT(B) = s(B) + p + rho * p / (2 * (1 - rho))

All three grow with B (s(B)/B falls as B grows), so the SLO-limited batch is found by
binary search between 1 and min(max_num_seqs, KV capacity / (I + O)).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpumix.catalog import ModelArchitecture
from gpumix.perf.timing import decode_step_seconds, prefill_seconds
from gpumix.perf.values import LatencySLO, RequestShape, ServingConfig


@dataclass(frozen=True)
class SteadyState:
    batch: int
    decode_step_seconds: float
    effective_tpot_seconds: float
    ttft_seconds: float
    requests_per_second: float


class ReplicaModel:
    """One replica serving one request class; cheap to build, pure to evaluate."""

    def __init__(self, model: ModelArchitecture, config: ServingConfig, shape: RequestShape):
        self.model = model
        self.config = config
        self.shape = shape
        self.prefill_seconds = prefill_seconds(model, config, shape.input_tokens)
        # sequences are on average half-way through their output
        self.mean_context_tokens = shape.input_tokens + shape.output_tokens / 2

    def decode_step(self, batch: int) -> float:
        return decode_step_seconds(self.model, self.config, batch, self.mean_context_tokens)

    def at_batch(self, batch: int) -> SteadyState:
        p = self.prefill_seconds
        output = self.shape.output_tokens
        step = self.decode_step(batch)
        requests_per_second = batch / (p + output * step + batch * p)
        utilisation = min(requests_per_second * p, 0.999)
        queueing = utilisation * p / (2 * (1 - utilisation))
        return SteadyState(
            batch=batch,
            decode_step_seconds=step,
            effective_tpot_seconds=step + batch * p / output,
            ttft_seconds=step + p + queueing,
            requests_per_second=requests_per_second,
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
