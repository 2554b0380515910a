"""The bodies of the plan API: pydantic models, camelCase on the wire, as the CRDs are.

Responses carry money as numbers rounded to cents (they are read, not written back); request
bodies take prices as decimal strings, as GPUPool ``spec.pricePerGPUHour`` does, so a price is
written the same way everywhere a user writes one. Request models forbid unknown keys: a typo
such as ``removePool`` is a 422 naming it, not a what-if that silently changed nothing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gpumix.resources import Condition, LLMService
from gpumix.resources.types import CamelModel, DecimalString

# -- fleet ---------------------------------------------------------------------------------------


class PoolHolding(CamelModel):
    """What one service's running plan holds in one pool."""

    namespace: str
    name: str
    replicas: int
    gpus: int
    cost_per_hour: float


class PoolView(CamelModel):
    name: str
    gpu_type: str
    capacity_type: str
    # The GPUPool status spelling (allocatedGPUs, not allocatedGpus), as kubectl shows it.
    price_per_gpu_hour: float | None = Field(
        serialization_alias="pricePerGPUHour", description="USD per GPU-hour the planner uses."
    )
    nodes: int
    ready_nodes: int
    gpus: int = Field(description="GPUs on the pool's nodes.")
    allocated_gpus: int = Field(
        serialization_alias="allocatedGPUs",
        description="GPUs requested by running pods on its nodes.",
    )
    available_gpus: int = Field(
        serialization_alias="availableGPUs",
        description="GPUs the planner may place now, including autoscaler headroom.",
    )
    discovered: bool = Field(description="Found from node labels rather than a GPUPool.")
    plannable: bool
    problem: str | None = None
    holdings: list[PoolHolding] = Field(default_factory=list)


class FleetView(CamelModel):
    pools: list[PoolView]
    total_cost_per_hour: float = Field(description="Sum of every service's running plan.")
    planned_at: str | None = Field(
        default=None, description="When the planner last looked at the fleet (RFC 3339)."
    )


# -- services ------------------------------------------------------------------------------------


class PlanEntryView(CamelModel):
    deployment: str | None = None
    pool: str
    gpu_type: str
    capacity_type: str
    tensor_parallel: int
    weight_format: str
    replicas: int
    ready_replicas: int | None = None
    gpus: int
    cost_per_hour: float
    assignment: dict[str, float] = Field(
        default_factory=dict, description="Share of each request class sent here (0..1)."
    )


class BaselineView(CamelModel):
    name: str
    cost_per_hour: float


class DemandView(CamelModel):
    """The demand the plan is sized for. With autoscaling, the plan and the shares follow the
    observed load; ``observedRequestsPerSecond`` is null without autoscaling."""

    requests_per_second: float = Field(description="spec.workload.requestsPerSecond.")
    headroom_percent: float
    planned_requests_per_second: float = Field(description="With headroom applied.")
    class_shares: dict[str, float] = Field(default_factory=dict)
    observed_requests_per_second: float | None = None


class PlanChangeView(CamelModel):
    time: str
    message: str = Field(description="The PlanChanged event's text: old plan → new plan.")
    cause: str
    cost_before: float | None
    cost_after: float | None
    generation: int | None = None


class ServiceView(CamelModel):
    namespace: str
    name: str
    model: str | None = None
    feasible: bool | None = Field(description="Feasible condition; null before the first plan.")
    cost_per_hour: float | None = None
    desired_replicas: int = 0
    ready_replicas: int = 0
    plan: list[PlanEntryView] = Field(default_factory=list)
    baseline: BaselineView | None = None
    savings_percent: float | None = None
    conditions: list[Condition] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    last_plan_time: str | None = None
    demand: DemandView | None = None
    plan_changes: list[PlanChangeView] = Field(
        default_factory=list, description="The last plan changes, oldest first (bounded)."
    )


class ServiceList(CamelModel):
    services: list[ServiceView]


