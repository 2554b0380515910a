"""The fleet planner with autoscaling: the demand it plans on comes from the load readings, the
status and the events say what moved it, and a metrics outage keeps the running plan.

The planner, solver and reconcile logic are real; the Kubernetes adapter and the Prometheus
reader are in-memory stand-ins (the e2e suite runs the real ones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gpumix.autoscaling.prometheus import ClassShape, LoadReading, ServiceName
from gpumix.autoscaling.recommend import LoadSample
from gpumix.operator.demand import DemandTracker
from test_operator_planner import Fleet, gpu_node, llmservice


class ScriptedReader:
    """Answers each read with the rates the test set last (or the error it set)."""

    def __init__(self) -> None:
        self.rates: dict[str, float] = {}
        self.error: str | None = None

    def read(self, at: float, classes: Mapping[ServiceName, Sequence[ClassShape]]) -> LoadReading:
        if self.error is not None:
            return LoadReading({}, self.error)
        samples = {
            name: LoadSample(at, dict(self.rates), dict(self.rates), "router")
            for name in classes
            if self.rates
        }
        return LoadReading(samples)


def autoscaled(rps: str = "2", **autoscaling: Any) -> dict[str, Any]:
    body = llmservice(rps=rps)
    body["spec"]["workload"]["classes"] = [
        {"name": "chat", "inputTokens": 512, "outputTokens": 128, "share": 70},
        {"name": "rag", "inputTokens": 2048, "outputTokens": 128, "share": 30},
    ]
    body["spec"]["workload"]["autoscaling"] = {
        "enabled": True,
        "scaleUpStabilizationSeconds": 0,
        "scaleDownStabilizationSeconds": 0,
        **autoscaling,
    }
    return body


def fleet_with(reader: ScriptedReader | None, body: dict[str, Any]) -> Fleet:
    fleet = Fleet([gpu_node(f"l4-{i}", gpus=8) for i in range(4)], [body])
    fleet.planner.demand = DemandTracker(reader, clock=fleet.clock)
    return fleet


def planned_gpus(fleet: Fleet) -> int:
    return sum(entry["gpus"] for entry in fleet.kube.statuses["chat"]["plan"])


async def read_and_plan(fleet: Fleet) -> None:
    fleet.planner.demand.sync(
        [r for r in fleet.indices["gpumix_llmservices"][None] if r.name == "chat"]
    )
    await fleet.planner.demand.sample()
    await fleet.run_pass()


async def test_the_plan_follows_the_observed_load_and_says_why() -> None:
    reader = ScriptedReader()
    fleet = fleet_with(reader, autoscaled())
    await fleet.run_pass(force=True)
    observed = fleet.kube.statuses["chat"]["observedDemand"]
    assert observed["plannedRequestsPerSecond"] == "2.00"  # the written demand, to start
    assert fleet.condition("MetricsAvailable")["reason"] == "NoData"
    small = planned_gpus(fleet)

    reader.rates = {"chat": 7.0, "rag": 3.0}  # 5x the written demand
    await read_and_plan(fleet)
    observed = fleet.kube.statuses["chat"]["observedDemand"]
    assert observed["plannedRequestsPerSecond"] == "10.00"
    assert observed["requestsPerSecond"] == "10.00"
    assert observed["classShares"] == {"chat": "0.700", "rag": "0.300"}
    assert fleet.condition("MetricsAvailable")["status"] == "True"
    assert planned_gpus(fleet) > small
    [changed] = [e for e in fleet.kube.events if e["reason"] == "PlanChanged"][-1:]
    assert "demand 2 → 10 req/s (1 m rate)" in changed["message"]


async def test_a_mix_shift_at_a_constant_rate_moves_the_shares_not_the_total() -> None:
    reader = ScriptedReader()
    fleet = fleet_with(reader, autoscaled(rps="10"))
    await fleet.run_pass(force=True)
    reader.rates = {"chat": 4.0, "rag": 6.0}  # RAG 30 % -> 60 %
    await read_and_plan(fleet)
    observed = fleet.kube.statuses["chat"]["observedDemand"]
    assert observed["plannedRequestsPerSecond"] == "10.00"
    assert observed["classShares"] == {"chat": "0.400", "rag": "0.600"}
    messages = [e["message"] for e in fleet.kube.events if e["reason"] in ("PlanChanged",
                "DemandChanged")]  # fmt: skip
    assert any("request mix chat 70 % → 40 %, rag 30 % → 60 %" in m for m in messages), messages


async def test_an_unreachable_prometheus_keeps_the_plan_and_says_so() -> None:
    reader = ScriptedReader()
    fleet = fleet_with(reader, autoscaled())
    await fleet.run_pass(force=True)
    reader.rates = {"chat": 7.0, "rag": 3.0}
    await read_and_plan(fleet)
    plan = fleet.kube.statuses["chat"]["plan"]
    deployments = fleet.kube.deployments()

    reader.error = "Prometheus at http://127.0.0.1:9 is unreachable: connection refused"
    await read_and_plan(fleet)
    metrics = fleet.condition("MetricsAvailable")
    assert (metrics["status"], metrics["reason"]) == ("False", "PrometheusUnavailable")
    assert "planning for the last demand, 10.00 req/s" in metrics["message"]
    assert fleet.kube.statuses["chat"]["plan"] == plan
    assert fleet.kube.deployments() == deployments


async def test_without_a_prometheus_url_the_written_demand_is_kept_and_the_reason_given() -> None:
    fleet = fleet_with(None, autoscaled(rps="3"))
    await fleet.run_pass(force=True)
    await read_and_plan(fleet)
    metrics = fleet.condition("MetricsAvailable")
    assert (metrics["status"], metrics["reason"]) == ("False", "PrometheusNotConfigured")
    assert fleet.kube.statuses["chat"]["observedDemand"]["plannedRequestsPerSecond"] == "3.00"


async def test_turning_autoscaling_off_removes_its_status() -> None:
    reader = ScriptedReader()
    body = autoscaled()
    fleet = fleet_with(reader, body)
    await fleet.run_pass(force=True)
    assert fleet.condition("MetricsAvailable")
    body["spec"]["workload"]["autoscaling"]["enabled"] = False
    fleet.set_service({**body, "metadata": {**body["metadata"], "generation": 2}})
    await fleet.run_pass()
    assert not fleet.condition("MetricsAvailable")
    assert "observedDemand" not in fleet.kube.statuses["chat"]
