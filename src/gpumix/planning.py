"""Glue between the custom resources and the solver: LLMService + GPUPool -> PlanningInputs.

Used by ``gpumix plan`` (offline, availability from the manifests) and by the operator (live
availability from its inventory). Everything that can be wrong with a spec is raised here as an
InputError naming the file and field, or recorded as a spec problem the solver reports with
``InvalidSpec``; the solver itself only sees numbers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from gpumix.catalog import (
    GPUType,
    custom_gpu_type,
    default_price,
    get_gpu,
    gpu_catalog,
    resolve_model,
)
from gpumix.errors import InputError, UnknownNameError
from gpumix.perf import LatencySLO, WeightFormat
from gpumix.resources import GPUPool, LLMService
from gpumix.resources.selectors import LabelSelector, namespace_labels
from gpumix.solver import (
    ConfigKey,
    CurrentPlan,
    PlanningInputs,
    Pool,
    Rejection,
    RejectionKind,
    RequestClass,
    ServiceDemand,
    ServiceKey,
)
from gpumix.solver.candidates import (
    MeasuredThroughput,
    PoolHardware,
    ServingSearch,
    generate,
    prune_dominated,
)
from gpumix.solver.model import Candidate, Objective

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NamespaceAdmission:
    """Which namespaces each pool admits (GPUPool ``spec.namespaceSelector``).

    ``namespace_labels`` holds the labels of the namespaces known (the operator watches them);
    a namespace not in it is known by its name label alone, as offline.
    """

    selectors: Mapping[str, LabelSelector] = field(default_factory=dict)
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def admits(self, pool: str, namespace: str) -> bool:
        selector = self.selectors.get(pool)
        if selector is None:
            return True
        return selector.matches(namespace_labels(namespace, self.namespace_labels.get(namespace)))

    def refusal(self, namespace: str, pools: Sequence[str]) -> str:
        shown = "; ".join(f"{pool}: {self.selectors[pool].describe()}" for pool in pools[:3])
        more = f"; and {len(pools) - 3} more" if len(pools) > 3 else ""
        return (
            f"no GPUPool admits namespace {namespace}: their namespaceSelectors select "
            f"{shown}{more}"
        )

    @classmethod
    def of(cls, pools: Sequence[GPUPool]) -> NamespaceAdmission:
        return cls(
            selectors={
                pool.metadata.name: pool.spec.namespace_selector
                for pool in pools
                if pool.spec.namespace_selector is not None
            }
        )


PROFILE_FIELDS = (
    "model",
    "gpuType",
    "tensorParallel",
    "weightFormat",
    "inputTokens",
    "outputTokens",
    "maxRequestsPerSecond",
)


def pool_hardware(
    pool: GPUPool, *, available_gpus: int | None = None, source: str | None = None
) -> PoolHardware:
    """One GPUPool as the solver sees it.

    ``available_gpus`` comes from the operator's live inventory; offline (None) it is
    ``status.availableGPUs`` when the manifest gives it, else ``spec.maxGPUs``.
    """
    spec = pool.spec
    where = f"{source}: GPUPool {pool.metadata.name}" if source else f"GPUPool {pool.metadata.name}"
    if spec.gpu is not None:
        gpus_per_node = spec.gpus_per_node or 8
        price = float(spec.price_per_gpu_hour) if spec.price_per_gpu_hour is not None else None
        if price is None:
            raise InputError(
                "custom GPU types need a price", source=where, field="spec.pricePerGPUHour"
            )
        gpu = custom_gpu_type(
            spec.gpu_type,
            spec.gpu.model_dump(by_alias=True, exclude_none=True),
            gpus_per_node=gpus_per_node,
            price_per_gpu_hour=price,
            source=where,
        )
    else:
        try:
            gpu = get_gpu(spec.gpu_type)
        except UnknownNameError as error:
            raise UnknownNameError(
                "GPU type", spec.gpu_type, gpu_catalog(), source=where, field="spec.gpuType"
            ) from error
        price = (
            float(spec.price_per_gpu_hour)
            if spec.price_per_gpu_hour is not None
            else default_price(gpu.name, spec.capacity_type.value)
        )
    if available_gpus is None:
        available_gpus = _offline_availability(pool, where)
    return PoolHardware(
        Pool(
            name=pool.metadata.name,
            gpu_type=gpu.name,
            capacity_type=spec.capacity_type.value,
            price_per_gpu_hour=price,
            available_gpus=available_gpus,
            gpus_per_node=spec.gpus_per_node or gpu.gpus_per_node,
        ),
        gpu,
    )


def _offline_availability(pool: GPUPool, where: str) -> int:
    status = pool.status
    if status is not None and "available_gpus" in status.model_fields_set:
        return status.available_gpus
    if pool.spec.max_gpus is not None:
        return pool.spec.max_gpus
    raise InputError(
        "offline planning needs status.availableGPUs or spec.maxGPUs",
        source=where,
        field="spec.maxGPUs",
    )


def load_profiles(path: str | Path) -> tuple[MeasuredThroughput, ...]:
    """A profiles file: a YAML/JSON list (or ``{profiles: [...]}``) of measured throughputs."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise InputError(f"cannot read: {error.strerror}", source=source) from None
    except yaml.YAMLError:
        raise InputError("invalid YAML", source=source) from None
    if isinstance(data, Mapping):
        data = data.get("profiles")
    if not isinstance(data, list):
        raise InputError("expected a list of profiles", source=source)
    return tuple(_profile_row(row, f"[{index}]", source) for index, row in enumerate(data))


