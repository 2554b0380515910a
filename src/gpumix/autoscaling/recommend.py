"""The demand one LLMService is planned for, from the load observed over time (pure).

HPA's semantics, applied to requests/s instead of replicas, so that a platform team reads them
the way it already reads ``behavior.scaleUp/scaleDown``:

- each sample's *load* is the larger of the 1 m and 5 m request rates (a burst shows in the 1 m
  rate at once, a lull only once the 5 m rate has fallen too);
- the plan grows only when the load stayed above the tolerance band for the whole
  up-stabilisation window, to the lowest load of that window;
- it shrinks only to the highest load of the down-stabilisation window, and only when even
  that is below the band;
- the request mix moves when, for the whole up-stabilisation window, the observed shares
  differ from the planned ones by more than the tolerance (in points of total variation).

A window counts only when the samples cover it: an operator that has just started, or a
Prometheus that has just come back, waits a full window before it moves anything. Lack of
data never moves the demand (the caller keeps the last decision).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# A class the load has not shown (yet) keeps this share of the demand: the router must still
# have somewhere to send its first request, and the plan a configuration for it.
MIN_CLASS_SHARE = 0.01
# A mix read from fewer requests than this is noise (a 30 % class's share moves by ±5 points
# at 100 requests), never a reason to move the plan's class shares.
MIN_MIX_REQUESTS = 100
# Samples are kept this much longer than the longest window (scrape and query jitter).
HISTORY_SLACK_SECONDS = 30.0


@dataclass(frozen=True)
class Demand:
    """Requests/s and how they split over the request classes (shares sum to 1)."""

    requests_per_second: float
    shares: Mapping[str, float]


@dataclass(frozen=True)
class LoadSample:
    """Per-class request rates read at ``time`` (Unix seconds)."""

    time: float
    rate_1m: Mapping[str, float]
    rate_5m: Mapping[str, float]
    source: str = "router"
    # False when the rates are a total split by the planned mix (no per-class data): such a
    # sample moves the total, never the mix.
    mix_known: bool = True

    @property
    def total_1m(self) -> float:
        return sum(self.rate_1m.values())

    @property
    def total_5m(self) -> float:
        return sum(self.rate_5m.values())

    @property
    def load(self) -> float:
        return max(self.total_1m, self.total_5m)

    @property
    def window(self) -> str:
        """Which rate the load is: the one a scale decision quotes."""
        return "1 m rate" if self.total_1m >= self.total_5m else "5 m rate"

    def shares(self, classes: Sequence[str]) -> dict[str, float] | None:
        """The mix over ``classes``: from the 1 m rates when they count enough requests (a
        shift shows within a minute), else from the 5 m rates; None without enough traffic."""
        if not self.mix_known:
            return None
        if self.total_1m * 60 >= MIN_MIX_REQUESTS:
            rates = self.rate_1m
        elif self.total_5m * 300 >= MIN_MIX_REQUESTS:
            rates = self.rate_5m
        else:
            return None
        seen = {name: max(rates.get(name, 0.0), 0.0) for name in classes}
        total = sum(seen.values())
        if total <= 0:
            return None
        return floor_shares({name: rate / total for name, rate in seen.items()})


@dataclass(frozen=True)
class Settings:
    min_requests_per_second: float
    max_requests_per_second: float | None
    scale_up_seconds: float
    scale_down_seconds: float
    tolerance: float  # a fraction: 0.15 for 15 %

    def clamp(self, requests_per_second: float) -> float:
        bounded = max(requests_per_second, self.min_requests_per_second)
        if self.max_requests_per_second is not None:
            bounded = min(bounded, self.max_requests_per_second)
        return bounded


def floor_shares(shares: Mapping[str, float]) -> dict[str, float]:
    """``shares`` with every class at least :data:`MIN_CLASS_SHARE`, renormalised to 1."""
    if not shares:
        return {}
    floored = {name: max(share, MIN_CLASS_SHARE) for name, share in shares.items()}
    total = sum(floored.values())
    return {name: share / total for name, share in floored.items()}


def mix_distance(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Total-variation distance between two mixes: the share of requests that would move."""
    names = set(a) | set(b)
    return sum(abs(a.get(name, 0.0) - b.get(name, 0.0)) for name in names) / 2


@dataclass(frozen=True)
class Decision:
    demand: Demand
    # Why the demand moved, for the PlanChanged event; None when it did not.
    cause: str | None = None


def _window(history: Sequence[LoadSample], now: float, seconds: float) -> list[LoadSample]:
    """The samples of the last ``seconds``, or [] when they do not cover that long."""
    if not history:
        return []
    if seconds <= 0:
        return [history[-1]]
    start = now - seconds
    if history[0].time > start:
        return []  # not watched for a whole window yet
    # Covered but nothing inside: no recent data, and lack of data never moves the demand.
    return [sample for sample in history if sample.time >= start]


def _rate(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def recommend(
    current: Demand, history: Sequence[LoadSample], settings: Settings, now: float
) -> Decision:
    """The demand to plan for now, given the one planned for and the samples (oldest first)."""
    total = current.requests_per_second
    causes: list[str] = []
    upper = total * (1 + settings.tolerance)
    lower = total * (1 - settings.tolerance)

    rising = _window(history, now, settings.scale_up_seconds)
    if rising and all(sample.load > upper for sample in rising):
        lowest = min(rising, key=lambda sample: sample.load)
        new_total = settings.clamp(lowest.load)
        if new_total > total:
            causes.append(f"demand {_rate(total)} → {_rate(new_total)} req/s ({lowest.window})")
            total = new_total
    if not causes:
        falling = _window(history, now, settings.scale_down_seconds)
        if falling and all(sample.load < lower for sample in falling):
            highest = max(falling, key=lambda sample: sample.load)
            new_total = settings.clamp(highest.load)
            if new_total < total:
                causes.append(
                    f"demand {_rate(total)} → {_rate(new_total)} req/s "
                    f"(highest {highest.window} of {settings.scale_down_seconds:.0f} s)"
                )
                total = new_total

    shares = dict(current.shares)
    classes = sorted(shares)
    mixes = [sample.shares(classes) for sample in rising]
    if (
        len(classes) > 1
        and mixes
        and all(mix is not None and mix_distance(mix, shares) > settings.tolerance for mix in mixes)
    ):
        latest = mixes[-1]
        assert latest is not None
        moved = ", ".join(
            f"{name} {shares[name] * 100:.0f} % → {latest[name] * 100:.0f} %"
            for name in classes
            if abs(latest[name] - shares[name]) >= 0.005
        )
        causes.append(f"request mix {moved}")
        shares = latest
    if not causes:
        return Decision(current)
    return Decision(Demand(total, shares), "; ".join(causes))


@dataclass
class ServiceAutoscaler:
    """One service's planned demand and the samples that move it."""

    settings: Settings
    demand: Demand
    history: deque[LoadSample] = field(default_factory=deque)

    def observe(self, sample: LoadSample) -> None:
        if self.history and sample.time <= self.history[-1].time:
            return  # a repeated or out-of-order read adds nothing
        self.history.append(sample)
        keep = max(self.settings.scale_up_seconds, self.settings.scale_down_seconds)
        while self.history and self.history[0].time < sample.time - keep - HISTORY_SLACK_SECONDS:
            self.history.popleft()

    def decide(self, now: float) -> Decision:
        decision = recommend(self.demand, list(self.history), self.settings, now)
        self.demand = decision.demand
        return decision

    @property
    def latest(self) -> LoadSample | None:
        return self.history[-1] if self.history else None
