"""What-if: the operator's last planning inputs, changed as a request asks, planned again.

Pure and blocking (the app runs it in a worker thread): :func:`changed_pools` and
:func:`changed_services` edit copies of the :class:`~gpumix.api.source.PlanningBasis`,
:func:`run_whatif` builds the demands with the operator's own demand builder
(:func:`gpumix.planning.build_demands`, as a planning pass does), solves with its solver, and
:func:`compare` sets the answer beside the running plan. A change that names something the
fleet does not have (a pool, a service, a request class) is an :class:`InputError` naming the
request field, which the app answers with a 422.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from gpumix.api.models import (
    ConfigurationChange,
    PlanEntryView,
    WhatIfRequest,
    WhatIfResponse,
    WhatIfService,
)
from gpumix.api.source import PlanningBasis, RunningEntry, RunningService
from gpumix.errors import InputError, UnknownNameError
from gpumix.planning import PoolHardware, ServiceToPlan, build_demands
from gpumix.resources import LLMService
from gpumix.resources.loader import first_error
from gpumix.solver import (
    ConfigKey,
    PlanningInputs,
    PlanResult,
    ServiceKey,
    ServicePlan,
    SolveOptions,
    SolveStatus,
)

FEASIBLE = (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
INVALID_SPEC = "InvalidSpec"


def changed_pools(pools: Sequence[PoolHardware], request: WhatIfRequest) -> list[PoolHardware]:
    """The pools with ``removedPools`` left out, then availability, then prices applied."""
    known = [hardware.pool.name for hardware in pools]
    for index, name in enumerate(request.removed_pools):
        if name not in known:
            raise UnknownNameError("pool", name, known, field=f"removedPools[{index}]")
    removed = set(request.removed_pools)
    by_name = {h.pool.name: h for h in pools if h.pool.name not in removed}

    def existing(name: str, field: str) -> PoolHardware:
        if name in removed:
            raise InputError(f"pool {name!r} is also in removedPools", field=field)
        if name not in by_name:
            raise UnknownNameError("pool", name, known, field=field)
        return by_name[name]

    for index, availability in enumerate(request.availability):
        hardware = existing(availability.pool, f"availability[{index}].pool")
        by_name[hardware.pool.name] = replace(
            hardware, pool=replace(hardware.pool, available_gpus=availability.available_gpus)
        )
    for index, price in enumerate(request.prices):
        if price.pool is not None:
            targets = [existing(price.pool, f"prices[{index}].pool")]
        else:
            targets = [
                h
                for h in by_name.values()
                if price.gpu_type in (h.gpu.name, h.pool.gpu_type)
                and price.capacity_type in (None, h.pool.capacity_type)
            ]
            if not targets:
                types = sorted({h.gpu.name for h in by_name.values()})
                raise UnknownNameError(
                    "GPU type among the pools", price.gpu_type or "", types,
                    field=f"prices[{index}].gpuType",
                )  # fmt: skip
        for hardware in targets:
            old = hardware.pool.price_per_gpu_hour
            new = (
                float(price.price_per_gpu_hour)
                if price.price_per_gpu_hour is not None
                else old * (1 + (price.change_percent or 0.0) / 100)
            )
            by_name[hardware.pool.name] = replace(
                hardware, pool=replace(hardware.pool, price_per_gpu_hour=new)
            )
    return [by_name[h.pool.name] for h in pools if h.pool.name in by_name]


def _revalidated(service: LLMService, spec: dict[str, Any], field: str) -> LLMService:
    """``service`` with a changed spec, checked by the LLMService model as `kubectl apply`
    would check it (a share that leaves no class, a demand the model refuses...)."""
    document = service.model_dump(by_alias=True, mode="json", exclude={"status"})
    document["spec"] = spec
    try:
        return LLMService.model_validate(document)
    except ValidationError as error:
        where, message = first_error(error)
        raise InputError(message, field=f"{field} ({where})") from None


def changed_services(
    basis: PlanningBasis, request: WhatIfRequest
) -> tuple[list[ServiceToPlan], set[ServiceKey]]:
    """The services to plan, with demand and mix changes and extra manifests applied; and
    the keys that do not run now."""
    order = [service.key for service in basis.services]
    planned = {s.key: ServiceToPlan(s.key, s.resource, s.problem) for s in basis.services}
    names = [str(key) for key in order]
    for index, change in enumerate(request.services):
        key = ServiceKey(change.namespace, change.name)
        where = f"services[{index}]"
        found = planned.get(key)
        if found is None:
            raise UnknownNameError("LLMService", str(key), names, field=f"{where}.name")
        if found.resource is None:
            raise InputError(
                f"the spec of {key} does not parse, so it cannot be changed: {found.problem}",
                field=where,
            )
        spec = found.resource.spec.model_dump(by_alias=True, mode="json")
        workload = spec["workload"]
        if change.requests_per_second is not None:
            workload["requestsPerSecond"] = str(change.requests_per_second)
        classes = {c["name"]: c for c in workload["classes"]}
        for class_index, share in enumerate(change.classes):
            if share.name not in classes:
                raise UnknownNameError(
                    "request class", share.name, classes,
                    field=f"{where}.classes[{class_index}].name",
                )  # fmt: skip
            classes[share.name]["share"] = share.share
        planned[key] = ServiceToPlan(key, _revalidated(found.resource, spec, where))
    new: set[ServiceKey] = set()
    for service in request.manifests:
        key = ServiceKey(service.metadata.namespace or "default", service.metadata.name)
        if key not in planned:
            order.append(key)
            new.add(key)
        planned[key] = ServiceToPlan(key, service)
    return [planned[key] for key in order], new


def run_whatif(basis: PlanningBasis, request: WhatIfRequest, time_limit: float) -> WhatIfResponse:
    """Plan the changed inputs as the operator would; never touches the cluster."""
    pools = changed_pools(basis.pools, request)
    services, new = changed_services(basis, request)

    def build(key: ServiceKey, resource: LLMService) -> Any:
        return basis.demand_builder(key, resource, pools, basis.current_plan, basis.admission)

    demands, problems = build_demands(services, build)
    inputs = PlanningInputs(
        pools=tuple(hardware.pool for hardware in pools),
        services=tuple(demands),
        current_plan=basis.current_plan,
        current_assignment=basis.current_assignment,
    )
    options = SolveOptions(backend=basis.backend, time_limit_seconds=time_limit)
    result = basis.solver(inputs, options) if demands else None
    return compare(basis.running(), [s.key for s in services], new, result, problems, time_limit)


def _entry_view(entry: Any) -> PlanEntryView:
    return PlanEntryView(
        pool=entry.pool,
        gpu_type=entry.gpu_type,
        capacity_type=entry.capacity_type,
        tensor_parallel=entry.tensor_parallel,
        weight_format=entry.weight_format,
        replicas=entry.replicas,
        gpus=entry.gpus,
        cost_per_hour=_money(entry.cost_per_hour),
        assignment={name: round(share, 4) for name, share in entry.assignment.items()},
    )


def _money(value: float | Decimal) -> float:
    return round(float(value), 4)


def configuration_changes(
    running: Sequence[RunningEntry], planned: Sequence[Any]
) -> list[ConfigurationChange]:
    """Replicas per configuration, running vs planned; only those that differ."""
    described: dict[ConfigKey, Any] = {entry.key: entry for entry in running}
    described.update({entry.key: entry for entry in planned})
    before = {entry.key: entry.replicas for entry in running}
    after = {entry.key: entry.replicas for entry in planned}
    changes = []
    for key in sorted(described):
        old, new = before.get(key, 0), after.get(key, 0)
        if old == new:
            continue
        entry = described[key]
        changes.append(
            ConfigurationChange(
                pool=key.pool,
                gpu_type=entry.gpu_type,
                capacity_type=entry.capacity_type,
                tensor_parallel=key.tensor_parallel,
                weight_format=key.weight_format,
                running_replicas=old,
                planned_replicas=new,
                delta=new - old,
            )
        )
    return changes


def compare(
    running: Mapping[ServiceKey, RunningService],
    keys: Sequence[ServiceKey],
    new: set[ServiceKey],
    result: PlanResult | None,
    problems: Mapping[ServiceKey, str],
    time_limit: float,
) -> WhatIfResponse:
    plans: dict[ServiceKey, ServicePlan] = {p.key: p for p in result.services} if result else {}
    answers = []
    for key in keys:
        before = running.get(key)
        entries_before = before.entries if before else ()
        plan = plans.get(key)
        feasible = plan is not None and plan.status in FEASIBLE
        entries_after = plan.entries if plan is not None and feasible else ()
        cost = _money(plan.cost_per_hour) if plan is not None and feasible else None
        cost_before = (
            _money(before.cost_per_hour) if before and before.cost_per_hour is not None else None
        )
        if plan is not None:
            status = plan.status.value
            reasons = [reason.message for reason in plan.reasons]
            codes = [reason.code.value for reason in plan.reasons]
        else:
            status = INVALID_SPEC
            reasons = [problems.get(key, "not planned")]
            codes = [INVALID_SPEC]
        answers.append(
            WhatIfService(
                namespace=key.namespace,
                name=key.name,
                status=status,
                feasible=feasible,
                new=key in new,
                # Only news for a service that has a plan for its current spec now.
                becomes_infeasible=bool(before and before.feasible and before.entries)
                and not feasible,
                cost_per_hour=cost,
                running_cost_per_hour=cost_before,
                cost_delta_per_hour=None if cost is None else round(cost - (cost_before or 0), 4),
                plan=[_entry_view(entry) for entry in entries_after],
                changes=configuration_changes(entries_before, entries_after),
                reasons=reasons,
                reason_codes=codes,
            )
        )
    total = sum(answer.cost_per_hour or 0.0 for answer in answers)
    running_total = sum(s.cost_per_hour or 0.0 for s in running.values())
    return WhatIfResponse(
        status=result.status.value if result is not None else SolveStatus.INFEASIBLE.value,
        gap=None if result is None or result.gap is None else round(result.gap, 6),
        solve_seconds=round(result.solve_seconds, 3) if result is not None else 0.0,
        time_limit_seconds=time_limit,
        total_cost_per_hour=round(total, 4),
        running_cost_per_hour=round(running_total, 4),
        cost_delta_per_hour=round(total - running_total, 4),
        services=answers,
    )
