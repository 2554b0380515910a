"""Candidate configurations for one service: pool × tensor-parallel size × weight format.

A configuration is a candidate when it fits in memory, its replica fits on one node, and it
meets the SLO for at least one request class (its throughput table then says which classes).
Measured profiles are authoritative: when any exist for the model on a GPU type, only the
profiled (tensor-parallel, weight format, class) combinations of that GPU type are candidates,
with the measured throughput.

``prune_dominated`` then drops configurations that another one in the same pool beats on every
class with no more GPUs per replica: any plan using the dominated one can switch replica for
replica at no extra cost, GPUs or replicas, so the optimum is unchanged and the MILP shrinks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from gpumix.catalog import GPUType, ModelArchitecture
from gpumix.perf import LatencySLO, RequestShape, ServingConfig, WeightFormat, predict
from gpumix.solver.model import Candidate, ConfigKey, Pool, Rejection, RejectionKind, RequestClass


@dataclass(frozen=True)
class PoolHardware:
    pool: Pool
    gpu: GPUType


@dataclass(frozen=True)
class MeasuredThroughput:
    """One row of a profiles file: measured requests/s of one replica for one request shape."""

    model: str
    gpu_type: str
    tensor_parallel: int
    weight_format: str
    input_tokens: int
    output_tokens: int
    max_requests_per_second: float


@dataclass(frozen=True)
class ServingSearch:
    """What one service allows: the space its candidates are drawn from."""

    model: ModelArchitecture
    classes: tuple[RequestClass, ...]
    slo: LatencySLO
    max_model_len: int
    tensor_parallel_sizes: tuple[int, ...]
    weight_formats: tuple[WeightFormat, ...]


@dataclass(frozen=True)
class CandidateSet:
    candidates: tuple[Candidate, ...]
    rejections: tuple[Rejection, ...]


def same_model(profile_model: str, model: ModelArchitecture) -> bool:
    """Profiles may name the model by its Hugging Face id or by the part after the slash."""
    wanted = profile_model.strip().lower()
    name = model.name.lower()
    return wanted in (name, name.rsplit("/", 1)[-1])


def generate(
    search: ServingSearch,
    pools: Sequence[PoolHardware],
    profiles: Sequence[MeasuredThroughput] = (),
) -> CandidateSet:
    measured = [row for row in profiles if same_model(row.model, search.model)]
    profiled_types = {row.gpu_type for row in measured}
    # Pools of one GPU type differ only in price and capacity type: predict once per type.
    tables: dict[tuple[str, int, WeightFormat], dict[str, float]] = {}
    rejections: dict[tuple[str, int, WeightFormat, str | None], Rejection] = {}
    candidates: list[Candidate] = []
    for hardware in sorted(pools, key=lambda item: item.pool.name):
        gpu = hardware.gpu
        for tensor_parallel in sorted(search.tensor_parallel_sizes):
            for weight_format in sorted(search.weight_formats):
                key = (gpu.name, tensor_parallel, weight_format)
                if key not in tables:
                    if gpu.name in profiled_types:
                        tables[key] = _measured_table(search, key, measured, rejections)
                    else:
                        tables[key] = _predicted_table(search, gpu, key, rejections)
                table = tables[key]
                if tensor_parallel > hardware.pool.gpus_per_node:
                    rejections[gpu.name, tensor_parallel, weight_format, None] = Rejection(
                        gpu.name,
                        tensor_parallel,
                        weight_format.value,
                        None,
                        RejectionKind.NODE_SIZE,
                        f"{gpu.name} TP{tensor_parallel}: pool {hardware.pool.name} has "
                        f"{hardware.pool.gpus_per_node} GPUs per node",
                    )
                    continue
                if table:
                    candidates.append(
                        Candidate(hardware.pool.name, tensor_parallel, weight_format.value, table)
                    )
    ordered_rejections = tuple(rejections[key] for key in sorted(rejections, key=_rejection_order))
    return CandidateSet(tuple(candidates), ordered_rejections)


def _rejection_order(key: tuple[str, int, WeightFormat, str | None]) -> tuple[str, int, str, str]:
    return (key[0], key[1], key[2].value, key[3] or "")


def _predicted_table(
    search: ServingSearch,
    gpu: GPUType,
    key: tuple[str, int, WeightFormat],
    rejections: dict[tuple[str, int, WeightFormat, str | None], Rejection],
) -> dict[str, float]:
    _, tensor_parallel, weight_format = key
    config = ServingConfig(gpu=gpu, tensor_parallel=tensor_parallel, weight_format=weight_format)
    label = f"{gpu.name} TP{tensor_parallel} {weight_format.value}"
    table: dict[str, float] = {}
    for request_class in search.classes:
        prediction = predict(
            search.model,
            config,
            RequestShape(request_class.input_tokens, request_class.output_tokens),
            search.slo,
            search.max_model_len,
        )
        if not prediction.fits:
            kind = (
                RejectionKind.UNSUPPORTED
                if "fp8" in prediction.reason or "tensor parallel" in prediction.reason
                else RejectionKind.MEMORY
            )
            rejections[(*key, None)] = Rejection(
                gpu.name,
                tensor_parallel,
                weight_format.value,
                None,
                kind,
                f"{label}: {prediction.reason}",
            )
            return {}
        if prediction.max_requests_per_second > 0:
            table[request_class.name] = prediction.max_requests_per_second
        else:
            rejections[(*key, request_class.name)] = Rejection(
                gpu.name,
                tensor_parallel,
                weight_format.value,
                request_class.name,
                RejectionKind.SLO,
                f"{label}: {prediction.reason}",
            )
    return table


def _measured_table(
    search: ServingSearch,
    key: tuple[str, int, WeightFormat],
    measured: Sequence[MeasuredThroughput],
    rejections: dict[tuple[str, int, WeightFormat, str | None], Rejection],
) -> dict[str, float]:
    gpu_type, tensor_parallel, weight_format = key
    label = f"{gpu_type} TP{tensor_parallel} {weight_format.value}"
    table: dict[str, float] = {}
    for request_class in search.classes:
        rates = [
            row.max_requests_per_second
            for row in measured
            if row.gpu_type == gpu_type
            and row.tensor_parallel == tensor_parallel
            and row.weight_format == weight_format.value
            and row.input_tokens == request_class.input_tokens
            and row.output_tokens == request_class.output_tokens
        ]
        if rates and max(rates) > 0:
            table[request_class.name] = max(rates)
        elif rates:
            rejections[(*key, request_class.name)] = Rejection(
                gpu_type,
                tensor_parallel,
                weight_format.value,
                request_class.name,
                RejectionKind.SLO,
                f"{label}: measured 0 requests/s for class {request_class.name}",
            )
        else:
            rejections[(*key, request_class.name)] = Rejection(
                gpu_type,
                tensor_parallel,
                weight_format.value,
                request_class.name,
                RejectionKind.NOT_PROFILED,
                f"{label}: no measured profile for {request_class.input_tokens}/"
                f"{request_class.output_tokens} tokens",
            )
    return table


def prune_dominated(
    candidates: Sequence[Candidate], keep: Collection[ConfigKey] = ()
) -> tuple[Candidate, ...]:
    """Drop candidates beaten in their own pool by one with ≤ GPUs and ≥ throughput per class.

    Of identical candidates the first in order survives. Configurations in ``keep`` (those the
    current plan runs) are never dropped, so minimising churn can keep them.
    """
    by_pool: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        by_pool[candidate.pool].append(candidate)
    survivors: list[Candidate] = []
    for candidate in candidates:
        if candidate.key in keep or not any(
            other is not candidate and _dominates(other, candidate, candidates)
            for other in by_pool[candidate.pool]
        ):
            survivors.append(candidate)
    return tuple(survivors)


def _dominates(better: Candidate, worse: Candidate, order: Sequence[Candidate]) -> bool:
    if better.tensor_parallel > worse.tensor_parallel:
        return False
    classes = set(better.throughput_rps) | set(worse.throughput_rps)
    at_least = all(
        better.throughput_rps.get(name, 0.0) >= worse.throughput_rps.get(name, 0.0)
        for name in classes
    )
    if not at_least:
        return False
    strictly = better.tensor_parallel < worse.tensor_parallel or any(
        better.throughput_rps.get(name, 0.0) > worse.throughput_rps.get(name, 0.0)
        for name in classes
    )
    # Exact ties: the earlier one wins, so exactly one of a tied group survives.
    return strictly or _index(order, better) < _index(order, worse)


def _index(order: Sequence[Candidate], candidate: Candidate) -> int:
    return next(i for i, item in enumerate(order) if item is candidate)
