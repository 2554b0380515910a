"""The demand tracker between the load readings and the planner (gpumix.operator.demand).

No Kubernetes and no Prometheus: LLMServices are parsed into ``ServiceRecord``s the way the
kopf index delivers them, and readings are built by hand. Checked: only autoscaling services are
tracked; a reading moves the demand after the stabilisation window and leaves a cause that the
planner takes once; ``planned()`` is the service with the tracked demand and mix and nothing
else changed; an outage, a missing Prometheus and a service without metrics each keep the
demand and say why in MetricsAvailable; a restarted operator resumes from
``status.observedDemand``; editing the written demand sets a new starting point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest

from gpumix.autoscaling.prometheus import ClassShape, LoadReading, ServiceName
from gpumix.autoscaling.recommend import LoadSample
from gpumix.operator import indexes
from gpumix.operator.demand import (
    LOAD_OBSERVED,
    NO_DATA,
    NOT_CONFIGURED,
    UNREACHABLE,
    DemandTracker,
)
from gpumix.operator.indexes import ServiceRecord
from gpumix.resources import LLMService
from gpumix.solver import ServiceKey

NAMESPACE = "team-a"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
CHAT = ServiceKey(NAMESPACE, "chat")
START = 1_767_000_000.0
INTERVAL = 15.0
ERROR = "Prometheus at http://prometheus:9090 is unreachable: connection refused"


def llmservice(
    name: str = "chat",
    rps: str = "40",
    autoscaling: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An LLMService of two classes (70 % short, 30 % long) that autoscales unless
    ``autoscaling`` says otherwise."""
    body: dict[str, Any] = {
        "apiVersion": "gpumix.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}", "generation": 3},
        "spec": {
            "model": {"name": MODEL, "maxModelLen": 8192},
            "workload": {
                "requestsPerSecond": rps,
                "headroomPercent": 25,
                "classes": [
                    {"name": "short", "inputTokens": 256, "outputTokens": 128, "share": 70},
                    {"name": "long", "inputTokens": 4096, "outputTokens": 256, "share": 30},
                ],
                "autoscaling": {
                    "enabled": True,
                    "scaleUpStabilizationSeconds": 60,
                    "scaleDownStabilizationSeconds": 300,
                }
                if autoscaling is None
                else dict(autoscaling),
            },
        },
    }
    if status is not None:
        body["status"] = dict(status)
    return body


def record(body: Mapping[str, Any]) -> ServiceRecord:
    parsed = indexes.service_record(body)
    assert parsed.resource is not None, parsed.problem
    return parsed


def resource(tracked: ServiceRecord) -> LLMService:
    assert tracked.resource is not None
    return tracked.resource


def reading(
    at: float, short: float, long: float, *, name: str = "chat", source: str = "router"
) -> LoadReading:
    """One service's rates (1 m and 5 m alike) per class."""
    rates = {"short": short, "long": long}
    return LoadReading({(NAMESPACE, name): LoadSample(at, rates, dict(rates), source)})


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Reader:
    """A reader that answers with what the test set, and remembers what it was asked."""

    def __init__(self, answer: LoadReading) -> None:
        self.answer = answer
        self.calls: list[tuple[float, dict[ServiceName, tuple[ClassShape, ...]]]] = []

    def read(self, at: float, classes: Mapping[ServiceName, Sequence[ClassShape]]) -> LoadReading:
        self.calls.append((at, {name: tuple(shapes) for name, shapes in classes.items()}))
        return self.answer


def tracker_for(*bodies: Mapping[str, Any]) -> DemandTracker:
    tracker = DemandTracker(Reader(LoadReading({})), clock=Clock())
    tracker.sync([record(body) for body in bodies])
    return tracker


def feed(
    tracker: DemandTracker, start: float, stop: float, short: float, long: float
) -> list[tuple[float, set[ServiceKey]]]:
    """Readings every 15 s from ``start`` to ``stop`` (inclusive); what each moved."""
    moved = []
    at = start
    while at <= stop:
        moved.append((at, tracker.apply(reading(at, short, long), at)))
        at += INTERVAL
    return moved


def rps(tracker: DemandTracker, key: ServiceKey = CHAT) -> float:
    """The requests/s the service is planned for now."""
    demand = tracker.demand(key)
    assert demand is not None
    return demand.requests_per_second


def condition(tracker: DemandTracker, key: ServiceKey = CHAT) -> tuple[str, str, str]:
    found = tracker.condition(key, generation=3)
    assert found is not None
    assert found.type == "MetricsAvailable"
    assert found.observed_generation == 3
    return found.status, found.reason, found.message


# -- which services ---------------------------------------------------------------------------


