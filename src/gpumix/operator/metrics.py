"""Prometheus metrics of the operator: what each LLMService costs and runs, what each pool
offers, and how the planner's solves go.

Everything lives in a registry created at startup (:func:`start_metrics_server`), never at
import, so tests and repeated starts get fresh series. The per-service and per-pool series are
rebuilt from the planner's state after every pass (:meth:`OperatorMetrics.update_fleet`) and
swapped in as a whole: a scrape never sees half a pass, and a deleted LLMService or pool drops
out instead of reporting its last values for ever.

Series (all gauges unless noted):

- ``gpumix_llmservice_cost_dollars_per_hour{namespace,name}``: the plan running now (the last
  good plan while a new spec is infeasible), as in ``status.costPerHour``
- ``gpumix_llmservice_desired_replicas``, ``gpumix_llmservice_ready_replicas``
- ``gpumix_llmservice_feasible``: 1 when the current spec has a plan, else 0
- ``gpumix_llmservice_savings_percent``: against the cheapest single-GPU-type plan, when known
- ``gpumix_pool_gpus``, ``gpumix_pool_allocated_gpus``, ``gpumix_pool_available_gpus`` and
  ``gpumix_pool_price_dollars_per_gpu_hour`` ``{pool,gpu_type,capacity_type}``
- ``gpumix_planner_solves_total{status}`` (counter; status Optimal, Feasible, Infeasible,
  NoSolutionFound, or Error when the solver raised), ``gpumix_planner_last_solve_seconds``,
  ``gpumix_planner_last_solve_gap``, ``gpumix_planner_last_solve_timestamp_seconds``
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from gpumix.operator.inventory import PoolInventory
from gpumix.resources import LLMServiceStatus
from gpumix.solver import PlanResult, SolveStatus

SERVICE_LABELS = ("namespace", "name")
POOL_LABELS = ("pool", "gpu_type", "capacity_type")
SOLVER_ERROR = "Error"


@dataclass(frozen=True)
class ServiceSample:
    """One LLMService as the planner last reported it (status None: not planned yet)."""

    namespace: str
    name: str
    status: LLMServiceStatus | None


def _feasible(status: LLMServiceStatus) -> float | None:
    for condition in status.conditions:
        if condition.type == "Feasible":
            return 1.0 if str(condition.status) == "True" else 0.0
    return None


def fleet_families(
    services: Iterable[ServiceSample], pools: Iterable[PoolInventory]
) -> list[Metric]:
    """The per-service and per-pool series for one planner pass. Pure."""
    cost = GaugeMetricFamily(
        "gpumix_llmservice_cost_dollars_per_hour",
        "USD per hour of the plan running for the LLMService",
        labels=SERVICE_LABELS,
    )
    desired = GaugeMetricFamily(
        "gpumix_llmservice_desired_replicas",
        "vLLM replicas the LLMService's plan asks for",
        labels=SERVICE_LABELS,
    )
    ready = GaugeMetricFamily(
        "gpumix_llmservice_ready_replicas",
        "vLLM replicas of the LLMService's plan that are ready",
        labels=SERVICE_LABELS,
    )
    feasible = GaugeMetricFamily(
        "gpumix_llmservice_feasible",
        "1 when the LLMService's current spec has a feasible plan, else 0",
        labels=SERVICE_LABELS,
    )
    savings = GaugeMetricFamily(
        "gpumix_llmservice_savings_percent",
        "Saving of the plan against the cheapest single-GPU-type plan, in percent",
        labels=SERVICE_LABELS,
    )
    observed = GaugeMetricFamily(
        "gpumix_llmservice_observed_requests_per_second",
        "Load observed in Prometheus (autoscaling LLMServices only)",
        labels=SERVICE_LABELS,
    )
    planned_demand = GaugeMetricFamily(
        "gpumix_llmservice_planned_requests_per_second",
        "Demand the plan is sized for, before headroom (autoscaling LLMServices only)",
        labels=SERVICE_LABELS,
    )
    factor = GaugeMetricFamily(
        "gpumix_llmservice_capacity_factor",
        "Throughput multiplier of a configuration learnt from live latencies (1: as modelled)",
        labels=(*SERVICE_LABELS, "gpu_type", "tensor_parallel", "weight_format"),
    )
    for service in services:
        status = service.status
        if status is None:
            continue
        labels = [service.namespace, service.name]
        if status.observed_demand is not None:
            observed.add_metric(labels, float(status.observed_demand.requests_per_second))
            planned_demand.add_metric(
                labels, float(status.observed_demand.planned_requests_per_second)
            )
        for row in status.calibration or ():
            factor.add_metric(
                [*labels, row.gpu_type, str(row.tensor_parallel), row.weight_format],
                float(row.capacity_factor),
            )
        if status.cost_per_hour is not None:
            cost.add_metric(labels, float(status.cost_per_hour))
        desired.add_metric(labels, float(status.desired_replicas or 0))
        ready.add_metric(labels, float(status.ready_replicas or 0))
        is_feasible = _feasible(status)
        if is_feasible is not None:
            feasible.add_metric(labels, is_feasible)
        if status.savings_percent is not None:
            savings.add_metric(labels, float(status.savings_percent))

    gpus = GaugeMetricFamily("gpumix_pool_gpus", "GPUs on the pool's nodes", labels=POOL_LABELS)
    allocated = GaugeMetricFamily(
        "gpumix_pool_allocated_gpus",
        "GPUs requested by running pods on the pool's nodes",
        labels=POOL_LABELS,
    )
    available = GaugeMetricFamily(
        "gpumix_pool_available_gpus",
        "GPUs the planner may place on the pool now, including autoscaler headroom",
        labels=POOL_LABELS,
    )
    price = GaugeMetricFamily(
        "gpumix_pool_price_dollars_per_gpu_hour",
        "USD per GPU-hour the planner uses for the pool",
        labels=POOL_LABELS,
    )
    for pool in pools:
        definition = pool.definition
        labels = [pool.name, definition.gpu_type, definition.capacity_type]
        gpus.add_metric(labels, float(pool.gpus))
        allocated.add_metric(labels, float(pool.allocated_gpus))
        available.add_metric(labels, float(pool.available_gpus))
        if definition.price_per_gpu_hour is not None:
            price.add_metric(labels, definition.price_per_gpu_hour)
    return [
        cost, desired, ready, feasible, savings, observed, planned_demand, factor,
        gpus, allocated, available, price,
    ]  # fmt: skip


class _FleetCollector(Collector):
    """Serves the families of the last pass; replaced whole, so scrapes see one pass."""

    def __init__(self) -> None:
        self.families: tuple[Metric, ...] = ()

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class OperatorMetrics:
    """The operator's series in one registry; the planner calls it, the HTTP server reads it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._fleet = _FleetCollector()
        registry.register(self._fleet)
        self.solves = Counter(
            "gpumix_planner_solves",
            "Planner solves by result status",
            ["status"],
            registry=registry,
        )
        self.last_solve_seconds = Gauge(
            "gpumix_planner_last_solve_seconds",
            "Wall time of the last solve",
            registry=registry,
        )
        self.last_solve_gap = Gauge(
            "gpumix_planner_last_solve_gap",
            "Relative optimality gap of the last solve (0: proven optimal; NaN: no plan)",
            registry=registry,
        )
        self.last_solve_timestamp = Gauge(
            "gpumix_planner_last_solve_timestamp_seconds",
            "Unix time the last solve finished",
            registry=registry,
        )

    def record_solve(self, result: PlanResult) -> None:
        self.solves.labels(status=str(result.status.value)).inc()
        self.last_solve_seconds.set(result.solve_seconds)
        if result.gap is not None:
            gap = result.gap
        else:
            gap = 0.0 if result.status is SolveStatus.OPTIMAL else math.nan
        self.last_solve_gap.set(gap)
        self.last_solve_timestamp.set_to_current_time()

    def record_solver_error(self) -> None:
        self.solves.labels(status=SOLVER_ERROR).inc()
        self.last_solve_timestamp.set_to_current_time()

    def update_fleet(
        self, services: Iterable[ServiceSample], pools: Iterable[PoolInventory]
    ) -> None:
        self._fleet.families = tuple(fleet_families(services, pools))


@dataclass
class MetricsServer:
    metrics: OperatorMetrics
    server: WSGIServer

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_metrics_server(port: int, address: str = "0.0.0.0") -> MetricsServer:
    """A fresh registry with the operator's series (and process CPU and memory, since the
    solver runs in-process), served at http://ADDRESS:PORT/metrics from a daemon thread."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = OperatorMetrics(registry)
    server, _thread = start_http_server(port, addr=address, registry=registry)
    return MetricsServer(metrics, server)
