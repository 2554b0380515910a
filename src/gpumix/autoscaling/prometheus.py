"""Per-class request rates of every LLMService, read from Prometheus (blocking: call it in a
thread). No Kubernetes imports. The labels it relies on are the dev cluster's scrape job's,
which a production Prometheus must keep too (the chart's values say how): ``namespace``,
``component`` (``router`` or ``inference-server``) and the pods' ``gpumix.io/<x>`` labels as
``<x>`` (``service``; ``gpu_type``, ``tensor_parallel``, ``weight_format`` for calibration).

- **Router first.** ``gpumix_router_requests_received_total{class}`` counts every request of
  a known class on arrival, by the class it is routed as, whether it is then answered, refused
  (a 503 under overload is demand too) or abandoned. A router that Prometheus scrapes but that
  has received nothing yet reads as zero load.
- **vLLM otherwise** (no router scraped for the service): the completed-request rate plus the
  growth of the waiting queue, and the mix from the prompt-length histogram, each request
  counted in the class whose prompt length is nearest (on a log scale).

All queries are evaluated at one instant, so the rates of one reading are consistent.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from gpumix.autoscaling.calibration import LiveLatency
from gpumix.autoscaling.recommend import LoadSample

ServiceName = tuple[str, str]  # (namespace, name)

ROUTER_RATE = (
    "sum by (namespace, service, class) "
    '(rate(gpumix_router_requests_received_total{{component="router"}}[{window}]))'
)
# Routers from before the arrival counter (an operator upgraded ahead of its routers): their
# answered requests, so that a router without the new series never reads as zero load.
ROUTER_ANSWERED_RATE = (
    "sum by (namespace, service, class) "
    '(rate(gpumix_router_requests_total{{component="router",class!=""}}[{window}]))'
)
ROUTER_UP = 'max by (namespace, service) (up{component="router"})'
VLLM_COMPLETED = (
    "sum by (namespace, service) "
    '(rate(vllm:request_success_total{{component="inference-server"}}[{window}]))'
)
VLLM_QUEUE_GROWTH = (
    "sum by (namespace, service) "
    '(deriv(vllm:num_requests_waiting{{component="inference-server"}}[{window}]))'
)
VLLM_PROMPT_BUCKETS = (
    "sum by (namespace, service, le) "
    '(rate(vllm:request_prompt_tokens_bucket{component="inference-server"}[5m]))'
)
WINDOWS = ("1m", "5m")
# Per configuration of each service, over the calibration window.
CONFIGURATION = "namespace, service, gpu_type, tensor_parallel, weight_format"
VLLM = '{{component="inference-server"}}'
LATENCY_QUERIES = {
    "requests": f"sum by ({CONFIGURATION}) "
    f"(increase(vllm:request_time_per_output_token_seconds_count{VLLM}[{{window}}]))",
    "tpot": f"sum by ({CONFIGURATION}) "
    f"(rate(vllm:request_time_per_output_token_seconds_sum{VLLM}[{{window}}])) / "
    f"sum by ({CONFIGURATION}) "
    f"(rate(vllm:request_time_per_output_token_seconds_count{VLLM}[{{window}}]))",
    "batch": f"avg by ({CONFIGURATION}) "
    f"(avg_over_time(vllm:num_requests_running{VLLM}[{{window}}]))",
    "input": f"sum by ({CONFIGURATION}) (rate(vllm:request_prompt_tokens_sum{VLLM}[{{window}}]))"
    f" / sum by ({CONFIGURATION}) (rate(vllm:request_prompt_tokens_count{VLLM}[{{window}}]))",
    "prompt_rate": f"avg by ({CONFIGURATION}) (rate(vllm:prompt_tokens_total{VLLM}[{{window}}]))",
    "replicas": f"count by ({CONFIGURATION}) (vllm:num_requests_running{VLLM})",
    "output": f"sum by ({CONFIGURATION}) "
    f"(rate(vllm:request_generation_tokens_sum{VLLM}[{{window}}])) / "
    f"sum by ({CONFIGURATION}) (rate(vllm:request_generation_tokens_count{VLLM}[{{window}}]))",
}


@dataclass(frozen=True)
class ClassShape:
    name: str
    input_tokens: int


@dataclass(frozen=True)
class LatencyRow:
    """One configuration of one service, as its pods' labels name it."""

    service: ServiceName
    gpu_type: str
    tensor_parallel: int
    weight_format: str
    live: LiveLatency


