"""Capacity factors per configuration, learnt from the live latencies in Prometheus.

Every running configuration of every LLMService is compared with :mod:`gpumix.perf` at the
batch and request shape it measured (:mod:`gpumix.autoscaling.calibration`); the factor is
shared by every service of the same model on the same hardware. The planner multiplies the
candidates' throughputs by it, so a configuration that serves slower than predicted (and so
misses its SLO at the planned load) is de-rated and the plan buys capacity elsewhere.

Off with the configuration file's ``calibration.enabled: false``; nothing happens without a
Prometheus. Memory only: a restarted operator plans on the model until a window has been read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Protocol

from gpumix.autoscaling.calibration import (
    ConfigurationKey,
    Factor,
    LiveLatency,
    predicted_tpot,
    update,
)
from gpumix.autoscaling.prometheus import LatencyReading, LatencyRow
from gpumix.catalog import GPUType, ModelArchitecture, resolve_model
from gpumix.errors import InputError
from gpumix.operator.indexes import ServiceRecord
from gpumix.operator.manifests import label_value
from gpumix.resources.llmservice import CalibrationStatus, LLMService
from gpumix.solver.candidates import PoolHardware

logger = logging.getLogger(__name__)


class LatencyReader(Protocol):
    def read_latencies(self, at: float, window: str = "5m") -> LatencyReading: ...


def _merged(rows: Sequence[LatencyRow]) -> LiveLatency:
    """Several services' windows of one configuration, weighted by their requests."""
    total = sum(row.live.requests for row in rows)
    if total <= 0:
        return rows[0].live

    def mean(field: str) -> float:
        return float(sum(getattr(row.live, field) * row.live.requests for row in rows)) / total

    rates = [row.live.prompt_tokens_per_second for row in rows]
    return LiveLatency(
        # per replica, like the batch: a weighted mean, not a sum
        prompt_tokens_per_second=None
        if any(rate is None for rate in rates)
        else sum((row.live.prompt_tokens_per_second or 0.0) * row.live.requests for row in rows)
        / total,
        replicas=sum(row.live.replicas for row in rows),
        requests=total,
        mean_batch=mean("mean_batch"),
        mean_tpot_seconds=mean("mean_tpot_seconds"),
        mean_input_tokens=mean("mean_input_tokens"),
        mean_output_tokens=mean("mean_output_tokens"),
    )


def _model(service: LLMService) -> ModelArchitecture | None:
    spec = service.spec.model
    architecture = (
        spec.architecture.model_dump(by_alias=True, exclude_none=True)
        if spec.architecture is not None
        else None
    )
    try:
        return resolve_model(spec.name, architecture)
    except InputError:
        return None  # the planner reports the spec problem


def _milliseconds(seconds: float) -> Decimal:
    return Decimal(f"{seconds * 1000:.1f}")


