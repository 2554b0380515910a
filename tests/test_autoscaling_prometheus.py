"""Reading the load from Prometheus (gpumix.autoscaling.prometheus).

``class_mix`` turns a cumulative prompt-length histogram into class shares, the boundary
between two classes at the geometric mean of their prompt lengths. ``PrometheusLoadReader`` is
run against a small fake Prometheus HTTP API on 127.0.0.1 that answers each PromQL query with a
canned instant vector: router rates per class where a router is scraped, the vLLM fallback
(completed rate plus queue growth, mix from the prompt buckets) where none is, nothing for a
service without metrics, and an error (not an exception) when Prometheus is unreachable or
refuses the query.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from gpumix.autoscaling.prometheus import (
    ROUTER_ANSWERED_RATE,
    ROUTER_RATE,
    ROUTER_UP,
    VLLM_COMPLETED,
    VLLM_PROMPT_BUCKETS,
    VLLM_QUEUE_GROWTH,
    ClassShape,
    PrometheusLoadReader,
    class_mix,
)

NAMESPACE = "team-a"
AT = 1_767_000_000.25
SHAPES = (ClassShape("short", 100), ClassShape("long", 10_000))  # boundary at 1000 tokens

# -- class_mix ------------------------------------------------------------------------------


def test_the_mix_splits_at_the_geometric_mean_of_the_prompt_lengths() -> None:
    # 40 requests/s at or below 1000 tokens (the geometric mean of 100 and 10 000), all 100 at
    # or below 10 000. An arithmetic midpoint (5050) would read about 67 % short.
    mix = class_mix({1000.0: 40.0, 10_000.0: 100.0, math.inf: 100.0}, SHAPES)
    assert mix == pytest.approx({"short": 0.4, "long": 0.6})


def test_the_mix_interpolates_inside_the_bucket_that_holds_the_boundary() -> None:
    shapes = [ClassShape("short", 100), ClassShape("long", 400)]  # boundary at 200 tokens
    mix = class_mix({100.0: 10.0, 300.0: 50.0, math.inf: 60.0}, shapes)
    # Halfway through the (100, 300] bucket: 10 + 40 / 2 = 30 of 60.
    assert mix == pytest.approx({"short": 0.5, "long": 0.5})


def test_the_mix_of_three_classes_does_not_depend_on_their_order() -> None:
    shapes = [ClassShape("long", 8000), ClassShape("short", 125), ClassShape("medium", 1000)]
    # Boundaries: sqrt(125 × 1000) ≈ 354 and sqrt(1000 × 8000) ≈ 2828.
    histogram = {128.0: 10.0, 354.0: 20.0, 2828.0: 70.0, 16_384.0: 100.0, math.inf: 100.0}
    mix = class_mix(histogram, shapes)
    assert mix == pytest.approx({"short": 0.2, "medium": 0.5, "long": 0.3}, abs=0.005)
    assert class_mix(histogram, list(reversed(shapes))) == pytest.approx(mix)
    assert sum(mix.values()) == pytest.approx(1.0)


def test_prompts_beyond_the_last_finite_bucket_count_in_the_longest_class() -> None:
    shapes = [ClassShape("short", 100), ClassShape("long", 100_000)]  # boundary ≈ 3162
    mix = class_mix({1000.0: 10.0, 2000.0: 20.0, math.inf: 100.0}, shapes)
    assert mix == pytest.approx({"short": 0.2, "long": 0.8})


def test_a_histogram_without_an_inf_bucket_uses_its_largest_count() -> None:
    mix = class_mix({1000.0: 30.0, 10_000.0: 120.0}, SHAPES)
    assert mix == pytest.approx({"short": 0.25, "long": 0.75})


def test_no_counted_request_splits_the_classes_evenly() -> None:
    assert class_mix({}, SHAPES) == pytest.approx({"short": 0.5, "long": 0.5})
    zero = {1000.0: 0.0, math.inf: 0.0}
    assert class_mix(zero, SHAPES) == pytest.approx({"short": 0.5, "long": 0.5})


def test_a_single_class_takes_every_request() -> None:
    assert class_mix({1000.0: 3.0, math.inf: 5.0}, [ClassShape("default", 512)]) == {"default": 1.0}


# -- a fake Prometheus ----------------------------------------------------------------------


def row(
    service: str, value: float | str, namespace: str = NAMESPACE, **labels: str
) -> dict[str, Any]:
    """One element of an instant vector."""
    metric = {"namespace": namespace, "service": service, **labels}
    return {"metric": metric, "value": [AT, str(value)]}


@dataclass
class FakePrometheus:
    """Canned results by PromQL query; any other query is an empty vector."""

    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    status: int = 200
    delay_seconds: float = 0.0
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    url: str = ""
    released: threading.Event = field(default_factory=threading.Event)

    def body(self, query: str) -> tuple[int, dict[str, Any]]:
        if self.status != 200:
            return self.status, {"status": "error", "errorType": "bad_data", "error": "parse"}
        vector = {"resultType": "vector", "result": self.results.get(query, [])}
        return 200, {"status": "success", "data": vector}


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            params = parse_qs(parsed.query)
            fake.requests.append(params)
            if fake.delay_seconds:
                fake.released.wait(fake.delay_seconds)
            if parsed.path != "/api/v1/query":
                code, payload = 404, {"status": "error", "error": "not found"}
            else:
                code, payload = fake.body(params.get("query", [""])[0])
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            try:
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the reader gave up waiting

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield fake
    finally:
        fake.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def windows(
    results: dict[str, list[dict[str, Any]]],
    template: str,
    one_minute: Sequence[dict[str, Any]] = (),
    five_minutes: Sequence[dict[str, Any]] = (),
) -> None:
    """Canned results of a query over ``[1m]`` and over ``[5m]``."""
    results[template.format(window="1m")] = list(one_minute)
    results[template.format(window="5m")] = list(five_minutes)


def classes(*names: str) -> dict[tuple[str, str], Sequence[ClassShape]]:
    return {(NAMESPACE, name): SHAPES for name in names}


# -- the router -----------------------------------------------------------------------------


def test_router_rates_per_class_for_services_with_a_scraped_router(
    prometheus: FakePrometheus,
) -> None:
    results = prometheus.results
    results[ROUTER_UP] = [row("chat", 1), row("idle", 1), row("other", 1, namespace="team-b")]
    windows(
        results,
        ROUTER_RATE,
        one_minute=[
            row("chat", 3.0, **{"class": "short"}),
            row("chat", 1.0, **{"class": "long"}),
            # A class from before a spec edit: history, not demand.
            row("chat", 7.0, **{"class": "retired"}),
            row("other", 9.0, namespace="team-b", **{"class": "short"}),
        ],
        five_minutes=[
            row("chat", 2.0, **{"class": "short"}),
            row("chat", 2.5, **{"class": "long"}),
        ],
    )
    reader = PrometheusLoadReader(prometheus.url)
    reading = reader.read(AT, classes("chat", "idle"))

    assert reading.error is None
    assert set(reading.samples) == {(NAMESPACE, "chat"), (NAMESPACE, "idle")}
    chat = reading.samples[(NAMESPACE, "chat")]
    assert chat.source == "router"
    assert chat.time == AT
    assert chat.rate_1m == pytest.approx({"short": 3.0, "long": 1.0})
    assert chat.rate_5m == pytest.approx({"short": 2.0, "long": 2.5})
    assert chat.load == pytest.approx(4.5)
    # A router that is scraped but has answered nothing yet: zero load, not missing data.
    idle = reading.samples[(NAMESPACE, "idle")]
    assert idle.source == "router"
    assert idle.load == 0
    assert idle.rate_1m == {"short": 0.0, "long": 0.0}


def test_every_query_of_one_reading_is_evaluated_at_the_same_instant(
    prometheus: FakePrometheus,
) -> None:
    PrometheusLoadReader(prometheus.url).read(AT, classes("chat"))
    assert prometheus.requests
    assert {params["time"][0] for params in prometheus.requests} == {f"{AT:.3f}"}


def test_a_router_that_is_down_falls_back_to_the_vllm_metrics(
    prometheus: FakePrometheus,
) -> None:
    results = prometheus.results
    results[ROUTER_UP] = [row("chat", 0)]  # the scrape failed
    windows(results, VLLM_COMPLETED, one_minute=[row("chat", 2.0)], five_minutes=[row("chat", 2.0)])
    reading = PrometheusLoadReader(prometheus.url).read(AT, classes("chat"))
    assert reading.samples[(NAMESPACE, "chat")].source == "vllm"


# -- the vLLM fallback ----------------------------------------------------------------------


def test_without_a_router_the_load_is_vllm_completions_plus_queue_growth(
    prometheus: FakePrometheus,
) -> None:
    results = prometheus.results
    windows(
        results, VLLM_COMPLETED, one_minute=[row("batch", 4.0)], five_minutes=[row("batch", 3.0)]
    )
    # The queue grows by 1 req/s over the last minute; it shrank over five (not negative load).
    windows(
        results,
        VLLM_QUEUE_GROWTH,
        one_minute=[row("batch", 1.0)],
        five_minutes=[row("batch", -2.0)],
    )
    results[VLLM_PROMPT_BUCKETS] = [
        row("batch", 1.2, le="1000.0"),
        row("batch", 4.0, le="10000.0"),
        row("batch", 4.0, le="+Inf"),
    ]
    reading = PrometheusLoadReader(prometheus.url).read(AT, classes("batch"))

    assert reading.error is None
    batch = reading.samples[(NAMESPACE, "batch")]
    assert batch.source == "vllm"
    assert batch.time == AT
    assert batch.total_1m == pytest.approx(5.0)
    assert batch.total_5m == pytest.approx(3.0)
    # 30 % of the prompts are at or below 1000 tokens: the short class.
    assert batch.rate_1m == pytest.approx({"short": 1.5, "long": 3.5})
    assert batch.rate_5m == pytest.approx({"short": 0.9, "long": 2.1})


def test_router_and_vllm_services_are_read_together(prometheus: FakePrometheus) -> None:
    results = prometheus.results
    results[ROUTER_UP] = [row("chat", 1)]
    windows(results, ROUTER_RATE, one_minute=[row("chat", 6.0, **{"class": "short"})])
    # vLLM pods of the routed service report too; the router's numbers win.
    windows(
        results,
        VLLM_COMPLETED,
        one_minute=[row("chat", 50.0), row("batch", 2.0)],
        five_minutes=[row("batch", 1)],
    )
    reading = PrometheusLoadReader(prometheus.url).read(AT, classes("chat", "batch"))
    assert reading.samples[(NAMESPACE, "chat")].source == "router"
    assert reading.samples[(NAMESPACE, "chat")].total_1m == pytest.approx(6.0)
    assert reading.samples[(NAMESPACE, "batch")].source == "vllm"
    assert reading.samples[(NAMESPACE, "batch")].total_1m == pytest.approx(2.0)


def test_a_service_without_any_metrics_is_absent_from_the_samples(
    prometheus: FakePrometheus,
) -> None:
    windows(prometheus.results, VLLM_COMPLETED, one_minute=[row("batch", 1.0)])
    reading = PrometheusLoadReader(prometheus.url).read(AT, classes("batch", "ghost"))
    assert reading.error is None
    assert set(reading.samples) == {(NAMESPACE, "batch")}


def test_an_empty_prometheus_gives_no_samples_and_no_error(prometheus: FakePrometheus) -> None:
    reading = PrometheusLoadReader(prometheus.url).read(AT, classes("chat"))
    assert reading.error is None
    assert reading.samples == {}


# -- failures -------------------------------------------------------------------------------


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_an_unreachable_prometheus_is_an_error_not_an_exception(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    reader = PrometheusLoadReader(url, timeout_seconds=2)
    started = time.monotonic()
    reading = reader.read(AT, classes("chat"))
    assert time.monotonic() - started < 3
    assert reading.samples == {}
    assert reading.error is not None
    assert "unreachable" in reading.error
    assert url in reading.error


def test_a_prometheus_that_does_not_answer_in_time_is_unreachable(
    prometheus: FakePrometheus,
) -> None:
    prometheus.delay_seconds = 10
    reader = PrometheusLoadReader(prometheus.url, timeout_seconds=0.5)
    started = time.monotonic()
    reading = reader.read(AT, classes("chat"))
    # One try and one retry of the first query, half a second each.
    assert time.monotonic() - started < 3
    assert reading.error is not None
    assert "unreachable" in reading.error


def test_a_sub_second_timeout_still_reads(prometheus: FakePrometheus) -> None:
    """Regression: the timeout was truncated to whole seconds, so the 0.5 s the configuration
    file allows became 0, which urllib3 refuses with a ValueError out of every read."""
    prometheus.results[ROUTER_UP] = [row("chat", 1)]
    reading = PrometheusLoadReader(prometheus.url, timeout_seconds=0.5).read(AT, classes("chat"))
    assert reading.error is None
    assert reading.samples[(NAMESPACE, "chat")].source == "router"


def test_a_refused_query_is_an_error_that_says_so(prometheus: FakePrometheus) -> None:
    prometheus.status = 400
    reading = PrometheusLoadReader(prometheus.url).read(AT, classes("chat"))
    assert reading.samples == {}
    assert reading.error is not None
    assert "refused" in reading.error
    assert "400" in reading.error
    assert len(reading.error) < 400


def test_a_router_from_before_the_arrival_counter_is_read_from_its_answers(
    prometheus: FakePrometheus,
) -> None:
    # An operator upgraded ahead of its routers: no received series, only answered ones. The
    # service must not read as idle (and be scaled down to its floor).
    results = prometheus.results
    results[ROUTER_UP] = [row("old", 1), row("new", 1)]
    windows(results, ROUTER_ANSWERED_RATE, one_minute=[row("old", 5.0, **{"class": "short"})])
    windows(
        results,
        ROUTER_RATE,
        one_minute=[row("new", 2.0, **{"class": "short"})],
    )
    reading = PrometheusLoadReader(prometheus.url).read(AT, classes("old", "new"))
    assert reading.samples[(NAMESPACE, "old")].rate_1m == {"short": 5.0, "long": 0.0}
    assert reading.samples[(NAMESPACE, "new")].rate_1m == {"short": 2.0, "long": 0.0}