def test_only_services_with_autoscaling_enabled_are_tracked() -> None:
    broken = llmservice("broken")
    broken["spec"]["workload"]["requestsPerSecond"] = 40  # not a decimal string: invalid
    disabled = llmservice("off", autoscaling={"enabled": False})
    written = llmservice("fixed")
    del written["spec"]["workload"]["autoscaling"]
    records = [record(llmservice()), record(disabled), record(written)]
    records.append(indexes.service_record(broken))
    assert records[-1].resource is None

    tracker = DemandTracker(None, clock=Clock())
    tracker.sync(records)
    assert tracker.demand(CHAT) is not None
    for name in ("off", "fixed", "broken"):
        key = ServiceKey(NAMESPACE, name)
        assert tracker.demand(key) is None
        assert tracker.condition(key, 1) is None
        assert tracker.observed_status(key, None) is None
    # An untracked service is planned as written.
    fixed = resource(records[2])
    assert tracker.planned(ServiceKey(NAMESPACE, "fixed"), fixed) is fixed

    # Autoscaling switched off: no longer tracked.
    tracker.sync([record(llmservice(autoscaling={"enabled": False}))])
    assert tracker.demand(CHAT) is None
    assert tracker.condition(CHAT, 1) is None


def test_a_new_service_starts_from_its_written_demand_clamped() -> None:
    tracker = tracker_for(
        llmservice(autoscaling={"enabled": True, "minRequestsPerSecond": "50"}),
        llmservice("capped", autoscaling={"enabled": True, "maxRequestsPerSecond": "10"}),
    )
    chat = tracker.demand(CHAT)
    assert chat is not None
    assert chat.requests_per_second == 50
    assert chat.shares == pytest.approx({"short": 0.7, "long": 0.3})
    capped = tracker.demand(ServiceKey(NAMESPACE, "capped"))
    assert capped is not None
    assert capped.requests_per_second == 10
    status, reason, _ = condition(tracker)
    assert (status, reason) == ("False", NO_DATA)  # nothing read yet


# -- readings move the demand -----------------------------------------------------------------


def test_a_reading_moves_the_demand_after_the_window_and_reports_the_cause_once() -> None:
    tracker = tracker_for(llmservice())
    moved = feed(tracker, START, START + 45, short=42.7, long=18.3)  # 61 req/s, the same mix
    # The first reading changes MetricsAvailable (the planner must write it), the rest nothing.
    assert moved[0][1] == {CHAT}
    assert all(keys == set() for _, keys in moved[1:])
    assert rps(tracker) == 40
    assert tracker.take_cause(CHAT) is None

    # Watched for the whole 60 s window: the demand moves.
    moved = feed(tracker, START + 60, START + 60, short=42.7, long=18.3)
    assert moved == [(START + 60, {CHAT})]
    assert rps(tracker) == pytest.approx(61)
    assert tracker.take_cause(CHAT) == "demand 40 → 61 req/s (1 m rate)"
    assert tracker.take_cause(CHAT) is None
    assert condition(tracker)[:2] == ("True", LOAD_OBSERVED)
    assert "router" in condition(tracker)[2]


def test_causes_not_taken_yet_accumulate() -> None:
    tracker = tracker_for(
        llmservice(
            autoscaling={
                "enabled": True,
                "scaleUpStabilizationSeconds": 0,
                "scaleDownStabilizationSeconds": 0,
            }
        )
    )
    tracker.apply(reading(START, 56, 24), START)  # 80 req/s
    tracker.apply(reading(START + 15, 14, 6), START + 15)  # 20 req/s
    assert tracker.take_cause(CHAT) == (
        "demand 40 → 80 req/s (1 m rate); demand 80 → 20 req/s (highest 1 m rate of 0 s)"
    )
    assert tracker.take_cause(CHAT) is None


def test_planned_is_the_service_with_the_tracked_demand_and_nothing_else_changed() -> None:
    chat = record(llmservice())
    tracker = tracker_for(llmservice())
    # 61 req/s, of which 60 % long prompts (30 % planned), for longer than the window.
    feed(tracker, START, START + 120, short=24.4, long=36.6)
    planned = tracker.planned(CHAT, resource(chat))

    workload = planned.spec.workload
    assert workload.requests_per_second == Decimal("61.000000")
    shares = {c.name: c.share for c in workload.classes}
    total = sum(shares.values())
    assert {name: share / total for name, share in shares.items()} == pytest.approx(
        {"short": 0.4, "long": 0.6}
    )
    written = resource(chat)
    assert [(c.name, c.input_tokens, c.output_tokens) for c in workload.classes] == [
        (c.name, c.input_tokens, c.output_tokens) for c in written.spec.workload.classes
    ]
    assert workload.headroom_percent == 25
    assert workload.autoscaling == written.spec.workload.autoscaling
    assert planned.metadata == written.metadata
    assert planned.status == written.status
    ignore = {"workload": {"requests_per_second", "classes"}}
    assert planned.spec.model_dump(exclude=ignore) == written.spec.model_dump(exclude=ignore)
    # Still a valid LLMService, and the written one is untouched.
    LLMService.model_validate(planned.model_dump(by_alias=True))
    assert written.spec.workload.requests_per_second == Decimal("40")


