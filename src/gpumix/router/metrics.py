"""The router's Prometheus metrics, in a registry of its own (never the process-global one:
the dev cluster's pod runner hosts several routers in one process).

- ``gpumix_router_requests_total{class,deployment,code}``: requests answered. ``code`` is the
  status the client saw (the backend's, or the router's own 400/502/503), ``499`` when the
  client hung up first; ``deployment`` is empty when no pod was chosen.
- ``gpumix_router_requests_received_total{class}``: requests of a known class, counted on
  arrival (what autoscaling reads: the demand, whether or not it is answered in time).
- ``gpumix_router_request_duration_seconds{class,deployment}``: from the request's arrival to
  the last byte of the response.
- ``gpumix_router_time_to_first_byte_seconds{class,deployment}``: from the request's arrival to
  the first byte of the backend's response body (for a stream: about the first token).
- ``gpumix_router_in_flight_requests{deployment}``: requests sent to a backend and not finished.
- ``gpumix_router_upstream_retries_total{deployment}``: retries on another pod after a pod of
  this Deployment refused or reset the connection before its first byte.
- ``gpumix_router_class_estimate_total{header_class,estimated_class}``: for requests that
  carry ``x-gpumix-class``, what the router would have estimated: the estimate's confusion
  matrix.
"""

from __future__ import annotations

from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

MetricT = TypeVar("MetricT", bound=MetricWrapperBase)

# Latency buckets from sub-millisecond (cached, tiny requests) to long generations.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "gpumix_router_requests_total",
            "Requests answered by the router, by request class, Deployment and status code.",
            ["class", "deployment", "code"],
            registry=self.registry,
        )
        self.received_requests = Counter(
            "gpumix_router_requests_received",
            "Requests of a known class, counted on arrival.",
            ["class"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "gpumix_router_request_duration_seconds",
            "Seconds from a request's arrival to the last byte of its response.",
            ["class", "deployment"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.time_to_first_byte = Histogram(
            "gpumix_router_time_to_first_byte_seconds",
            "Seconds from a request's arrival to the first byte of the backend's response body.",
            ["class", "deployment"],
            buckets=TTFB_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "gpumix_router_in_flight_requests",
            "Requests sent to a backend and not finished, per Deployment.",
            ["deployment"],
            registry=self.registry,
        )
        self.retries = Counter(
            "gpumix_router_upstream_retries_total",
            "Connections refused or reset before the first byte, retried on another pod.",
            ["deployment"],
            registry=self.registry,
        )
        self.class_estimate = Counter(
            "gpumix_router_class_estimate_total",
            "Requests with an x-gpumix-class header, by that class and the router's estimate.",
            ["header_class", "estimated_class"],
            registry=self.registry,
        )
        # ``labels()`` takes a lock and hashes its arguments; the request path asks for the same
        # few children over and over, so keep them.
        self._children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}

    def _child(self, metric: MetricT, *labels: str) -> MetricT:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return cast(MetricT, child)

    def observe_request(
        self, class_name: str, deployment: str, code: int, duration_seconds: float
    ) -> None:
        self._child(self.requests, class_name, deployment, str(code)).inc()
        if deployment:
            self._child(self.duration, class_name, deployment).observe(duration_seconds)

    def received(self, class_name: str) -> None:
        self._child(self.received_requests, class_name).inc()

    def observe_first_byte(self, class_name: str, deployment: str, seconds: float) -> None:
        self._child(self.time_to_first_byte, class_name, deployment).observe(seconds)

    def in_flight_changed(self, deployment: str, delta: int) -> None:
        self._child(self.in_flight, deployment).inc(delta)

    def retried(self, deployment: str) -> None:
        self._child(self.retries, deployment).inc()

    def estimated(self, header_class: str, estimated_class: str) -> None:
        self._child(self.class_estimate, header_class, estimated_class).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
