"""Capacity factors from live latencies: the performance model corrects itself (pure).

For each running configuration (model, GPU type, tensor-parallel size, weight format) the
simulators or vLLM report, over a window, the mean time per output token, the mean batch (the
running requests) and the mean prompt and output lengths. :func:`predicted_tpot` is what
:mod:`gpumix.perf` says the TPOT is at that batch and shape; the capacity factor is predicted /
measured. A replica whose tokens come twice as slowly as predicted serves about half the
requests within the SLO, so the planner multiplies that configuration's throughputs by it.

Bounded (:data:`MIN_FACTOR` .. :data:`MAX_FACTOR`): a broken metric must not make a GPU look
free or useless. Smoothed, and applied only when it moves by more than :data:`DEAD_BAND`
(relative) from the factor in use, so measurement noise never re-plans the fleet. A window
with fewer than :data:`MIN_REQUESTS` completed requests, or one that was not a steady state
(:func:`steady`), changes nothing.

The prediction uses the window's mean prompt and output lengths. For a service whose classes
differ widely (256- and 4096-token prompts) that is a cheaper step than the real mix of whole
chunks: in the dev cluster such a service measured 11 % slower than predicted at batch 6 with
an exact simulator, which the dead band absorbs.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpumix.catalog import GPUType, ModelArchitecture
from gpumix.perf.serving import ReplicaModel
from gpumix.perf.values import RequestShape, ServingConfig, WeightFormat

# Up-rating beyond the model's own error against a real GPU (≤ 7 %, docs/perf-model.md) is
# more likely a light window than a fast GPU, and under-planning costs SLOs: capped low.
MIN_FACTOR, MAX_FACTOR = 0.25, 1.25
MIN_REQUESTS = 30
SMOOTHING = 0.5  # weight of the newest window
DEAD_BAND = 0.20
STEADY_TOLERANCE = 0.15  # admitted vs finished requests per replica
WINDOW_SECONDS = 300.0  # the window Prometheus is asked about (5 m)


@dataclass(frozen=True, order=True)
class ConfigurationKey:
    model: str
    gpu_type: str
    tensor_parallel: int
    weight_format: str

    def label(self) -> str:
        return f"{self.gpu_type} TP{self.tensor_parallel} {self.weight_format}"


@dataclass(frozen=True)
class LiveLatency:
    """What one configuration's replicas measured over a window."""

    requests: float  # completed in the window
    mean_batch: float
    mean_tpot_seconds: float
    mean_input_tokens: float
    mean_output_tokens: float
    # Prompt tokens each replica prefilled per second, and the replicas measured: whether
    # the window was a steady state (None: not known, taken as steady).
    prompt_tokens_per_second: float | None = None
    replicas: float = 1.0


@dataclass(frozen=True)
class Factor:
    """The factor in use for one configuration, and the window that last moved it."""

    value: float
    measured_tpot_seconds: float
    predicted_tpot_seconds: float
    smoothed: float  # the running estimate; ``value`` follows it outside the dead band


def predicted_tpot(
    model: ModelArchitecture,
    gpu: GPUType,
    tensor_parallel: int,
    weight_format: str,
    live: LiveLatency,
) -> float:
    """gpumix.perf's TPOT at the measured batch and request shape (chunked prefill included)."""
    shape = RequestShape(
        input_tokens=max(1, round(live.mean_input_tokens)),
        output_tokens=max(1, round(live.mean_output_tokens)),
    )
    config = ServingConfig(gpu, tensor_parallel, WeightFormat(weight_format))
    replica = ReplicaModel(model, config, shape)
    return replica.at_batch(max(1, round(live.mean_batch))).step_seconds


def steady(live: LiveLatency, window_seconds: float) -> bool:
    """Whether the replicas admitted prompts as fast as they finished requests.

    The model's TPOT at a batch B is the steady state's, with B/O prompts per step. In a load
    step or a queue the replicas admit more prompts than they finish, their steps carry more
    prompt work, and comparing them with the steady state would de-rate a configuration for a
    transient: such windows change nothing.
    """
    rate = live.prompt_tokens_per_second
    if rate is None or live.mean_input_tokens <= 0 or live.requests <= 0:
        return True  # nothing to compare with: trust the window
    admitted = rate / live.mean_input_tokens
    finished = live.requests / window_seconds / max(live.replicas, 1.0)
    return abs(admitted - finished) <= STEADY_TOLERANCE * finished


def bounded(value: float) -> float:
    return min(MAX_FACTOR, max(MIN_FACTOR, value))


def update(previous: Factor | None, predicted: float, live: LiveLatency) -> Factor | None:
    """The factor after one window; ``previous`` when the window says too little."""
    if live.requests < MIN_REQUESTS or live.mean_tpot_seconds <= 0 or predicted <= 0:
        return previous
    if not steady(live, WINDOW_SECONDS):
        return previous
    raw = bounded(predicted / live.mean_tpot_seconds)
    smoothed = (
        raw if previous is None else previous.smoothed + SMOOTHING * (raw - previous.smoothed)
    )
    in_use = 1.0 if previous is None else previous.value
    if abs(smoothed / in_use - 1) <= DEAD_BAND:
        # Inside the band: the factor, and the window it reports, stay as they were (so the
        # status is not rewritten every window).
        if previous is None:
            return Factor(1.0, live.mean_tpot_seconds, predicted, smoothed)
        return Factor(previous.value, previous.measured_tpot_seconds,
                      previous.predicted_tpot_seconds, smoothed)  # fmt: skip
    return Factor(round(smoothed, 2), live.mean_tpot_seconds, predicted, smoothed)
