"""The operator's Prometheus series, as a scrape of /metrics renders them."""

from __future__ import annotations

import math
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpumix.operator import inventory
from gpumix.operator.metrics import OperatorMetrics, ServiceSample, start_metrics_server
from gpumix.resources import GPUPool, LLMServiceStatus
from gpumix.solver import Backend, PlanResult, SolveStatus


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """sample name + sorted labels -> value, from the text exposition format."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def chat_status(*, feasible: bool = True, ready: int = 1) -> LLMServiceStatus:
    return LLMServiceStatus.model_validate(
        {
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "Feasible", "status": "True" if feasible else "False"},
            ],
            "costPerHour": "1.74",
            "readyReplicas": ready,
            "desiredReplicas": 3,
            "savingsPercent": "38.5",
        }
    )


def pools() -> tuple[inventory.PoolInventory, ...]:
    l4 = {"nvidia.com/gpu.product": "NVIDIA-L4", "karpenter.sh/capacity-type": "spot"}
    node = inventory.node_record(
        {
            "metadata": {"name": "l4-a", "labels": l4},
            "status": {
                "allocatable": {"nvidia.com/gpu": "4"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    )
    foreign = inventory.pod_record(
        {
            "metadata": {"name": "train", "namespace": "ml"},
            "spec": {
                "nodeName": "l4-a",
                "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            },
            "status": {"phase": "Running"},
        }
    )
    assert foreign is not None
    settings = inventory.InventorySettings(prices={("L4", "spot"): 0.29})
    return inventory.build_inventory([], [node], [foreign], settings)


SERVICE = (("name", "chat"), ("namespace", "team-a"))
POOL = (("capacity_type", "spot"), ("gpu_type", "L4"), ("pool", "l4-spot"))


def test_service_cost_replicas_feasibility_and_pool_availability() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.update_fleet(
        [ServiceSample("team-a", "chat", chat_status()), ServiceSample("team-a", "new", None)],
        pools(),
    )
    samples = scrape(registry)
    assert samples["gpumix_llmservice_cost_dollars_per_hour", SERVICE] == 1.74
    assert samples["gpumix_llmservice_desired_replicas", SERVICE] == 3
    assert samples["gpumix_llmservice_ready_replicas", SERVICE] == 1
    assert samples["gpumix_llmservice_feasible", SERVICE] == 1
    assert samples["gpumix_llmservice_savings_percent", SERVICE] == 38.5
    assert samples["gpumix_pool_gpus", POOL] == 4
    assert samples["gpumix_pool_allocated_gpus", POOL] == 1
    assert samples["gpumix_pool_available_gpus", POOL] == 3
    assert samples["gpumix_pool_price_dollars_per_gpu_hour", POOL] == 0.29
    # A service not planned yet reports nothing rather than zeros that look like a plan.
    assert not [key for key in samples if ("name", "new") in key[1]]


def test_a_deleted_service_or_pool_drops_out_and_infeasible_reads_0() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.update_fleet([ServiceSample("team-a", "chat", chat_status())], pools())
    metrics.update_fleet([ServiceSample("team-a", "other", chat_status(feasible=False))], ())
    samples = scrape(registry)
    assert not [key for key in samples if key[1] in (SERVICE, POOL)]
    other = (("name", "other"), ("namespace", "team-a"))
    assert samples["gpumix_llmservice_feasible", other] == 0
    # The last good plan keeps running, so its cost is still reported.
    assert samples["gpumix_llmservice_cost_dollars_per_hour", other] == 1.74


def result(status: SolveStatus, gap: float | None, seconds: float) -> PlanResult:
    return PlanResult(
        status=status,
        objective="MinCost",
        gap=gap,
        solve_seconds=seconds,
        total_cost_per_hour=1.74,
        services=(),
        backend=Backend.HIGHS,
    )


def test_solves_are_counted_by_status_with_the_last_time_and_gap() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    metrics.record_solve(result(SolveStatus.OPTIMAL, None, 0.4))
    metrics.record_solve(result(SolveStatus.FEASIBLE, 0.03, 30.0))
    metrics.record_solver_error()
    samples = scrape(registry)
    assert samples["gpumix_planner_solves_total", (("status", "Optimal"),)] == 1
    assert samples["gpumix_planner_solves_total", (("status", "Feasible"),)] == 1
    assert samples["gpumix_planner_solves_total", (("status", "Error"),)] == 1
    assert samples["gpumix_planner_last_solve_seconds", ()] == 30.0
    assert samples["gpumix_planner_last_solve_gap", ()] == 0.03
    assert samples["gpumix_planner_last_solve_timestamp_seconds", ()] > 0
    metrics.record_solve(result(SolveStatus.NO_SOLUTION, None, 30.0))
    assert math.isnan(scrape(registry)["gpumix_planner_last_solve_gap", ()])


def test_the_server_serves_the_registry_at_metrics() -> None:
    server = start_metrics_server(0, "127.0.0.1")  # port 0: any free port
    try:
        server.metrics.update_fleet([], pools())
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.stop()
    assert (
        'gpumix_pool_available_gpus{capacity_type="spot",gpu_type="L4",pool="l4-spot"} 3.0' in text
    )
    assert "process_resident_memory_bytes" in text


def test_gpupool_pools_report_their_own_name_and_price() -> None:
    pool = GPUPool.model_validate(
        {
            "metadata": {"name": "h100-reserved"},
            "spec": {
                "gpuType": "H100-80GB",
                "capacityType": "reserved",
                "nodeSelector": {"pool": "h100"},
                "pricePerGPUHour": "2.00",
                "maxGPUs": 16,
            },
        }
    )
    registry = CollectorRegistry()
    OperatorMetrics(registry).update_fleet([], inventory.build_inventory([pool], [], []))
    labels = (("capacity_type", "reserved"), ("gpu_type", "H100-80GB"), ("pool", "h100-reserved"))
    samples = scrape(registry)
    assert samples["gpumix_pool_available_gpus", labels] == 16
    assert samples["gpumix_pool_price_dollars_per_gpu_hour", labels] == 2.0


def test_autoscaling_services_report_observed_and_planned_demand_and_capacity_factors() -> None:
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    status = LLMServiceStatus.model_validate(
        {
            **chat_status().model_dump(mode="json", by_alias=True, exclude_none=True),
            "observedDemand": {
                "requestsPerSecond": "8.40",
                "plannedRequestsPerSecond": "7.90",
                "classShares": {"chat": "1.000"},
                "source": "router",
                "windowSeconds": 60,
                "time": "2026-12-04T18:00:00Z",
            },
            "calibration": [
                {
                    "gpuType": "L4",
                    "tensorParallel": 1,
                    "weightFormat": "bf16",
                    "capacityFactor": "0.34",
                    "measuredTpotMilliseconds": "61.0",
                    "predictedTpotMilliseconds": "20.7",
                }
            ],
        }
    )
    metrics.update_fleet([ServiceSample("team-a", "chat", status)], pools())
    samples = scrape(registry)
    assert samples["gpumix_llmservice_observed_requests_per_second", SERVICE] == 8.4
    assert samples["gpumix_llmservice_planned_requests_per_second", SERVICE] == 7.9
    config = tuple(
        sorted((*SERVICE, ("gpu_type", "L4"), ("tensor_parallel", "1"), ("weight_format", "bf16")))
    )
    assert samples["gpumix_llmservice_capacity_factor", config] == 0.34