def _profile_row(row: Any, where: str, source: str) -> MeasuredThroughput:
    if not isinstance(row, Mapping):
        raise InputError("each profile must be a mapping", source=source, field=where)
    for name in PROFILE_FIELDS:
        if name not in row:
            raise InputError("missing", source=source, field=f"{where}.{name}")
    unknown = sorted(set(row) - set(PROFILE_FIELDS))
    if unknown:
        raise UnknownNameError(
            "profile field", unknown[0], PROFILE_FIELDS, source=source, field=where
        )

    def integer(name: str) -> int:
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError("must be a positive integer", source=source, field=f"{where}.{name}")
        return value

    rate = row["maxRequestsPerSecond"]
    try:
        rate_value = float(Decimal(str(rate)))
    except ArithmeticError:
        rate_value = -1.0
    if isinstance(rate, bool) or rate_value < 0:
        raise InputError(
            "must be a non-negative number", source=source, field=f"{where}.maxRequestsPerSecond"
        )
    weight_format = str(row["weightFormat"])
    if weight_format not in set(WeightFormat):
        raise UnknownNameError(
            "weight format",
            weight_format,
            list(WeightFormat),
            source=source,
            field=f"{where}.weightFormat",
        )
    return MeasuredThroughput(
        model=str(row["model"]),
        gpu_type=str(row["gpuType"]),
        tensor_parallel=integer("tensorParallel"),
        weight_format=weight_format,
        input_tokens=integer("inputTokens"),
        output_tokens=integer("outputTokens"),
        max_requests_per_second=rate_value,
    )


def request_classes(service: LLMService) -> tuple[RequestClass, ...]:
    """d[s,w] = requestsPerSecond × share[w]/Σshare × (1 + headroom)."""
    workload = service.spec.workload
    total_share = sum(request_class.share for request_class in workload.classes)
    headroom = 1 + workload.headroom_percent / 100
    total = float(workload.requests_per_second)
    return tuple(
        RequestClass(
            name=request_class.name,
            demand_rps=total * request_class.share / total_share * headroom,
            input_tokens=request_class.input_tokens,
            output_tokens=request_class.output_tokens,
        )
        for request_class in workload.classes
    )


def scaled(candidate: Candidate, factor: float) -> Candidate:
    if factor == 1.0:
        return candidate
    throughput = {name: rate * factor for name, rate in candidate.throughput_rps.items()}
    return dataclasses.replace(candidate, throughput_rps=throughput)