def test_a_service_planned_before_any_reading_is_planned_as_written() -> None:
    chat = record(llmservice())
    tracker = tracker_for(llmservice())
    planned = tracker.planned(CHAT, resource(chat))
    assert planned.spec.workload.requests_per_second == Decimal("40")
    shares = {c.name: c.share for c in planned.spec.workload.classes}
    assert shares["short"] / (shares["short"] + shares["long"]) == pytest.approx(0.7)


def test_observed_status_reports_the_latest_load_and_the_planned_demand() -> None:
    tracker = tracker_for(llmservice())
    feed(tracker, START, START + 75, short=24.4, long=36.6)
    observed = tracker.observed_status(CHAT, None)
    assert observed is not None
    assert observed.requests_per_second == Decimal("61.00")
    assert observed.planned_requests_per_second == Decimal("61.00")
    assert observed.class_shares == {"long": "0.600", "short": "0.400"}
    assert observed.source == "router"
    assert observed.window_seconds == 60
    assert observed.time == "2025-12-29T09:21:15Z"  # START + 75


# -- when there is no load to read --------------------------------------------------------------


def test_a_prometheus_outage_keeps_the_demand_and_says_why() -> None:
    tracker = tracker_for(llmservice())
    feed(tracker, START, START + 75, short=42.7, long=18.3)
    assert rps(tracker) == pytest.approx(61)
    tracker.take_cause(CHAT)

    outage = LoadReading({}, ERROR)
    assert tracker.apply(outage, START + 90) == {CHAT}  # the condition changed
    assert tracker.apply(outage, START + 105) == set()  # and then did not
    status, reason, message = condition(tracker)
    assert (status, reason) == ("False", UNREACHABLE)
    assert ERROR in message
    assert "planning for the last demand, 61.00 req/s" in message
    assert rps(tracker) == pytest.approx(61)
    assert tracker.take_cause(CHAT) is None


async def test_without_a_prometheus_url_the_written_demand_is_kept() -> None:
    tracker = DemandTracker(None, clock=Clock())
    tracker.sync([record(llmservice())])
    assert await tracker.sample() == {CHAT}
    status, reason, message = condition(tracker)
    assert (status, reason) == ("False", NOT_CONFIGURED)
    assert "prometheus.url" in message
    assert "40.00 req/s" in message
    assert rps(tracker) == 40
    assert await tracker.sample() == set()


def test_a_service_without_metrics_has_no_data() -> None:
    tracker = tracker_for(llmservice(), llmservice("batch"))
    moved = tracker.apply(reading(START, 28, 12, name="batch"), START)
    assert moved == {CHAT, ServiceKey(NAMESPACE, "batch")}
    status, reason, message = condition(tracker)
    assert (status, reason) == ("False", NO_DATA)
    assert "no router or vLLM metrics" in message
    assert condition(tracker, ServiceKey(NAMESPACE, "batch"))[:2] == ("True", LOAD_OBSERVED)


async def test_sample_asks_the_reader_for_every_tracked_service_at_the_clocks_time() -> None:
    clock = Clock()
    reader = Reader(LoadReading({}))
    tracker = DemandTracker(reader, clock=clock)
    tracker.sync([record(llmservice()), record(llmservice("off", autoscaling={}))])
    reader.answer = reading(clock.now, 28, 12, source="vllm")
    await tracker.sample()
    assert reader.calls == [
        (
            START,
            {(NAMESPACE, "chat"): (ClassShape("short", 256), ClassShape("long", 4096))},
        )
    ]
    assert condition(tracker)[:2] == ("True", LOAD_OBSERVED)
    assert "vllm" in condition(tracker)[2]
    # Nothing tracked: the reader is not asked at all.
    tracker.sync([])
    assert await tracker.sample() == set()
    assert len(reader.calls) == 1


# -- restarts and edits -------------------------------------------------------------------------


def observed_status(planned: str, shares: Mapping[str, str]) -> dict[str, Any]:
    return {
        "observedDemand": {
            "requestsPerSecond": "63.20",
            "plannedRequestsPerSecond": planned,
            "classShares": dict(shares),
            "source": "router",
            "windowSeconds": 60,
            "time": "2025-12-29T09:00:00Z",
        }
    }