class CapacityCalibration:
    def __init__(
        self, reader: LatencyReader | None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.reader = reader
        self.clock = clock
        self.factors: dict[ConfigurationKey, Factor] = {}
        self._causes: dict[str, list[str]] = defaultdict(list)
        self._resumed = False

    async def sample(
        self, records: Sequence[ServiceRecord], hardware: Sequence[PoolHardware]
    ) -> bool:
        """Read one window; whether a factor in use moved (the planner should re-plan)."""
        if self.reader is None:
            return False
        if not self._resumed:
            self.resume(records)
        reading = await asyncio.to_thread(self.reader.read_latencies, self.clock())
        if reading.error is not None:
            logger.debug("calibration: %s", reading.error)
            return False
        return self.apply(reading, records, hardware)

    def apply(
        self,
        reading: LatencyReading,
        records: Sequence[ServiceRecord],
        hardware: Sequence[PoolHardware],
    ) -> bool:
        # Prometheus names a service by its pods' gpumix.io/service label value.
        services = {
            (r.namespace or "default", label_value(r.name)): r.resource
            for r in records
            if r.resource
        }
        gpus: dict[str, GPUType] = {label_value(h.gpu.name): h.gpu for h in hardware}
        # Each service's window is compared with the model at its own batch and shape; the
        # windows of one configuration then pool (TPOT is not linear in either).
        measured: dict[ConfigurationKey, list[tuple[LatencyRow, float]]] = defaultdict(list)
        models: dict[str, ModelArchitecture] = {}
        for row in reading.rows:
            service = services.get(row.service)
            gpu = gpus.get(row.gpu_type)
            if service is None or gpu is None:
                continue
            model = models.get(service.spec.model.name) or _model(service)
            if model is None:
                continue
            models[service.spec.model.name] = model
            try:
                predicted = predicted_tpot(
                    model, gpu, row.tensor_parallel, row.weight_format, row.live
                )
            except ValueError:
                continue  # a weight format gpumix does not know: not one of its pods
            key = ConfigurationKey(
                service.spec.model.name, gpu.name, row.tensor_parallel, row.weight_format
            )
            measured[key].append((row, predicted))
        moved = False
        for key, found in measured.items():
            live = _merged([row for row, _ in found])
            weights = [max(row.live.requests, 0.0) for row, _ in found]
            predicted = (
                sum(p * w for (_, p), w in zip(found, weights, strict=True)) / sum(weights)
                if sum(weights) > 0
                else found[0][1]
            )
            previous = self.factors.get(key)
            new = update(previous, predicted, live)
            if new is None:
                continue
            self.factors = {**self.factors, key: new}  # replaced whole: what-ifs read it
            before = previous.value if previous is not None else 1.0
            if new.value != before:
                moved = True
                cause = (
                    f"calibration: {key.label()} capacity ×{before:.2f} → ×{new.value:.2f} "
                    f"(TPOT {live.mean_tpot_seconds * 1000:.0f} ms measured, "
                    f"{predicted * 1000:.0f} ms predicted at batch {live.mean_batch:.0f})"
                )
                logger.info("%s: %s", key.model, cause)
                self._causes[key.model].append(cause)
        return moved

    def resume(self, records: Sequence[ServiceRecord]) -> None:
        """Factors a previous operator learnt, from the statuses it wrote: a restart must not
        move pods back onto a pool known to be slow (nor wait a window to learn it again)."""
        resumed = dict(self.factors)
        for record in records:
            if record.resource is None or record.status is None:
                continue
            for row in record.status.calibration or ():
                key = ConfigurationKey(
                    record.resource.spec.model.name,
                    row.gpu_type,
                    row.tensor_parallel,
                    row.weight_format,
                )
                if key not in resumed:
                    value = float(row.capacity_factor)
                    resumed[key] = Factor(
                        value,
                        float(row.measured_tpot_milliseconds) / 1000,
                        float(row.predicted_tpot_milliseconds) / 1000,
                        smoothed=value,
                    )
        self.factors = resumed
        self._resumed = True

    def factors_for(self, model: str) -> dict[tuple[str, int, str], float]:
        return {
            (key.gpu_type, key.tensor_parallel, key.weight_format): factor.value
            for key, factor in self.factors.items()
            if key.model == model and factor.value != 1.0
        }

    def take_causes(self) -> dict[str, str]:
        """Why factors moved since the last call, per model (for the PlanChanged events)."""
        causes = {model: "; ".join(found) for model, found in self._causes.items() if found}
        self._causes.clear()
        return causes

    def status_for(self, model: str) -> list[CalibrationStatus]:
        return [
            CalibrationStatus(
                gpu_type=key.gpu_type,
                tensor_parallel=key.tensor_parallel,
                weight_format=key.weight_format,
                capacity_factor=Decimal(f"{factor.value:.2f}"),
                measured_tpot_milliseconds=_milliseconds(factor.measured_tpot_seconds),
                predicted_tpot_milliseconds=_milliseconds(factor.predicted_tpot_seconds),
            )
            for key, factor in sorted(self.factors.items())
            if key.model == model
        ]