def service_demand(
    service: LLMService,
    pools: Sequence[PoolHardware],
    *,
    profiles: Sequence[MeasuredThroughput] = (),
    current_plan: CurrentPlan | None = None,
    source: str | None = None,
    admission: NamespaceAdmission | None = None,
    capacity_factors: Mapping[tuple[str, int, str], float] | None = None,
) -> ServiceDemand:
    """``capacity_factors`` ((GPU type, TP, weight format) -> factor) scale the candidates'
    throughputs, before dominated ones are pruned: a de-rated configuration may no longer
    dominate the one it used to."""
    spec = service.spec
    where = f"{source}: LLMService {service.metadata.name}" if source else None
    architecture = (
        spec.model.architecture.model_dump(by_alias=True, exclude_none=True)
        if spec.model.architecture is not None
        else None
    )
    try:
        model = resolve_model(spec.model.name, architecture, source=where)
    except InputError as error:
        raise InputError(
            error.detail, source=where, field=error.field or "spec.model.name"
        ) from error
    placement = spec.placement
    known_types = {hardware.gpu.name for hardware in pools} | set(gpu_catalog())
    for index, gpu_type in enumerate(placement.gpu_types):
        if gpu_type not in known_types:
            raise UnknownNameError(
                "GPU type",
                gpu_type,
                known_types,
                source=where,
                field=f"spec.placement.gpuTypes[{index}]",
            )
    capacity_types = {capacity_type.value for capacity_type in placement.capacity_types}
    namespace = service.metadata.namespace or "default"
    admitted = [
        hardware
        for hardware in pools
        if admission is None or admission.admits(hardware.pool.name, namespace)
    ]
    allowed = [
        hardware
        for hardware in admitted
        if (not placement.gpu_types or hardware.gpu.name in placement.gpu_types)
        and hardware.pool.capacity_type in capacity_types
    ]
    classes = request_classes(service)
    spec_problems: list[str] = []
    not_admitted: tuple[Rejection, ...] = ()
    if pools and not admitted and admission is not None:
        # Not the spec's fault: the platform team's pools are reserved for other namespaces.
        refused = [hardware.pool.name for hardware in pools]
        not_admitted = (
            Rejection("", 0, "", None, RejectionKind.NOT_ADMITTED,
                      admission.refusal(namespace, refused)),
        )  # fmt: skip
    elif not allowed:
        types = ", ".join(placement.gpu_types) or "any"
        spec_problems.append(
            f"no GPUPool matches placement (gpuTypes: {types}; capacityTypes: "
            f"{', '.join(sorted(capacity_types))})"
        )
    search = ServingSearch(
        model=model,
        classes=classes,
        slo=LatencySLO(
            ttft_seconds=spec.slo.ttft_milliseconds / 1000,
            tpot_seconds=spec.slo.tpot_milliseconds / 1000,
        ),
        max_model_len=spec.model.max_model_len,
        tensor_parallel_sizes=tuple(sorted(set(placement.tensor_parallel_sizes))),
        weight_formats=tuple(sorted({WeightFormat(f.value) for f in spec.model.weight_formats})),
    )
    found = generate(search, allowed, profiles)
    candidates = found.candidates
    if capacity_factors:
        gpu_of_pool = {hardware.pool.name: hardware.gpu.name for hardware in allowed}
        candidates = tuple(
            scaled(c, capacity_factors.get((gpu_of_pool[c.pool], c.tensor_parallel,
                                            c.weight_format), 1.0))
            for c in candidates
        )  # fmt: skip
    keep: set[ConfigKey] = set()
    for (service_key, config_key), replicas in (current_plan or {}).items():
        if (service_key.namespace, service_key.name) == (namespace, service.metadata.name) and (
            replicas > 0
        ):
            keep.add(config_key)
    budget = spec.max_cost_per_hour
    return ServiceDemand(
        namespace=namespace,
        name=service.metadata.name,
        classes=classes,
        candidates=prune_dominated(candidates, keep),
        objective=Objective(spec.objective.value),
        max_cost_per_hour=float(budget) if budget is not None else None,
        min_replicas=placement.min_replicas,
        max_replicas=placement.max_replicas,
        min_on_demand_replicas=placement.min_on_demand_replicas,
        rejections=found.rejections + not_admitted,
        spec_problems=tuple(spec_problems),
    )


def planning_inputs(
    services: Sequence[tuple[LLMService, str | None]],
    pools: Sequence[PoolHardware],
    *,
    profiles: Sequence[MeasuredThroughput] = (),
    current_plan: CurrentPlan | None = None,
    admission: NamespaceAdmission | None = None,
) -> PlanningInputs:
    """Services (each with the file it came from, for error messages) on the given pools."""
    seen: set[tuple[str, str]] = set()
    demands = []
    for service, source in services:
        key = (service.metadata.namespace or "default", service.metadata.name)
        if key in seen:
            raise InputError(
                f"duplicate LLMService {key[0]}/{key[1]}", source=source, field="metadata.name"
            )
        seen.add(key)
        demands.append(
            service_demand(
                service,
                pools,
                profiles=profiles,
                current_plan=current_plan,
                source=source,
                admission=admission,
            )
        )
    names = [hardware.pool.name for hardware in pools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputError(f"duplicate GPUPool {duplicates[0]}", field="metadata.name")
    return PlanningInputs(
        pools=tuple(hardware.pool for hardware in pools),
        services=tuple(demands),
        current_plan=dict(current_plan or {}),
    )


@dataclass(frozen=True)
class ServiceToPlan:
    """One LLMService as the planner found it: parsed, or the one line why it could not be."""

    key: ServiceKey
    resource: LLMService | None
    problem: str | None = None


def build_demands(
    services: Iterable[ServiceToPlan], build: Callable[[ServiceKey, LLMService], ServiceDemand]
) -> tuple[list[ServiceDemand], dict[ServiceKey, str]]:
    """Each service's demand, or why it cannot be planned (key -> one line).

    Shared by the operator's planning pass and the API's what-if, so both refuse the same
    specs with the same words. A defect while building one service's demand becomes that
    service's problem: it must not stop everyone else's planning.
    """
    demands: list[ServiceDemand] = []
    problems: dict[ServiceKey, str] = {}
    for service in services:
        problem = service.problem
        if service.resource is not None:
            try:
                demands.append(build(service.key, service.resource))
                continue
            except (InputError, ValueError) as error:
                problem = str(error)
            except Exception as error:
                logger.exception(
                    "building the demand of %s/%s failed", service.key.namespace, service.key.name
                )
                problem = f"gpumix could not plan this spec ({type(error).__name__}: {error})"
        problems[service.key] = problem or "invalid spec"
    return demands, problems


__all__ = [
    "GPUType",
    "MeasuredThroughput",
    "NamespaceAdmission",
    "PoolHardware",
    "ServiceToPlan",
    "build_demands",
    "load_profiles",
    "planning_inputs",
    "pool_hardware",
    "request_classes",
    "service_demand",
]