def test_a_restarted_operator_resumes_from_the_status() -> None:
    status = observed_status("61.00", {"short": "0.400", "long": "0.600"})
    tracker = tracker_for(llmservice(status=status))
    demand = tracker.demand(CHAT)
    assert demand is not None
    assert demand.requests_per_second == pytest.approx(61)
    assert demand.shares == pytest.approx({"short": 0.4, "long": 0.6})
    # Until the first reading, the status keeps the load last reported.
    previous = record(llmservice(status=status)).status
    assert previous is not None
    observed = tracker.observed_status(CHAT, previous.observed_demand)
    assert observed is not None
    assert observed.requests_per_second == Decimal("63.20")
    assert observed.planned_requests_per_second == Decimal("61.00")


def test_a_status_for_other_classes_is_not_resumed() -> None:
    status = observed_status("61.00", {"default": "1.000"})
    tracker = tracker_for(llmservice(status=status))
    assert rps(tracker) == 40


def test_a_resumed_demand_is_clamped_to_the_current_limits() -> None:
    status = observed_status("500.00", {"short": "0.400", "long": "0.600"})
    limits = {"enabled": True, "maxRequestsPerSecond": "100"}
    tracker = tracker_for(llmservice(autoscaling=limits, status=status))
    assert rps(tracker) == 100


def test_editing_the_written_demand_sets_a_new_starting_point() -> None:
    tracker = tracker_for(llmservice())
    feed(tracker, START, START + 75, short=42.7, long=18.3)
    assert rps(tracker) == pytest.approx(61)
    tracker.take_cause(CHAT)
    status = observed_status("61.00", {"short": "0.700", "long": "0.300"})

    # The user writes 50 req/s (the watch delivers the status written since).
    edited = record(llmservice(rps="50", status=status))
    tracker.sync([edited])
    assert rps(tracker) == 50
    planned = tracker.planned(CHAT, resource(edited))
    assert planned.spec.workload.requests_per_second == Decimal("50.000000")
    # The samples before the edit are gone: the load must stay high for a new full window.
    moved = feed(tracker, START + 90, START + 135, short=56, long=24)  # 80 req/s
    assert all(CHAT not in keys for _, keys in moved)
    assert rps(tracker) == 50
    feed(tracker, START + 150, START + 150, short=56, long=24)  # 60 s after the first
    assert rps(tracker) == pytest.approx(80)
    assert tracker.take_cause(CHAT) == "demand 50 → 80 req/s (1 m rate)"


def test_editing_the_limits_clamps_the_tracked_demand_without_a_restart() -> None:
    tracker = tracker_for(llmservice())
    feed(tracker, START, START + 75, short=42.7, long=18.3)
    capped = {"enabled": True, "maxRequestsPerSecond": "55"}
    tracker.sync([record(llmservice(autoscaling=capped))])
    assert rps(tracker) == 55
    # The history stays: the load still above the new ceiling moves nothing further.
    moved = feed(tracker, START + 90, START + 90, short=42.7, long=18.3)
    assert moved == [(START + 90, set())]


def test_the_first_readings_after_an_outage_wait_a_whole_window() -> None:
    tracker = tracker_for(llmservice())  # 40 req/s written, up window 60 s
    feed(tracker, START, START + 75, short=28.0, long=12.0)  # steady at the demand
    tracker.apply(LoadReading({}, ERROR), START + 90)  # Prometheus away ...
    # ... and back with a partial, high rate: one reading must not move the demand.
    assert tracker.apply(reading(START + 190, 56.0, 24.0), START + 190) == {CHAT}  # condition
    assert rps(tracker) == pytest.approx(40)
    moved = feed(tracker, START + 205, START + 265, short=56.0, long=24.0)
    assert [at for at, keys in moved if keys] == [START + 250]  # a full 60 s window later
    assert rps(tracker) == pytest.approx(80)


def test_the_status_load_is_rewritten_only_when_it_moves() -> None:
    tracker = tracker_for(llmservice())
    feed(tracker, START, START + 75, short=28.0, long=12.0)
    first = tracker.observed_status(CHAT, None)
    assert first is not None and first.requests_per_second == Decimal("40.00")
    feed(tracker, START + 90, START + 90, short=28.4, long=12.2)  # +1.5 %
    assert tracker.observed_status(CHAT, first) == first
    feed(tracker, START + 105, START + 105, short=30.8, long=13.2)  # +10 %
    moved = tracker.observed_status(CHAT, first)
    assert moved is not None and moved.requests_per_second == Decimal("44.00")


def test_an_edit_made_while_the_operator_was_away_is_the_new_starting_point() -> None:
    tracker = tracker_for(llmservice())
    feed(tracker, START, START + 75, short=42.7, long=18.3)  # planned 61 from written 40
    observed = tracker.observed_status(CHAT, None)
    assert observed is not None
    status = observed.model_dump(mode="json", by_alias=True)
    resumed = tracker_for(llmservice(status={"observedDemand": status}))
    assert rps(resumed) == pytest.approx(61)
    edited = tracker_for(llmservice(rps="25", status={"observedDemand": status}))
    assert rps(edited) == pytest.approx(25)
