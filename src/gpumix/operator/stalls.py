"""Migrations that stall: why the new pods did not come up, and planning around their pools.

Pure. Make-before-break never removes what serves (``operator.reconcile``). When a plan's new
Deployments are still not Ready at the migration deadline (pods the scheduler cannot place, a
ReplicaSet the API refuses, pods that never pass readiness), the planner re-plans that
service without the pools they were planned on, for a while, instead of waiting for good or
taking down the old plan to make room.

Why the pool and not only the configuration: "Insufficient nvidia.com/gpu" on a pool is as
true for its other tensor-parallel sizes and weight formats, and trying them one by one would
cost a migration timeout each. The configurations the service runs now are never left out:
they hold their GPUs already. A block ends after its time, or as soon as the pool gains
nodes (the capacity the plan counted on may have arrived).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from gpumix.operator.inventory import PodRecord
from gpumix.solver import ConfigKey, Rejection, RejectionKind, ServiceDemand

# How long a pool stays out of a service's plans, in migration timeouts.
BLOCK_TIMEOUTS = 5
# The reason when the API gives none (pods scheduled, but never passing readiness).
NOT_READY = "its pods did not become Ready"


@dataclass(frozen=True)
class PoolBlock:
    """One pool left out of one service's plans."""

    pool: str
    reason: str
    until: float  # monotonic seconds
    nodes: int  # the pool's nodes when blocked; more nodes end the block
    running: frozenset[ConfigKey]  # the service's configurations serving now: kept


def replacement_problem(deployment: Mapping[str, Any] | None, pods: Iterable[PodRecord]) -> str:
    """Why a Deployment's pods are not Ready, in the API's own words when it has any: pods
    refused at creation (quota, Pod Security), then pods the scheduler cannot place, then
    containers that cannot start (image pulls, crash loops)."""
    status = (deployment or {}).get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            why = condition.get("message") or condition.get("reason")
            return f"its pods cannot be created: {why}"
    ordered = sorted(pods, key=lambda record: record.name)
    for pod in ordered:
        if pod.unschedulable:
            return f"its pods cannot be scheduled: {pod.unschedulable}"
    for pod in ordered:
        if pod.container_problem:
            return f"its containers cannot start: {pod.container_problem}"
    return NOT_READY


def deployment_problems(
    namespace: str,
    deployments: Mapping[str, Mapping[str, Any] | None],
    pods: Iterable[PodRecord],
) -> dict[str, str]:
    """Deployment name -> the reason its pods cannot run, for those the API gives one."""
    by_deployment: dict[str, list[PodRecord]] = {}
    for pod in pods:
        if pod.namespace == namespace and pod.deployment and pod.deployment in deployments:
            by_deployment.setdefault(pod.deployment, []).append(pod)
    problems = {}
    for name, body in deployments.items():
        problem = replacement_problem(body, by_deployment.get(name, ()))
        if problem != NOT_READY:
            problems[name] = problem
    return problems


def active(
    blocks: Mapping[str, PoolBlock], now: float, nodes_per_pool: Mapping[str, int]
) -> dict[str, PoolBlock]:
    """The blocks still in force: not expired, and the pool has not grown since."""
    return {
        pool: block
        for pool, block in blocks.items()
        if now < block.until and nodes_per_pool.get(pool, 0) <= block.nodes
    }


def without_blocked(demand: ServiceDemand, blocks: Mapping[str, PoolBlock]) -> ServiceDemand:
    """``demand`` without the candidates of blocked pools, except the running ones; each
    blocked pool is named in the rejections, so a service left with nothing says why."""
    if not blocks:
        return demand
    kept = tuple(
        candidate
        for candidate in demand.candidates
        if candidate.pool not in blocks or candidate.key in blocks[candidate.pool].running
    )
    rejections = tuple(
        Rejection(
            gpu_type=block.pool,
            tensor_parallel=0,
            weight_format="",
            request_class=None,
            kind=RejectionKind.UNSCHEDULABLE,
            detail=f"pool {block.pool} is left out for now ({block.reason})",
        )
        for block in blocks.values()
    )
    return replace(demand, candidates=kept, rejections=demand.rejections + rejections)
