"""Inputs and outputs of the planner: frozen dataclasses, no behaviour.

Everything the MILP needs is here in plain numbers, so the solver never sees a Kubernetes object,
a catalogue entry or the performance model. ``gpumix.planning`` builds these from resources;
tests and the benchmark build them by hand.

Units: money in USD per hour, demand and throughput in requests per second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Objective(StrEnum):
    MIN_COST = "MinCost"
    MAX_THROUGHPUT = "MaxThroughput"


class SolveStatus(StrEnum):
    OPTIMAL = "Optimal"
    # A plan that satisfies every constraint, found before the time limit stopped the search;
    # the result carries the relative gap to the best bound.
    FEASIBLE = "Feasible"
    INFEASIBLE = "Infeasible"
    # The time limit stopped the search before any plan was found: not proven infeasible.
    NO_SOLUTION = "NoSolutionFound"


class ReasonCode(StrEnum):
    """Machine-readable cause of infeasibility; the operator uses them as condition reasons."""

    BUDGET_TOO_SMALL = "BudgetTooSmall"
    NO_CAPACITY = "NoCapacity"
    SLO_UNREACHABLE = "SLOUnreachable"
    INVALID_SPEC = "InvalidSpec"
    # Not a property of the problem: the time limit ran out before any plan was found.
    TIME_LIMIT = "SolverTimeLimit"


class Backend(StrEnum):
    HIGHS = "highs"
    CBC = "cbc"


# Capacity types whose GPUs are not reclaimed by the provider; they count towards
# ``minOnDemandReplicas`` (the spot hedge).
NON_PREEMPTIBLE_CAPACITY_TYPES = frozenset({"on-demand", "reserved"})


@dataclass(frozen=True)
class Pool:
    """GPUs of one type and one capacity type that the planner may use, shared by all services."""

    name: str
    gpu_type: str
    capacity_type: str
    price_per_gpu_hour: float
    available_gpus: int
    gpus_per_node: int

    @property
    def preemptible(self) -> bool:
        return self.capacity_type not in NON_PREEMPTIBLE_CAPACITY_TYPES


@dataclass(frozen=True)
class RequestClass:
    """A request class of one service with its demand (headroom already applied)."""

    name: str
    demand_rps: float
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Candidate:
    """A deployment configuration one replica of a service may use: pool × TP × weight format.

    ``throughput_rps[class]`` is the requests/s one replica sustains for that class within the
    SLO; a class that is missing (or 0) cannot be sent to this configuration.
    """

    pool: str
    tensor_parallel: int
    weight_format: str
    throughput_rps: Mapping[str, float]

    @property
    def key(self) -> ConfigKey:
        return ConfigKey(self.pool, self.tensor_parallel, self.weight_format)


@dataclass(frozen=True, order=True)
class ConfigKey:
    pool: str
    tensor_parallel: int
    weight_format: str


class RejectionKind(StrEnum):
    MEMORY = "memory"  # weights + one sequence of KV cache do not fit
    SLO = "slo"  # cannot meet TTFT/TPOT even at batch 1
    NODE_SIZE = "node-size"  # tensor-parallel size exceeds GPUs per node
    NOT_PROFILED = "not-profiled"  # measured profiles exist for the GPU type, not for this one
    UNSUPPORTED = "unsupported"  # e.g. fp8 on a GPU without fp8 support
    UNSCHEDULABLE = "unschedulable"  # the operator saw this pool's new replicas not come up
    NOT_ADMITTED = "not-admitted"  # no pool's namespaceSelector admits the service's namespace


@dataclass(frozen=True)
class Rejection:
    """Why a configuration (optionally for one class) is not a candidate; feeds the reasons."""

    gpu_type: str
    tensor_parallel: int
    weight_format: str
    request_class: str | None
    kind: RejectionKind
    detail: str


@dataclass(frozen=True)
class ServiceDemand:
    """One service to plan: its classes, its candidate configurations and its constraints."""

    namespace: str
    name: str
    classes: tuple[RequestClass, ...]
    candidates: tuple[Candidate, ...]
    objective: Objective = Objective.MIN_COST
    max_cost_per_hour: float | None = None
    min_replicas: int = 1
    max_replicas: int = 64
    min_on_demand_replicas: int = 0
    rejections: tuple[Rejection, ...] = ()
    # Problems found before solving (e.g. no pool matches the allow-list): reported verbatim
    # with ReasonCode.INVALID_SPEC.
    spec_problems: tuple[str, ...] = ()

    @property
    def key(self) -> ServiceKey:
        return ServiceKey(self.namespace, self.name)

    @property
    def demand_rps(self) -> float:
        return sum(request_class.demand_rps for request_class in self.classes)


@dataclass(frozen=True, order=True)
class ServiceKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


# The operator's current deployment: (service, configuration) -> replicas.
CurrentPlan = Mapping[tuple[ServiceKey, ConfigKey], int]
# The class shares each running configuration serves now (class -> share of the class).
CurrentAssignment = Mapping[tuple[ServiceKey, ConfigKey], Mapping[str, float]]


@dataclass(frozen=True)
class SolveOptions:
    backend: Backend = Backend.HIGHS
    time_limit_seconds: float = 30.0
    # Relative MIP gap at which the search stops and the plan counts as optimal.
    mip_relative_gap: float = 1e-4
    # Stop earlier, once a plan is within this relative gap of the best bound (e.g. 0.005):
    # such a plan is reported Feasible with its gap, Optimal only within mip_relative_gap.
    stop_relative_gap: float = 0.0
    # With a current plan: the churn phase may raise cost by at most this fraction of the optimum.
    churn_cost_tolerance: float = 0.02
    objective_override: Objective | None = None
    baselines: bool = True
    explain: bool = True
    threads: int | None = None


@dataclass(frozen=True)
class PlanningInputs:
    pools: tuple[Pool, ...]
    services: tuple[ServiceDemand, ...]
    current_plan: CurrentPlan = field(default_factory=dict)
    # Shares that stay when the new plan's replicas still carry them (solver.stability).
    current_assignment: CurrentAssignment = field(default_factory=dict)

    def pool(self, name: str) -> Pool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# Outputs


@dataclass(frozen=True)
class PlanEntry:
    """Replicas of one service on one configuration."""

    pool: str
    gpu_type: str
    capacity_type: str
    tensor_parallel: int
    weight_format: str
    replicas: int
    gpus: int
    cost_per_hour: float
    # Share of each class's served traffic sent to this configuration (sums to 1 over entries).
    assignment: Mapping[str, float]
    # Per replica, at the SLO.
    capacity_rps: Mapping[str, float]

    @property
    def key(self) -> ConfigKey:
        return ConfigKey(self.pool, self.tensor_parallel, self.weight_format)


@dataclass(frozen=True)
class Baseline:
    """The best plan for a service that uses a single GPU type."""

    gpu_type: str
    status: SolveStatus
    cost_per_hour: float | None
    served_rps: float | None

    @property
    def name(self) -> str:
        return f"homogeneous:{self.gpu_type}"


@dataclass(frozen=True)
class Reason:
    code: ReasonCode
    message: str


@dataclass(frozen=True)
class ServicePlan:
    namespace: str
    name: str
    objective: Objective
    cost_per_hour: float
    demand_rps: float
    scale_factor: float
    served_rps: float
    entries: tuple[PlanEntry, ...]
    # Per class: planned capacity (req/s, all entries) and demand (req/s, scaled for MaxThroughput).
    class_capacity_rps: Mapping[str, float] = field(default_factory=dict)
    class_demand_rps: Mapping[str, float] = field(default_factory=dict)
    baselines: tuple[Baseline, ...] = ()
    # Against the best single-GPU-type plan: cost saved (MinCost) or cost per served req/s saved
    # (MaxThroughput); and extra throughput (MaxThroughput).
    savings_percent: float | None = None
    throughput_gain_percent: float | None = None
    status: SolveStatus = SolveStatus.OPTIMAL
    reasons: tuple[Reason, ...] = ()

    @property
    def key(self) -> ServiceKey:
        return ServiceKey(self.namespace, self.name)

    @property
    def replicas(self) -> int:
        return sum(entry.replicas for entry in self.entries)


@dataclass(frozen=True)
class Violation:
    service: str | None
    constraint: str
    message: str


@dataclass(frozen=True)
class PlanResult:
    status: SolveStatus
    objective: str  # MinCost | MaxThroughput | Mixed
    gap: float | None
    solve_seconds: float
    total_cost_per_hour: float
    services: tuple[ServicePlan, ...]
    backend: Backend
    variables: int = 0
    constraints: int = 0
    churn_replicas: int | None = None
    violations: tuple[Violation, ...] = ()

    @property
    def feasible(self) -> bool:
        return self.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
