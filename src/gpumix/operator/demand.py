"""The demand each autoscaling LLMService is planned for, kept between planning passes.

The planner asks :meth:`DemandTracker.planned` for the service to plan (its spec with the
observed demand in place of the written one) and writes :meth:`observed_status` and
:meth:`condition` into the status. A sampling loop calls :meth:`sample` every
``prometheus.intervalSeconds``; it returns the services whose demand moved, which wake the
planner.

Memory only holds what a restart can rebuild: the planned demand is also in
``status.observedDemand``, from which a restarted operator starts (a window of samples is the
whole cost of a restart).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from gpumix.autoscaling.prometheus import ClassShape, LoadReading, ServiceName
from gpumix.autoscaling.recommend import Demand, ServiceAutoscaler, Settings, floor_shares
from gpumix.operator.indexes import ServiceRecord
from gpumix.operator.manifests import label_value
from gpumix.operator.status import METRICS_AVAILABLE
from gpumix.resources import Condition, LLMService
from gpumix.resources.llmservice import (
    AutoscalingSpec,
    LLMServiceStatus,
    ObservedDemandStatus,
    RequestClassSpec,
)
from gpumix.solver import ServiceKey

logger = logging.getLogger(__name__)

# MetricsAvailable reasons.
LOAD_OBSERVED = "LoadObserved"
NOT_CONFIGURED = "PrometheusNotConfigured"
UNREACHABLE = "PrometheusUnavailable"
NO_DATA = "NoData"
# status.observedDemand's load is rewritten when it moves by this fraction or more.
SHOWN_LOAD_BAND = 0.05
# Class shares are integers in the spec; the observed mix is written with this resolution.
SHARE_SCALE = 1_000_000


class LoadReader(Protocol):
    def read(
        self, at: float, classes: Mapping[ServiceName, Sequence[ClassShape]]
    ) -> LoadReading: ...


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str
    message: str


def written_demand(service: LLMService) -> Demand:
    workload = service.spec.workload
    total = sum(request_class.share for request_class in workload.classes)
    return Demand(
        float(workload.requests_per_second),
        {c.name: c.share / total for c in workload.classes},
    )


def _prior(service: LLMService, status: LLMServiceStatus | None, settings: Settings) -> Demand:
    """Where a service starts: the demand its status says it was planned for (a restart), if
    that covers the spec's classes, else the written demand. ``status`` is the record's: the
    index parses the resource without its status."""
    written = written_demand(service)
    observed = status.observed_demand if status else None
    edited = (
        observed is not None
        and observed.written_requests_per_second is not None
        and observed.written_requests_per_second != service.spec.workload.requests_per_second
    )  # while the operator was away: the edit is the new starting point
    if observed is not None and not edited and set(observed.class_shares) == set(written.shares):
        try:
            shares = {name: float(share) for name, share in observed.class_shares.items()}
            total = float(observed.planned_requests_per_second)
        except ValueError:
            shares, total = {}, 0.0
        if shares and sum(shares.values()) > 0 and total > 0:
            return Demand(settings.clamp(total), floor_shares(shares))
    return Demand(settings.clamp(written.requests_per_second), written.shares)


def with_demand(service: LLMService, demand: Demand) -> LLMService:
    """``service`` as the planner should see it: the demand and mix in place of the written
    ones (everything else, headroom included, unchanged)."""
    workload = service.spec.workload
    classes = [
        RequestClassSpec(
            name=c.name,
            input_tokens=c.input_tokens,
            output_tokens=c.output_tokens,
            share=max(1, round(demand.shares.get(c.name, 0.0) * SHARE_SCALE)),
        )
        for c in workload.classes
    ]
    rate = Decimal(f"{demand.requests_per_second:.6f}")
    new_workload = workload.model_copy(update={"requests_per_second": rate, "classes": classes})
    spec = service.spec.model_copy(update={"workload": new_workload})
    return service.model_copy(update={"spec": spec})


def _scraped(key: ServiceKey) -> ServiceName:
    """How Prometheus names a service: by its pods' gpumix.io/service label, which is the name
    made a valid label value (hashed beyond 63 characters)."""
    return (key.namespace, label_value(key.name))


def settings_of(spec: AutoscalingSpec) -> Settings:
    ceiling = spec.max_requests_per_second
    return Settings(
        min_requests_per_second=float(spec.min_requests_per_second),
        max_requests_per_second=None if ceiling is None else float(ceiling),
        scale_up_seconds=float(spec.scale_up_stabilization_seconds),
        scale_down_seconds=float(spec.scale_down_stabilization_seconds),
        tolerance=spec.tolerance_percent / 100,
    )


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _decimal(value: float) -> Decimal:
    return Decimal(f"{max(value, 0.0):.2f}")


@dataclass
class _Tracked:
    autoscaler: ServiceAutoscaler
    # The written demand it started from: a user who edits it sets a new starting point.
    written: Demand
    classes: tuple[ClassShape, ...]


class DemandTracker:
    def __init__(
        self,
        reader: LoadReader | None,
        *,
        clock: Callable[[], float] = time.time,
        url: str | None = None,
    ) -> None:
        self.reader = reader
        self.clock = clock
        self.url = url
        self._tracked: dict[ServiceKey, _Tracked] = {}
        self._availability: dict[ServiceKey, Availability] = {}
        self._causes: dict[ServiceKey, str] = {}

    # -- which services ---------------------------------------------------------------------

    def sync(self, records: Sequence[ServiceRecord]) -> None:
        """Track exactly the services with autoscaling enabled (their settings as written)."""
        live: set[ServiceKey] = set()
        for record in records:
            service = record.resource
            spec = service.spec.workload.autoscaling if service is not None else None
            if service is None or spec is None or not spec.enabled:
                continue
            key = ServiceKey(record.namespace or "default", record.name)
            live.add(key)
            settings = settings_of(spec)
            written = written_demand(service)
            classes = tuple(
                ClassShape(c.name, c.input_tokens) for c in service.spec.workload.classes
            )
            tracked = self._tracked.get(key)
            if tracked is None or tracked.written != written:
                start = (
                    _prior(service, record.status, settings)
                    if tracked is None
                    else Demand(settings.clamp(written.requests_per_second), written.shares)
                )
                self._tracked[key] = _Tracked(ServiceAutoscaler(settings, start), written, classes)
                self._causes.pop(key, None)  # a new starting point: earlier moves are history
            else:
                tracked.autoscaler.settings = settings
                tracked.autoscaler.demand = Demand(
                    settings.clamp(tracked.autoscaler.demand.requests_per_second),
                    tracked.autoscaler.demand.shares,
                )
                tracked.classes = classes
        for key in set(self._tracked) - live:
            del self._tracked[key]
            self._availability.pop(key, None)
            self._causes.pop(key, None)

    # -- reading the load -------------------------------------------------------------------

    async def sample(self) -> set[ServiceKey]:
        """Read the load once and decide; the services whose demand or metrics state moved."""
        if not self._tracked:
            return set()
        now = self.clock()
        if self.reader is None:
            reading = LoadReading({}, "no Prometheus is configured (the operator's prometheus.url)")
        else:
            classes = {_scraped(k): t.classes for k, t in self._tracked.items()}
            reading = await asyncio.to_thread(self.reader.read, now, classes)
        return self.apply(reading, now)

    def apply(self, reading: LoadReading, now: float) -> set[ServiceKey]:
        moved: set[ServiceKey] = set()
        for key, tracked in self._tracked.items():
            sample = reading.samples.get(_scraped(key))
            before = self._availability.get(key)
            if sample is not None:
                tracked.autoscaler.observe(sample)
                decision = tracked.autoscaler.decide(now)
                availability = Availability(
                    True, LOAD_OBSERVED, f"load read from the {sample.source} metrics"
                )
                if decision.cause is not None:
                    logger.info("%s/%s: %s", key.namespace, key.name, decision.cause)
                    self._causes[key] = (
                        f"{self._causes[key]}; {decision.cause}"
                        if key in self._causes
                        else decision.cause
                    )
                    moved.add(key)
            else:
                # A gap: the samples after it are the first of a new window, not the end of
                # one (a Prometheus that has just come back reads partial rates).
                tracked.autoscaler.history.clear()
                availability = self._unavailable(reading, tracked)
            self._availability[key] = availability
            if before != availability:
                moved.add(key)
        return moved

    def _unavailable(self, reading: LoadReading, tracked: _Tracked) -> Availability:
        kept = (
            f"planning for the last demand, "
            f"{tracked.autoscaler.demand.requests_per_second:.2f} req/s"
        )
        if self.reader is None:
            return Availability(False, NOT_CONFIGURED, f"{reading.error}; {kept}")
        if reading.error is not None:
            return Availability(False, UNREACHABLE, f"{reading.error}; {kept}")
        return Availability(
            False, NO_DATA, f"Prometheus has no router or vLLM metrics of this service; {kept}"
        )

    # -- what the planner reads -------------------------------------------------------------

    def planned(self, key: ServiceKey, service: LLMService) -> LLMService:
        """``service`` with its tracked demand; unchanged when it does not autoscale, or when
        its written demand is not the one tracked (a what-if that edits it, or an edit the
        tracker has not synced yet: the written demand is then the new starting point)."""
        tracked = self._tracked.get(key)
        autoscaling = service.spec.workload.autoscaling
        if tracked is None or autoscaling is None or not autoscaling.enabled:
            return service
        if written_demand(service) != tracked.written:
            return service
        return with_demand(service, tracked.autoscaler.demand)

    def demand(self, key: ServiceKey) -> Demand | None:
        tracked = self._tracked.get(key)
        return None if tracked is None else tracked.autoscaler.demand

    def take_cause(self, key: ServiceKey) -> str | None:
        """Why the demand moved since the last call (for the one event that reports it)."""
        return self._causes.pop(key, None)

    def observed_status(
        self,
        key: ServiceKey,
        previous: ObservedDemandStatus | None,
        planned_for: Demand | None = None,
    ) -> ObservedDemandStatus | None:
        """What status.observedDemand says: the load now and ``planned_for``, the demand the
        plan in effect was built with (default: the tracked one).

        The load is rewritten only when it moved by :data:`SHOWN_LOAD_BAND` or more, or the
        plan's demand changed: a status write per pass per service would cost the API server
        far more than a load figure a few percent stale is worth."""
        tracked = self._tracked.get(key)
        if tracked is None:
            return None
        demand = planned_for or tracked.autoscaler.demand
        latest = tracked.autoscaler.latest
        written = Decimal(f"{tracked.written.requests_per_second:.6f}")
        shares = {name: f"{share:.3f}" for name, share in sorted(demand.shares.items())}
        planned = _decimal(demand.requests_per_second)
        same_plan = (
            previous is not None
            and previous.planned_requests_per_second == planned
            and previous.class_shares == shares
        )
        if latest is None or (
            same_plan
            and previous is not None
            and abs(latest.load - float(previous.requests_per_second))
            < SHOWN_LOAD_BAND * max(float(previous.requests_per_second), 0.1)
        ):
            # Nothing read yet (a restart), or nothing worth a write: as last reported.
            return ObservedDemandStatus(
                requests_per_second=previous.requests_per_second if previous else planned,
                planned_requests_per_second=planned,
                written_requests_per_second=written,
                class_shares=shares,
                source=previous.source if previous else "none",
                window_seconds=previous.window_seconds if previous else 0,
                time=previous.time if previous else _iso(self.clock()),
            )
        return ObservedDemandStatus(
            requests_per_second=_decimal(latest.load),
            planned_requests_per_second=planned,
            written_requests_per_second=written,
            class_shares=shares,
            source=latest.source,
            window_seconds=60 if latest.window == "1 m rate" else 300,
            time=_iso(latest.time),
        )

    def condition(self, key: ServiceKey, generation: int | None) -> Condition | None:
        if key not in self._tracked:
            return None
        availability = self._availability.get(key) or Availability(
            False, NO_DATA, "the load has not been read yet"
        )
        return Condition(
            type=METRICS_AVAILABLE,
            status="True" if availability.available else "False",
            reason=availability.reason,
            message=availability.message,
            observed_generation=generation,
        )
