"""Turn solved variable values into plans: integers rounded, tiny shares dropped, sorted."""

from __future__ import annotations

from gpumix.solver.formulation import Formulation
from gpumix.solver.model import Objective, PlanEntry, RequestClass, ServicePlan

# Shares below this are solver noise, not routing decisions.
_SHARE_EPSILON = 1e-7


def replica_values(formulation: Formulation) -> dict[tuple[int, int], int]:
    return {
        index: round(variable.varValue or 0.0) for index, variable in formulation.replicas.items()
    }


def service_plans(formulation: Formulation) -> tuple[ServicePlan, ...]:
    inputs = formulation.inputs
    replicas = replica_values(formulation)
    plans: list[ServicePlan] = []
    for s, service in enumerate(inputs.services):
        objective = formulation.objectives[s]
        scale = _scale(formulation, s)
        entries: list[PlanEntry] = []
        for c, candidate in enumerate(service.candidates):
            count = replicas.get((s, c), 0)
            if count <= 0:
                continue
            pool = inputs.pool(candidate.pool)
            assignment = {}
            for request_class in service.classes:
                variable = formulation.assignment.get((s, request_class.name, c))
                share = (variable.varValue or 0.0) if variable is not None else 0.0
                # Report the share of the *served* traffic, which sums to 1 over entries.
                share = share / scale if scale > 0 else 0.0
                assignment[request_class.name] = round(share, 6) if share > _SHARE_EPSILON else 0.0
            entries.append(
                PlanEntry(
                    pool=pool.name,
                    gpu_type=pool.gpu_type,
                    capacity_type=pool.capacity_type,
                    tensor_parallel=candidate.tensor_parallel,
                    weight_format=candidate.weight_format,
                    replicas=count,
                    gpus=count * candidate.tensor_parallel,
                    cost_per_hour=count * candidate.tensor_parallel * pool.price_per_gpu_hour,
                    assignment=assignment,
                    capacity_rps=dict(candidate.throughput_rps),
                )
            )
        entries.sort(key=lambda entry: (entry.pool, entry.tensor_parallel, entry.weight_format))
        class_capacity = capacity_by_class(service.classes, entries, scale)
        class_demand = {
            request_class.name: request_class.demand_rps * scale
            for request_class in service.classes
        }
        plans.append(
            ServicePlan(
                namespace=service.namespace,
                name=service.name,
                objective=objective,
                cost_per_hour=sum(entry.cost_per_hour for entry in entries),
                demand_rps=service.demand_rps,
                scale_factor=scale,
                served_rps=service.demand_rps * scale,
                entries=tuple(entries),
                class_capacity_rps=class_capacity,
                class_demand_rps=class_demand,
            )
        )
    return tuple(plans)


def capacity_by_class(
    classes: tuple[RequestClass, ...], entries: list[PlanEntry], scale: float
) -> dict[str, float]:
    """Replica capacity allocated to each class: every replica's time is split between the
    classes in proportion to the load they put on it, so capacity ≥ demand class by class."""
    capacity = {request_class.name: 0.0 for request_class in classes}
    for entry in entries:
        busy = {
            request_class.name: entry.assignment[request_class.name]
            * request_class.demand_rps
            * scale
            / entry.capacity_rps[request_class.name]
            for request_class in classes
            if entry.assignment.get(request_class.name, 0.0) > 0
        }
        total_busy = sum(busy.values())
        for name, replica_time in busy.items():
            capacity[name] += entry.replicas * entry.capacity_rps[name] * replica_time / total_busy
    return capacity


def _scale(formulation: Formulation, service_index: int) -> float:
    if formulation.objectives[service_index] is Objective.MIN_COST:
        return 1.0
    value = formulation.scale[service_index].varValue or 0.0
    return max(value, 0.0)