@dataclass(frozen=True)
class LatencyReading:
    rows: tuple[LatencyRow, ...]
    error: str | None = None


@dataclass(frozen=True)
class LoadReading:
    """One reading of every service's load; ``error`` says why there is none at all."""

    samples: Mapping[ServiceName, LoadSample]
    error: str | None = None


class PrometheusLoadReader:
    def __init__(self, url: str, *, timeout_seconds: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        # No retry: a reading that fails is simply the last one kept, and the next is seconds
        # away; urllib3's default backoff would hold the thread for much longer (and log a
        # warning per query). The timeout as given: requests takes seconds as a float, and
        # int() would turn a sub-second timeout into 0, which urllib3 refuses.
        self._client = PrometheusConnect(self.url, retry=Retry(total=0), timeout=timeout_seconds)

    def _query(self, promql: str, at: float) -> list[dict[str, Any]]:
        result = self._client.custom_query(promql, params={"time": f"{at:.3f}"})
        return list(result)

    def read(self, at: float, classes: Mapping[ServiceName, Sequence[ClassShape]]) -> LoadReading:
        """The load of each service in ``classes`` at ``at`` (Unix seconds)."""
        try:
            return LoadReading(self._read(at, classes))
        except requests.RequestException as error:
            return LoadReading({}, f"Prometheus at {self.url} is unreachable: {_short(error)}")
        except PrometheusApiClientException as error:
            return LoadReading({}, f"Prometheus at {self.url} refused a query: {_short(error)}")

    def read_latencies(self, at: float, window: str = "5m") -> LatencyReading:
        """Every configuration's mean TPOT, batch and request shape over ``window``."""
        try:
            values = {
                name: {
                    _configuration(row): _value(row)
                    for row in self._query(q.format(window=window), at)
                }
                for name, q in LATENCY_QUERIES.items()
            }
        except requests.RequestException as error:
            return LatencyReading((), f"Prometheus at {self.url} is unreachable: {_short(error)}")
        except PrometheusApiClientException as error:
            return LatencyReading((), f"Prometheus at {self.url} refused a query: {_short(error)}")
        rows = []
        for configuration, tpot in values["tpot"].items():
            service, gpu_type, tensor_parallel, weight_format = configuration
            if not gpu_type or not tensor_parallel.isdigit() or not weight_format:
                continue  # not a pod gpumix labelled
            rows.append(
                LatencyRow(
                    service=service,
                    gpu_type=gpu_type,
                    tensor_parallel=int(tensor_parallel),
                    weight_format=weight_format,
                    live=LiveLatency(
                        requests=values["requests"].get(configuration, 0.0),
                        mean_batch=values["batch"].get(configuration, 0.0),
                        mean_tpot_seconds=tpot,
                        mean_input_tokens=values["input"].get(configuration, 0.0),
                        mean_output_tokens=values["output"].get(configuration, 0.0),
                        prompt_tokens_per_second=values["prompt_rate"].get(configuration),
                        replicas=values["replicas"].get(configuration, 1.0),
                    ),
                )
            )
        return LatencyReading(tuple(sorted(rows, key=lambda row: (row.service, row.gpu_type))))

    def _read(
        self, at: float, classes: Mapping[ServiceName, Sequence[ClassShape]]
    ) -> dict[ServiceName, LoadSample]:
        routed: dict[str, dict[ServiceName, dict[str, float]]] = {}
        for window in WINDOWS:
            received = _by_service_and(self._query(ROUTER_RATE.format(window=window), at))
            answered = _by_service_and(self._query(ROUTER_ANSWERED_RATE.format(window=window), at))
            routed[window] = {**answered, **received}
        router_up = {_service(row) for row in self._query(ROUTER_UP, at) if _value(row) > 0} & set(
            classes
        )
        samples: dict[ServiceName, LoadSample] = {}
        for name in router_up:
            known = [shape.name for shape in classes[name]]
            samples[name] = LoadSample(
                time=at,
                rate_1m=_only(routed["1m"].get(name, {}), known),
                rate_5m=_only(routed["5m"].get(name, {}), known),
                source="router",
            )
        missing = set(classes) - router_up
        if missing:
            samples.update(self._from_vllm(at, {name: classes[name] for name in missing}))
        return samples

    def _from_vllm(
        self, at: float, classes: Mapping[ServiceName, Sequence[ClassShape]]
    ) -> dict[ServiceName, LoadSample]:
        totals: dict[str, dict[ServiceName, float]] = {}
        for window in WINDOWS:
            completed = _totals(self._query(VLLM_COMPLETED.format(window=window), at))
            growth = _totals(self._query(VLLM_QUEUE_GROWTH.format(window=window), at))
            totals[window] = {
                name: rate + max(growth.get(name, 0.0), 0.0) for name, rate in completed.items()
            }
        buckets: dict[ServiceName, dict[float, float]] = defaultdict(dict)
        for row in self._query(VLLM_PROMPT_BUCKETS, at):
            buckets[_service(row)][float(row["metric"].get("le", "+Inf"))] = _value(row)
        samples = {}
        for name, shapes in classes.items():
            if name not in totals["1m"] and name not in totals["5m"]:
                continue  # no vLLM pod of this service is scraped: no data
            histogram = buckets.get(name, {})
            mix = class_mix(histogram, shapes)
            samples[name] = LoadSample(
                time=at,
                rate_1m={c: totals["1m"].get(name, 0.0) * share for c, share in mix.items()},
                rate_5m={c: totals["5m"].get(name, 0.0) * share for c, share in mix.items()},
                source="vllm",
                # without counted prompts the even split is a placeholder, not a mix
                mix_known=any(count > 0 for count in histogram.values()),
            )
        return samples


def class_mix(cumulative: Mapping[float, float], shapes: Sequence[ClassShape]) -> dict[str, float]:
    """The share of requests in each class, from a cumulative prompt-length histogram
    (upper bound → rate of requests at or below it).

    A request belongs to the class whose prompt length is nearest on a log scale, so the
    boundary between two classes is the geometric mean of their lengths; the histogram is read
    at each boundary by linear interpolation inside the bucket. Without any counted request the
    classes split evenly, and the reader marks the sample's mix unknown.
    """
    ordered = sorted(shapes, key=lambda shape: shape.input_tokens)
    total = cumulative.get(math.inf, max(cumulative.values(), default=0.0))
    if total <= 0:
        return {shape.name: 1 / len(ordered) for shape in ordered}
    below = [0.0]
    for low, high in itertools.pairwise(ordered):
        boundary = math.sqrt(low.input_tokens * high.input_tokens)
        below.append(_at_or_below(cumulative, boundary))
    below.append(total)
    return {
        shape.name: max(below[index + 1] - below[index], 0.0) / total
        for index, shape in enumerate(ordered)
    }


def _at_or_below(cumulative: Mapping[float, float], tokens: float) -> float:
    previous_bound, previous_count = 0.0, 0.0
    for bound in sorted(cumulative):
        count = cumulative[bound]
        if tokens <= bound:
            if math.isinf(bound):
                return previous_count
            fraction = (tokens - previous_bound) / (bound - previous_bound)
            return previous_count + fraction * (count - previous_count)
        previous_bound, previous_count = bound, count
    return previous_count


def _service(row: Mapping[str, Any]) -> ServiceName:
    labels = row.get("metric", {})
    return (str(labels.get("namespace", "")), str(labels.get("service", "")))


def _configuration(row: Mapping[str, Any]) -> tuple[ServiceName, str, str, str]:
    labels = row.get("metric", {})
    return (
        _service(row),
        str(labels.get("gpu_type", "")),
        str(labels.get("tensor_parallel", "")),
        str(labels.get("weight_format", "")),
    )


def _value(row: Mapping[str, Any]) -> float:
    value = float(row["value"][1])
    return value if math.isfinite(value) else 0.0


def _by_service_and(rows: Sequence[Mapping[str, Any]]) -> dict[ServiceName, dict[str, float]]:
    found: dict[ServiceName, dict[str, float]] = defaultdict(dict)
    for row in rows:
        found[_service(row)][str(row["metric"].get("class", ""))] = _value(row)
    return found


def _totals(rows: Sequence[Mapping[str, Any]]) -> dict[ServiceName, float]:
    return {_service(row): _value(row) for row in rows}


def _only(rates: Mapping[str, float], known: Sequence[str]) -> dict[str, float]:
    # The router routes only the spec's classes; a class from before a spec edit is history.
    return {name: max(rates.get(name, 0.0), 0.0) for name in known}


def _short(error: BaseException) -> str:
    # requests' own text quotes the whole URL, query included: name the failure instead.
    if isinstance(error, requests.Timeout):
        return "no answer within the timeout"
    if isinstance(error, requests.ConnectionError):
        return "cannot connect"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
