"""A PlanSource fed from the fixture manifests, with the running plan the real solver makes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from gpumix.api.models import (
    BaselineView,
    FleetView,
    PlanEntryView,
    PoolHolding,
    PoolView,
    ServiceView,
)
from gpumix.api.source import PlanningBasis, RunningEntry, RunningService, Solver
from gpumix.planning import PoolHardware, planning_inputs, pool_hardware
from gpumix.resources import GPUPool, LLMService, load_manifests
from gpumix.solver import ConfigKey, ServiceKey, SolveOptions, solve

FIXTURES = Path(__file__).parent / "fixtures" / "api"


def fixture_pools() -> list[PoolHardware]:
    manifests = load_manifests(FIXTURES / "fleet.yaml")
    return [pool_hardware(pool) for pool in manifests if isinstance(pool, GPUPool)]


def fixture_services() -> list[LLMService]:
    manifests = load_manifests(FIXTURES / "services.yaml")
    return [service for service in manifests if isinstance(service, LLMService)]


class FixtureSource:
    """The fixtures planned once, as the operator would have them running."""

    def __init__(
        self,
        pools: Sequence[PoolHardware] | None = None,
        services: Sequence[LLMService] | None = None,
        solver: Solver = solve,
    ) -> None:
        self.pools = tuple(pools if pools is not None else fixture_pools())
        self.resources = tuple(services if services is not None else fixture_services())
        inputs = planning_inputs([(s, None) for s in self.resources], self.pools)
        result = solve(inputs, SolveOptions(time_limit_seconds=10))
        assert result.feasible, result
        self.running: list[RunningService] = []
        self.plans = {plan.key: plan for plan in result.services}
        for plan in result.services:
            resource = next(s for s in self.resources if s.metadata.name == plan.name)
            entries = tuple(
                RunningEntry(
                    e.pool,
                    e.gpu_type,
                    e.capacity_type,
                    e.tensor_parallel,
                    e.weight_format,
                    e.replicas,
                    e.cost_per_hour,
                )
                for e in plan.entries
            )
            self.running.append(
                RunningService(plan.key, resource, None, entries, plan.cost_per_hour)
            )
        self.solver = solver
        self.basis_calls = 0

    def fleet(self) -> FleetView:
        return FleetView(
            pools=[
                PoolView(
                    name=h.pool.name,
                    gpu_type=h.pool.gpu_type,
                    capacity_type=h.pool.capacity_type,
                    price_per_gpu_hour=h.pool.price_per_gpu_hour,
                    nodes=0,
                    ready_nodes=0,
                    gpus=0,
                    allocated_gpus=0,
                    available_gpus=h.pool.available_gpus,
                    discovered=False,
                    plannable=True,
                    holdings=[
                        PoolHolding(
                            namespace=s.key.namespace,
                            name=s.key.name,
                            replicas=sum(e.replicas for e in held),
                            gpus=sum(e.replicas * e.tensor_parallel for e in held),
                            cost_per_hour=sum(e.cost_per_hour for e in held),
                        )
                        for s in self.running
                        if (held := [e for e in s.entries if e.pool == h.pool.name])
                    ],
                )
                for h in self.pools
            ],
            total_cost_per_hour=sum(s.cost_per_hour or 0 for s in self.running),
        )

    def services(self) -> list[ServiceView]:
        return [
            ServiceView(
                namespace=s.key.namespace,
                name=s.key.name,
                feasible=True,
                cost_per_hour=s.cost_per_hour,
                desired_replicas=sum(e.replicas for e in s.entries),
                baseline=self.baseline(s.key),
                savings_percent=self.plans[s.key].savings_percent,
                plan=[
                    PlanEntryView(
                        pool=e.pool,
                        gpu_type=e.gpu_type,
                        capacity_type=e.capacity_type,
                        tensor_parallel=e.tensor_parallel,
                        weight_format=e.weight_format,
                        replicas=e.replicas,
                        gpus=e.replicas * e.tensor_parallel,
                        cost_per_hour=e.cost_per_hour,
                        assignment=dict(self.assignment(s.key, e.key)),
                    )
                    for e in s.entries
                ],
            )
            for s in self.running
        ]

    def baseline(self, key: ServiceKey) -> BaselineView | None:
        priced = [b for b in self.plans[key].baselines if b.cost_per_hour is not None]
        best = min(priced, key=lambda b: b.cost_per_hour or 0.0, default=None)
        if best is None or best.cost_per_hour is None:
            return None
        return BaselineView(name=best.name, cost_per_hour=best.cost_per_hour)

    def assignment(self, key: ServiceKey, config: ConfigKey) -> Mapping[str, float]:
        entry = next(e for e in self.plans[key].entries if e.key == config)
        return entry.assignment

    def planning_basis(self) -> PlanningBasis:
        self.basis_calls += 1
        current: dict[tuple[ServiceKey, ConfigKey], int] = {
            (s.key, e.key): e.replicas for s in self.running for e in s.entries
        }
        return PlanningBasis(
            pools=self.pools,
            services=tuple(self.running),
            current_plan=current,
            solver=self.solver,
        )


def with_available(pools: Sequence[PoolHardware], name: str, gpus: int) -> list[PoolHardware]:
    return [
        replace(h, pool=replace(h.pool, available_gpus=gpus)) if h.pool.name == name else h
        for h in pools
    ]