# -- what-if -------------------------------------------------------------------------------------


class AvailabilityChange(CamelModel):
    pool: str = Field(min_length=1)
    available_gpus: int = Field(ge=0, strict=True, alias="availableGPUs")


class PriceChange(CamelModel):
    """A new price for one pool, or for every pool of a GPU type (optionally one capacity
    type): either an absolute ``pricePerGPUHour`` or a relative ``changePercent``."""

    pool: str | None = Field(default=None, min_length=1)
    gpu_type: str | None = Field(default=None, min_length=1)
    capacity_type: Literal["on-demand", "spot", "reserved"] | None = None
    price_per_gpu_hour: DecimalString | None = Field(default=None, alias="pricePerGPUHour")
    change_percent: float | None = Field(
        default=None, gt=-100, le=1000, description="e.g. -30 for 30 % cheaper."
    )

    @model_validator(mode="after")
    def _one_target_one_price(self) -> PriceChange:
        if (self.pool is None) == (self.gpu_type is None):
            raise ValueError("give exactly one of pool or gpuType")
        if self.pool is not None and self.capacity_type is not None:
            raise ValueError("capacityType narrows gpuType; a pool has one already")
        if (self.price_per_gpu_hour is None) == (self.change_percent is None):
            raise ValueError("give exactly one of pricePerGPUHour or changePercent")
        return self


class ClassShare(CamelModel):
    name: str = Field(min_length=1)
    # Relative, like spec.workload.classes[].share (normalised over the classes).
    share: int = Field(ge=1, le=1_000_000, strict=True)


class DemandChange(CamelModel):
    """New demand or request mix for a running service; unnamed classes keep their share."""

    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    requests_per_second: DecimalString | None = None
    classes: list[ClassShare] = Field(default_factory=list, max_length=64)


class WhatIfRequest(CamelModel):
    """Changes to the live inputs; everything left out stays as the operator sees it now."""

    availability: list[AvailabilityChange] = Field(default_factory=list, max_length=256)
    prices: list[PriceChange] = Field(default_factory=list, max_length=256)
    removed_pools: list[str] = Field(default_factory=list, max_length=256)
    services: list[DemandChange] = Field(default_factory=list, max_length=256)
    manifests: list[LLMService] = Field(
        default_factory=list,
        max_length=64,
        description="Extra LLMServices; one with the name of a running service replaces its "
        "spec in the what-if.",
    )
    time_limit_seconds: float | None = Field(
        default=None, gt=0, description="Capped by the server's what-if time limit."
    )


class ConfigurationChange(CamelModel):
    """Replicas of one configuration in the running plan and in the what-if plan."""

    pool: str
    gpu_type: str
    capacity_type: str
    tensor_parallel: int
    weight_format: str
    running_replicas: int
    planned_replicas: int
    delta: int


class WhatIfService(CamelModel):
    namespace: str
    name: str
    status: str = Field(description="Optimal, Feasible, Infeasible, NoSolutionFound, InvalidSpec.")
    feasible: bool
    new: bool = Field(description="Not running now: added by the what-if's manifests.")
    becomes_infeasible: bool = Field(
        description="Has a plan for its current spec now, would have none."
    )
    cost_per_hour: float | None
    running_cost_per_hour: float | None
    cost_delta_per_hour: float | None
    plan: list[PlanEntryView]
    changes: list[ConfigurationChange] = Field(description="Only the configurations that move.")
    reasons: list[str]
    reason_codes: list[str]


class WhatIfResponse(CamelModel):
    """``totalCostPerHour`` sums the services that would have a plan; one that would not keeps
    its last good plan running in the operator, which this total leaves out."""

    status: str
    gap: float | None
    solve_seconds: float
    time_limit_seconds: float
    total_cost_per_hour: float
    running_cost_per_hour: float
    cost_delta_per_hour: float
    services: list[WhatIfService]
