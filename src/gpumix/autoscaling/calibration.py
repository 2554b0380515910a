"""Capacity factors from live latencies: the performance model corrects itself (pure).

For each running configuration (model, GPU type, tensor-parallel size, weight format) the
simulators or vLLM report, over a window, the mean time per output token, the mean batch (the
running requests) and the mean prompt and output lengths. :func:`predicted_tpot` is what
:mod:`gpumix.perf` says the TPOT is at that batch and shape; the capacity factor is predicted /
measured. A replica whose tokens come twice as slowly as predicted serves about half the
requests within the SLO, so the planner multiplies that configuration's throughputs by it.

Bounded (:data:`MIN_FACTOR` .. :data:`MAX_FACTOR`): a broken metric must not make a GPU look
free or useless. Smoothed, and applied only when it moves by more than :data:`DEAD_BAND` from
the factor in use, so measurement noise never re-plans the fleet. A window with fewer than
:data:`MIN_REQUESTS` completed requests says nothing and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpumix.catalog import GPUType, ModelArchitecture
from gpumix.perf.serving import ReplicaModel
from gpumix.perf.values import RequestShape, ServingConfig, WeightFormat

MIN_FACTOR, MAX_FACTOR = 0.25, 2.0
MIN_REQUESTS = 30
SMOOTHING = 0.5  # weight of the newest window
DEAD_BAND = 0.20


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


def bounded(value: float) -> float:
    return min(MAX_FACTOR, max(MIN_FACTOR, value))


def update(previous: Factor | None, predicted: float, live: LiveLatency) -> Factor | None:
    """The factor after one window; ``previous`` when the window says too little."""
    if live.requests < MIN_REQUESTS or live.mean_tpot_seconds <= 0 or predicted <= 0:
        return previous
    raw = bounded(predicted / live.mean_tpot_seconds)
    smoothed = (
        raw if previous is None else previous.smoothed + SMOOTHING * (raw - previous.smoothed)
    )
    in_use = 1.0 if previous is None else previous.value
    value = round(smoothed, 2) if abs(smoothed - in_use) > DEAD_BAND else in_use
    return Factor(value, live.mean_tpot_seconds, predicted, smoothed)
