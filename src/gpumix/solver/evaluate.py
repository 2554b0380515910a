"""Re-check any plan against the inputs without a solver.

Runs after every solve (a plan that fails here is a bug, reported rather than served) and in
tests against brute force. It recomputes everything from the inputs: the throughputs, prices and
availability written into the plan entries are not trusted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from gpumix.solver.model import PlanningInputs, ServicePlan, Violation

# Shares are rounded to 6 decimals on extraction; allow for that, nothing more.
_SHARE_TOLERANCE = 1e-4
_RELATIVE_TOLERANCE = 1e-5


def evaluate(plans: Iterable[ServicePlan], inputs: PlanningInputs) -> tuple[Violation, ...]:
    violations: list[Violation] = []
    services = {service.key: service for service in inputs.services}
    pools = {pool.name: pool for pool in inputs.pools}
    gpus_used: dict[str, int] = defaultdict(int)

    for plan in plans:
        label = str(plan.key)
        service = services.get(plan.key)
        if service is None:
            violations.append(Violation(label, "service", "plan for a service not in the inputs"))
            continue
        candidates = {candidate.key: candidate for candidate in service.candidates}
        served_share: dict[str, float] = defaultdict(float)
        cost = 0.0
        on_demand_replicas = 0
        for entry in plan.entries:
            where = f"{entry.pool} TP{entry.tensor_parallel} {entry.weight_format}"
            candidate = candidates.get(entry.key)
            pool = pools.get(entry.pool)
            if candidate is None or pool is None:
                violations.append(Violation(label, "candidate", f"{where} is not a candidate"))
                continue
            if entry.replicas < 0 or entry.gpus != entry.replicas * candidate.tensor_parallel:
                violations.append(Violation(label, "replicas", f"{where}: inconsistent GPU count"))
            if candidate.tensor_parallel > pool.gpus_per_node:
                violations.append(
                    Violation(label, "node", f"{where}: a replica needs more GPUs than a node has")
                )
            gpus_used[pool.name] += entry.replicas * candidate.tensor_parallel
            cost += entry.replicas * candidate.tensor_parallel * pool.price_per_gpu_hour
            if not pool.preemptible:
                on_demand_replicas += entry.replicas
            busy_replicas = 0.0
            for request_class in service.classes:
                share = entry.assignment.get(request_class.name, 0.0)
                if share <= 0:
                    continue
                throughput = candidate.throughput_rps.get(request_class.name, 0.0)
                if throughput <= 0:
                    violations.append(
                        Violation(label, "capacity", f"{where} cannot serve {request_class.name}")
                    )
                    continue
                served_share[request_class.name] += share
                busy_replicas += share * request_class.demand_rps * plan.scale_factor / throughput
            if busy_replicas > entry.replicas * (1 + _RELATIVE_TOLERANCE) + _SHARE_TOLERANCE:
                violations.append(
                    Violation(
                        label,
                        "capacity",
                        f"{where}: load needs {busy_replicas:.3f} replicas, plan has "
                        f"{entry.replicas}",
                    )
                )

        if plan.scale_factor > 0:
            for request_class in service.classes:
                if request_class.demand_rps <= 0:
                    continue
                share = served_share[request_class.name]
                if abs(share - 1.0) > _SHARE_TOLERANCE * max(1, len(plan.entries)):
                    violations.append(
                        Violation(
                            label,
                            "served",
                            f"class {request_class.name}: {share:.4f} of its demand is routed",
                        )
                    )
        if service.max_cost_per_hour is not None and cost > service.max_cost_per_hour * (
            1 + _RELATIVE_TOLERANCE
        ):
            violations.append(
                Violation(
                    label,
                    "budget",
                    f"costs ${cost:.2f}/h, budget is ${service.max_cost_per_hour:.2f}/h",
                )
            )
        replicas = plan.replicas
        if not service.min_replicas <= replicas <= service.max_replicas:
            violations.append(
                Violation(
                    label,
                    "replicas",
                    f"{replicas} replicas outside [{service.min_replicas}, {service.max_replicas}]",
                )
            )
        if on_demand_replicas < service.min_on_demand_replicas:
            violations.append(
                Violation(
                    label,
                    "on-demand",
                    f"{on_demand_replicas} on-demand replicas, minOnDemandReplicas is "
                    f"{service.min_on_demand_replicas}",
                )
            )

    for pool_name in sorted(gpus_used):
        pool = pools[pool_name]
        if gpus_used[pool_name] > pool.available_gpus:
            violations.append(
                Violation(
                    None,
                    "availability",
                    f"pool {pool_name}: plans use {gpus_used[pool_name]} GPUs, "
                    f"{pool.available_gpus} available",
                )
            )
    return tuple(violations)
