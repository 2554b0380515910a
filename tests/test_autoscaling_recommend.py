"""The demand an autoscaling LLMService is planned for (gpumix.autoscaling.recommend).

HPA semantics on requests/s, driven with synthetic load sampled every 15 s the way the
operator's sampling loop reads Prometheus: a step up moves the demand only after the
up-stabilisation window, a step down only after the down window and only to the window's
highest load, noise inside the tolerance band never moves it, min/max clamp it, the request mix
moves on a sustained shift only, and the history is kept in order and bounded.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gpumix.autoscaling.recommend import (
    HISTORY_SLACK_SECONDS,
    MIN_CLASS_SHARE,
    Demand,
    LoadSample,
    ServiceAutoscaler,
    Settings,
    floor_shares,
    mix_distance,
    recommend,
)
from gpumix.operator.demand import settings_of
from gpumix.resources.llmservice import AutoscalingSpec

INTERVAL = 15.0  # seconds between samples, the operator's default prometheus.intervalSeconds
MIX = {"long": 0.3, "short": 0.7}


def settings(
    *,
    minimum: float = 0.1,
    maximum: float | None = None,
    up: float = 60.0,
    down: float = 300.0,
    tolerance: float = 0.15,
) -> Settings:
    return Settings(
        min_requests_per_second=minimum,
        max_requests_per_second=maximum,
        scale_up_seconds=up,
        scale_down_seconds=down,
        tolerance=tolerance,
    )


def sample(
    time: float,
    load: float,
    mix: Mapping[str, float] = MIX,
    *,
    load_5m: float | None = None,
) -> LoadSample:
    """A sample whose total rate is ``load`` (1 m; the 5 m rate too unless given), split by
    ``mix``."""
    five = load if load_5m is None else load_5m
    return LoadSample(
        time=time,
        rate_1m={name: load * share for name, share in mix.items()},
        rate_5m={name: five * share for name, share in mix.items()},
    )


def scaler(total: float = 40.0, mix: Mapping[str, float] = MIX, **kwargs: Any) -> ServiceAutoscaler:
    """An autoscaler planned for ``total`` req/s split by ``mix``; ``kwargs`` as settings()."""
    return ServiceAutoscaler(settings(**kwargs), Demand(total, dict(mix)))


def run(
    autoscaler: ServiceAutoscaler, samples: Iterable[LoadSample]
) -> list[tuple[float, float, str | None]]:
    """Observe and decide on each sample as the tracker does; (time, demand, cause) each."""
    trace = []
    for each in samples:
        autoscaler.observe(each)
        decision = autoscaler.decide(each.time)
        trace.append((each.time, decision.demand.requests_per_second, decision.cause))
    return trace


def times(start: float, stop: float) -> list[float]:
    """Sample times from ``start`` up to and including ``stop``."""
    count = round((stop - start) / INTERVAL)
    return [start + index * INTERVAL for index in range(count + 1)]


def moves(trace: list[tuple[float, float, str | None]]) -> list[tuple[float, float, str]]:
    return [(time, demand, cause) for time, demand, cause in trace if cause is not None]


# -- samples and settings -------------------------------------------------------------------


def test_a_samples_load_is_the_larger_of_the_1m_and_5m_rates() -> None:
    burst = sample(0, 90, load_5m=50)
    assert burst.load == pytest.approx(90)
    assert burst.window == "1 m rate"
    lull = sample(0, 20, load_5m=50)
    assert lull.load == pytest.approx(50)
    assert lull.window == "5 m rate"


def test_a_samples_mix_comes_from_the_1m_rates_when_they_count_enough_requests() -> None:
    shifted = LoadSample(0, rate_1m={"short": 9, "long": 1}, rate_5m={"short": 1, "long": 3})
    # 600 requests in the last minute: the recent mix, so a shift shows within a minute.
    assert shifted.shares(["long", "short"]) == pytest.approx({"long": 0.1, "short": 0.9})
    # A quiet minute (60 requests) but a busier 5 minutes (1200): the 5 m mix.
    quiet = LoadSample(0, rate_1m={"short": 0.5, "long": 0.5}, rate_5m={"short": 1, "long": 3})
    assert quiet.shares(["long", "short"]) == pytest.approx({"long": 0.75, "short": 0.25})
    assert sample(0, 0).shares(["long", "short"]) is None


def test_settings_of_the_spec_read_percent_as_a_fraction() -> None:
    spec = AutoscalingSpec.model_validate(
        {
            "enabled": True,
            "minRequestsPerSecond": "2.5",
            "maxRequestsPerSecond": "80",
            "scaleUpStabilizationSeconds": 30,
            "scaleDownStabilizationSeconds": 600,
            "tolerancePercent": 10,
        }
    )
    assert settings_of(spec) == settings(minimum=2.5, maximum=80.0, up=30, down=600, tolerance=0.1)
    unbounded = settings_of(AutoscalingSpec(enabled=True))
    assert unbounded.max_requests_per_second is None
    assert unbounded.clamp(1e9) == 1e9
    assert unbounded.clamp(0.0) == pytest.approx(0.1)


def test_floor_shares_keeps_every_class_near_one_percent_and_sums_to_one() -> None:
    floored = floor_shares({"short": 1.0, "long": 0.0})
    assert sum(floored.values()) == pytest.approx(1.0)
    assert floored["long"] == pytest.approx(MIN_CLASS_SHARE, rel=0.02)
    assert floored["short"] > 0.98
    assert floor_shares({"a": 0.25, "b": 0.75}) == pytest.approx({"a": 0.25, "b": 0.75})
    assert floor_shares({}) == {}


def test_mix_distance_is_the_share_of_requests_that_would_move() -> None:
    assert mix_distance({"a": 0.7, "b": 0.3}, {"a": 0.4, "b": 0.6}) == pytest.approx(0.3)
    assert mix_distance({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0
    # A class missing on one side counts as 0 there.
    assert mix_distance({"a": 1.0}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.5)


# -- scaling up -----------------------------------------------------------------------------


def test_a_step_up_moves_the_demand_after_the_up_window_and_not_before() -> None:
    autoscaler = scaler(40, up=60)
    steady = run(autoscaler, [sample(t, 40) for t in times(-600, 0)])
    assert moves(steady) == []
    # The load doubles from t=15 on.
    trace = run(autoscaler, [sample(t, 80) for t in times(15, 300)])
    demand_at = {time: demand for time, demand, _ in trace}
    # Until t=60 the window [t-60, t] still holds the sample at 40 (t=0).
    assert all(demand_at[t] == 40 for t in times(15, 60))
    assert moves(trace) == [(75.0, 80.0, "demand 40 → 80 req/s (1 m rate)")]
    assert autoscaler.demand.requests_per_second == 80
    assert autoscaler.demand.shares == MIX


def test_a_scale_up_goes_to_the_lowest_load_of_the_window() -> None:
    autoscaler = scaler(40, up=60)
    run(autoscaler, [sample(t, 40) for t in times(-600, 0)])
    ramp = [61, 75, 90, 70, 95]  # t = 15 .. 75
    trace = run(autoscaler, [sample(15 * (i + 1), load) for i, load in enumerate(ramp)])
    assert moves(trace) == [(75.0, 61.0, "demand 40 → 61 req/s (1 m rate)")]


def test_a_scale_up_on_the_5m_rate_says_so() -> None:
    autoscaler = scaler(40, up=0)
    trace = run(autoscaler, [sample(0, 30, load_5m=70)])
    assert moves(trace) == [(0.0, 70.0, "demand 40 → 70 req/s (5 m rate)")]


def test_one_sample_inside_the_band_holds_the_scale_up_back() -> None:
    autoscaler = scaler(40, up=60)
    run(autoscaler, [sample(t, 40) for t in times(-600, 0)])
    loads = {t: 80.0 for t in times(15, 300)}
    loads[45.0] = 44.0  # inside the band (40 ± 15 %)
    trace = run(autoscaler, [sample(t, load) for t, load in loads.items()])
    # Not at t=75 (the window [15, 75] holds the dip), nor at t=105 ([45, 105] still does).
    assert [move[:2] for move in moves(trace)] == [(120.0, 80.0)]


def test_a_load_on_the_edge_of_the_band_does_not_move_the_demand() -> None:
    autoscaler = scaler(40, up=0, down=0, tolerance=0.25)
    trace = run(autoscaler, [sample(0, 50), sample(15, 30)])  # 40 × 1.25, 40 × 0.75
    assert moves(trace) == []


def test_an_up_window_of_zero_moves_on_the_first_sample_above_the_band() -> None:
    autoscaler = scaler(40, up=0)
    trace = run(autoscaler, [sample(0, 40), sample(15, 100)])
    assert moves(trace) == [(15.0, 100.0, "demand 40 → 100 req/s (1 m rate)")]


def test_a_fresh_history_waits_a_full_window_before_moving() -> None:
    """An operator that has just started (or a Prometheus just back) has not watched long
    enough: the window counts only once the oldest sample is at or before now - window."""
    autoscaler = scaler(40, up=60)
    trace = run(autoscaler, [sample(t, 80) for t in times(1000, 1120)])
    assert [move[:2] for move in moves(trace)] == [(1060.0, 80.0)]


def test_a_gap_longer_than_the_kept_history_restarts_the_wait() -> None:
    autoscaler = scaler(40, up=60, down=300)
    run(autoscaler, [sample(t, 40) for t in times(0, 600)])
    # Prometheus is away for an hour, then the load is back at twice the demand.
    trace = run(autoscaler, [sample(t, 80) for t in times(4200, 4320)])
    assert [move[:2] for move in moves(trace)] == [(4260.0, 80.0)]


# -- noise ----------------------------------------------------------------------------------


def test_noise_inside_the_tolerance_never_moves_the_demand_or_the_mix() -> None:
    rng = random.Random(13)
    autoscaler = scaler(40, tolerance=0.15, up=60, down=300)
    noisy = []
    for t in times(0, 24 * 3600):  # a day of samples every 15 s
        load = 40 * rng.uniform(0.9, 1.1)
        long = 0.3 + rng.uniform(-0.05, 0.05)
        five = 40 * rng.uniform(0.9, 1.1)
        noisy.append(sample(t, load, {"long": long, "short": 1 - long}, load_5m=five))
    trace = run(autoscaler, noisy)
    assert moves(trace) == []
    assert autoscaler.demand == Demand(40, MIX)


# -- scaling down ---------------------------------------------------------------------------


def test_a_step_down_waits_for_the_down_window_then_takes_its_highest_load() -> None:
    autoscaler = scaler(80, up=60, down=300)
    # An hour at the planned demand first: the pruned history must still cover the window.
    run(autoscaler, [sample(t, 80) for t in times(-3600, 0)])
    lull = [40.0, 50.0, 45.0]  # the load falls at t=15 and varies below the band
    trace = run(autoscaler, [sample(t, lull[i % 3]) for i, t in enumerate(times(15, 900))])
    demand_at = {time: demand for time, demand, _ in trace}
    # Until t=300 the window [t-300, t] still holds the sample at 80 (t=0).
    assert all(demand_at[t] == 80 for t in times(15, 300))
    assert moves(trace) == [
        (315.0, 50.0, "demand 80 → 50 req/s (highest 1 m rate of 300 s)"),
    ]


def test_a_step_down_is_held_by_the_slow_5m_rate() -> None:
    """A lull counts only once the 5 m rate has fallen too: the load is the larger rate."""
    autoscaler = scaler(80, down=60)
    run(autoscaler, [sample(t, 80) for t in times(-600, 0)])
    # The 1 m rate drops at once, the 5 m rate falls over five minutes.
    falling = [sample(t, 40, load_5m=80 - 40 * min(t, 300) / 300) for t in times(15, 600)]
    trace = run(autoscaler, falling)
    (time, demand, cause) = moves(trace)[0]
    # The band's floor is 68: the 5 m rate is below it from t=105 on, a window later it moves.
    assert time == 165.0
    assert demand == pytest.approx(80 - 40 * 105 / 300)
    assert cause == "demand 80 → 66 req/s (highest 5 m rate of 60 s)"


def test_a_short_burst_during_the_down_window_holds_the_demand() -> None:
    autoscaler = scaler(80, down=300)
    run(autoscaler, [sample(t, 80) for t in times(-600, 0)])
    loads = {t: 40.0 for t in times(15, 900)}
    loads[150.0] = 79.0  # one burst back inside the band
    trace = run(autoscaler, [sample(t, load) for t, load in loads.items()])
    assert [move[:2] for move in moves(trace)] == [(465.0, 40.0)]


# -- min and max ----------------------------------------------------------------------------


def test_the_demand_never_goes_below_the_minimum() -> None:
    autoscaler = scaler(40, minimum=5, down=60)
    run(autoscaler, [sample(t, 40) for t in times(-600, 0)])
    trace = run(autoscaler, [sample(t, 0.01) for t in times(15, 600)])
    assert moves(trace) == [(75.0, 5.0, "demand 40 → 5 req/s (highest 1 m rate of 60 s)")]
    assert min(demand for _, demand, _ in trace) == 5
    # No traffic at all: still the minimum, and no further move.
    trace = run(autoscaler, [sample(t, 0) for t in times(615, 1200)])
    assert moves(trace) == []
    assert autoscaler.demand.requests_per_second == 5


def test_the_demand_never_goes_above_the_maximum() -> None:
    autoscaler = scaler(40, maximum=100, up=60)
    run(autoscaler, [sample(t, 40) for t in times(-600, 0)])
    trace = run(autoscaler, [sample(t, 1000) for t in times(15, 600)])
    assert moves(trace) == [(75.0, 100.0, "demand 40 → 100 req/s (1 m rate)")]
    assert max(demand for _, demand, _ in trace) == 100


# -- the request mix ------------------------------------------------------------------------


def test_a_mix_shift_at_constant_total_moves_the_shares_not_the_total() -> None:
    autoscaler = scaler(40, up=60)
    run(autoscaler, [sample(t, 40) for t in times(-600, 0)])
    shifted = {"long": 0.6, "short": 0.4}
    trace = run(autoscaler, [sample(t, 40, shifted) for t in times(15, 300)])
    assert moves(trace) == [(75.0, 40.0, "request mix long 30 % → 60 %, short 70 % → 40 %")]
    assert autoscaler.demand.requests_per_second == 40
    assert autoscaler.demand.shares == pytest.approx(shifted)


def test_a_mix_shift_within_the_tolerance_does_not_move_the_shares() -> None:
    autoscaler = scaler(40, up=60, tolerance=0.15)
    trace = run(autoscaler, [sample(t, 40, {"long": 0.44, "short": 0.56}) for t in times(0, 600)])
    assert moves(trace) == []


def test_a_mix_and_demand_change_together_report_both() -> None:
    autoscaler = scaler(40, up=60)
    run(autoscaler, [sample(t, 40) for t in times(-600, 0)])
    trace = run(autoscaler, [sample(t, 80, {"long": 0.6, "short": 0.4}) for t in times(15, 75)])
    assert moves(trace) == [
        (
            75.0,
            80.0,
            "demand 40 → 80 req/s (1 m rate); request mix long 30 % → 60 %, short 70 % → 40 %",
        )
    ]


def test_a_zero_traffic_sample_leaves_the_mix_unchanged() -> None:
    autoscaler = scaler(40, up=60, down=3600)
    run(autoscaler, [sample(t, 40) for t in times(-600, 0)])
    shifted = {"long": 0.6, "short": 0.4}
    loads = {t: 40.0 for t in times(15, 150)}
    loads[60.0] = 0.0  # a scrape with no traffic: no mix to read
    trace = run(autoscaler, [sample(t, load, shifted) for t, load in loads.items()])
    # The shift counts from the next sample with traffic (t=75) for a whole window.
    assert [move[:2] for move in moves(trace)] == [(135.0, 40.0)]
    # No traffic at all for a whole window: the planned mix stays.
    quiet = scaler(40, up=60, down=3600)
    trace = run(quiet, [sample(t, 0, shifted) for t in times(0, 600)])
    assert moves(trace) == []
    assert quiet.demand.shares == MIX


def test_a_class_that_disappears_keeps_a_floor_share() -> None:
    autoscaler = scaler(40, up=0)
    trace = run(autoscaler, [sample(0, 40, {"long": 0.0, "short": 1.0})])
    assert moves(trace)
    shares = autoscaler.demand.shares
    assert shares["long"] == pytest.approx(MIN_CLASS_SHARE, rel=0.02)
    assert sum(shares.values()) == pytest.approx(1.0)


def test_a_single_class_service_never_reports_a_mix_change() -> None:
    autoscaler = scaler(40, {"default": 1.0}, up=0, tolerance=0)
    trace = run(autoscaler, [sample(t, 40, {"default": 1.0}) for t in times(0, 300)])
    assert moves(trace) == []


# -- the history ----------------------------------------------------------------------------


def test_out_of_order_and_repeated_samples_are_ignored() -> None:
    autoscaler = scaler(40, up=60)
    run(autoscaler, [sample(t, 80) for t in times(0, 45)])
    autoscaler.observe(sample(30, 1.0))  # a late read
    autoscaler.observe(sample(45, 1.0))  # the same instant again
    assert [s.load for s in autoscaler.history] == pytest.approx([80, 80, 80, 80])
    assert autoscaler.latest is not None
    assert autoscaler.latest.time == 45
    # The late reads do not hold the scale-up back.
    trace = run(autoscaler, [sample(60, 80)])
    assert [move[:2] for move in moves(trace)] == [(60.0, 80.0)]


def test_the_history_is_pruned_to_the_longest_window() -> None:
    autoscaler = scaler(40, up=60, down=300)
    assert autoscaler.latest is None
    run(autoscaler, [sample(t, 40) for t in times(0, 4 * 3600)])
    oldest = autoscaler.history[0].time
    assert oldest >= 4 * 3600 - 300 - HISTORY_SLACK_SECONDS
    assert oldest <= 4 * 3600 - 300  # still covers the down window
    assert len(autoscaler.history) <= (300 + HISTORY_SLACK_SECONDS) / INTERVAL + 1


def test_recommend_without_history_keeps_the_demand() -> None:
    current = Demand(40, MIX)
    assert recommend(current, [], settings(), now=0).demand == current
    assert recommend(current, [], settings(), now=0).cause is None


# -- properties -----------------------------------------------------------------------------

loads = st.floats(min_value=0, max_value=5000, allow_nan=False)


@st.composite
def bounded_settings(draw: st.DrawFn) -> tuple[Settings, float]:
    """Settings and a current demand inside their [min, max]."""
    minimum = draw(st.floats(min_value=0, max_value=100))
    maximum = draw(st.none() | st.floats(min_value=minimum, max_value=minimum + 1000))
    current = draw(
        st.floats(min_value=minimum, max_value=minimum + 1000 if maximum is None else maximum)
    )
    chosen = settings(
        minimum=minimum,
        maximum=maximum,
        up=draw(st.integers(min_value=0, max_value=600)),
        down=draw(st.integers(min_value=0, max_value=1800)),
        tolerance=draw(st.integers(min_value=0, max_value=100)) / 100,
    )
    return chosen, current


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    bounded=bounded_settings(),
    steps=st.lists(
        st.tuples(st.floats(min_value=1, max_value=200), loads, loads), min_size=1, max_size=60
    ),
)
def test_the_demand_stays_within_min_and_max(
    bounded: tuple[Settings, float], steps: list[tuple[float, float, float]]
) -> None:
    chosen, current = bounded
    autoscaler = ServiceAutoscaler(chosen, Demand(current, dict(MIX)))
    time = 0.0
    for gap, one, five in steps:
        time += gap
        autoscaler.observe(sample(time, one, load_5m=five))
        demand = autoscaler.decide(time).demand.requests_per_second
        assert demand >= chosen.min_requests_per_second
        if chosen.max_requests_per_second is not None:
            assert demand <= chosen.max_requests_per_second


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    current=st.floats(min_value=0.5, max_value=1000),
    tolerance_percent=st.integers(min_value=1, max_value=100),
    long_share=st.floats(min_value=0.05, max_value=0.95),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=1, max_value=200),
            st.floats(min_value=-0.999, max_value=0.999),
            st.floats(min_value=-0.999, max_value=0.999),
            st.floats(min_value=-0.49, max_value=0.49),
        ),
        min_size=1,
        max_size=80,
    ),
)
def test_loads_and_mixes_inside_the_band_never_move_the_demand(
    current: float,
    tolerance_percent: int,
    long_share: float,
    steps: list[tuple[float, float, float, float]],
) -> None:
    tolerance = tolerance_percent / 100
    planned = Demand(current, {"long": long_share, "short": 1 - long_share})
    autoscaler = ServiceAutoscaler(
        settings(minimum=0, up=60, down=300, tolerance=tolerance), planned
    )
    time = 0.0
    for gap, one, five, drift in steps:
        time += gap
        # Both rates within ±tolerance of the demand, the mix within half the tolerance.
        long = min(max(long_share + drift * tolerance, 0.02), 0.98)
        autoscaler.observe(
            sample(
                time,
                current * (1 + one * tolerance),
                {"long": long, "short": 1 - long},
                load_5m=current * (1 + five * tolerance),
            )
        )
        decision = autoscaler.decide(time)
        assert decision.cause is None
        assert decision.demand == planned


def test_a_covered_window_without_recent_samples_does_not_move_the_demand() -> None:
    # Samples that cover the window but stop before it: stale data, not a reason to move.
    history = [sample(t, 100.0) for t in times(0, 120)]
    decision = recommend(Demand(40.0, dict(MIX)), history, settings(up=30, down=30), now=400.0)
    assert decision.cause is None and decision.demand.requests_per_second == 40.0


def test_a_sample_without_per_class_rates_moves_the_total_but_never_the_mix() -> None:
    # vLLM fallback without a prompt-length histogram: the split is a placeholder.
    even = {"long": 0.5, "short": 0.5}
    history = [
        LoadSample(t, {n: 30.0 * s for n, s in even.items()},
                   {n: 30.0 * s for n, s in even.items()}, "vllm", mix_known=False)
        for t in times(0, 60)
    ]  # fmt: skip
    decision = recommend(Demand(10.0, dict(MIX)), history, settings(up=60), now=60.0)
    assert decision.demand.requests_per_second == 30.0
    assert decision.demand.shares == MIX


def test_a_mix_read_from_too_few_requests_never_moves_the_shares() -> None:
    # 0.3 req/s: 90 requests in the 5 m window, too few for a mix to mean anything.
    shifted = {"long": 0.8, "short": 0.2}
    history = [sample(t, 0.3, shifted) for t in times(0, 120)]
    decision = recommend(Demand(0.3, dict(MIX)), history, settings(up=60), now=120.0)
    assert decision.demand.shares == MIX
