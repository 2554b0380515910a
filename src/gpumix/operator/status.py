"""LLMService status and its conditions, computed from what the planner and reconciler know.

Pure. Conditions follow the Kubernetes API conventions: ``lastTransitionTime`` moves only when
a condition's ``status`` changes, every condition carries the generation it describes, and
``Ready`` is the summary a user (and the printer column) reads first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from gpumix.resources import Condition, LLMServiceStatus, PlanEntryStatus
from gpumix.resources.llmservice import BaselineStatus, CalibrationStatus, ObservedDemandStatus

READY = "Ready"
PLANNED = "Planned"
FEASIBLE = "Feasible"
PROGRESSING = "Progressing"
METRICS_AVAILABLE = "MetricsAvailable"
CONDITION_ORDER = (READY, PLANNED, FEASIBLE, PROGRESSING, METRICS_AVAILABLE)

# Reasons of the Feasible condition when no plan was found (the solver's ReasonCode values, plus
# the solver status for a time-limited search that found nothing).
INVALID_SPEC = "InvalidSpec"
NO_SOLUTION_FOUND = "NoSolutionFound"
# Ready and Progressing reason (and Warning event reason) when the API refused a child write.
APPLY_FAILED = "ApplyFailed"

ConditionStatus = Literal["True", "False", "Unknown"]


def set_condition(
    conditions: Sequence[Condition], new: Condition, now: str
) -> tuple[Condition, ...]:
    """``conditions`` with ``new`` in place; its transition time is kept unless status changed."""
    previous = next((c for c in conditions if c.type == new.type), None)
    if previous is not None and previous.status == new.status and previous.last_transition_time:
        stamped = new.model_copy(update={"last_transition_time": previous.last_transition_time})
    else:
        stamped = new.model_copy(update={"last_transition_time": now})
    others = [c for c in conditions if c.type != new.type]
    return tuple(sorted([*others, stamped], key=_condition_rank))


def _condition_rank(condition: Condition) -> tuple[int, str]:
    if condition.type in CONDITION_ORDER:
        return CONDITION_ORDER.index(condition.type), condition.type
    return len(CONDITION_ORDER), condition.type


@dataclass(frozen=True)
class ServiceView:
    """Everything the status of one LLMService says, as the planner and reconciler see it."""

    generation: int | None
    # Whether the latest planning of the current spec found a plan.
    feasible: bool
    # Feasible=False reason (BudgetTooSmall, NoCapacity, SLOUnreachable, InvalidSpec, ...).
    infeasible_reason: str
    messages: tuple[str, ...]
    # The plan in effect, with live ready counts: the new plan, or the last good one.
    entries: tuple[PlanEntryStatus, ...]
    cost_per_hour: Decimal | None
    baseline: BaselineStatus | None
    savings_percent: Decimal | None
    # Obsolete Deployments are still running, or desired ones are not yet ready.
    migrating: bool
    last_plan_time: str | None
    # The API refused to create, replace or delete a child (webhook, quota, RBAC, invalid).
    apply_error: str | None = None
    # Why planned Deployments are not ready, in the API's words (FailedScheduling, quota, ...).
    waiting_on: str | None = None
    # Autoscaling only: the load observed and the demand planned, and whether the load could
    # be read (the MetricsAvailable condition, absent without autoscaling).
    observed_demand: ObservedDemandStatus | None = None
    metrics: Condition | None = None
    calibration: tuple[CalibrationStatus, ...] = ()

    @property
    def desired_replicas(self) -> int:
        return sum(entry.replicas for entry in self.entries)

    @property
    def ready_replicas(self) -> int:
        return sum(min(entry.ready_replicas, entry.replicas) for entry in self.entries)

    @property
    def all_ready(self) -> bool:
        return all(entry.ready_replicas >= entry.replicas for entry in self.entries)


def _condition(
    kind: str, status: ConditionStatus, reason: str, message: str, generation: int | None
) -> Condition:
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
    )


def conditions_for(view: ServiceView) -> list[Condition]:
    """The four conditions (without transition times) that ``view`` implies."""
    generation = view.generation
    detail = "; ".join(view.messages)
    has_plan = bool(view.entries)
    if view.feasible:
        feasible = _condition(FEASIBLE, "True", "PlanFound", detail, generation)
    else:
        feasible = _condition(
            FEASIBLE, "False", view.infeasible_reason, detail or "no plan found", generation
        )

    if view.feasible:
        planned = _condition(
            PLANNED,
            "True",
            "PlanApplied",
            f"{view.desired_replicas} replicas in {len(view.entries)} deployments",
            generation,
        )
    elif has_plan:
        planned = _condition(
            PLANNED,
            "True",
            "LastGoodPlanKept",
            "the current spec has no feasible plan; the last good plan keeps running",
            generation,
        )
    else:
        planned = _condition(PLANNED, "False", "NoPlan", "no feasible plan yet", generation)

    if view.apply_error:
        progressing = _condition(PROGRESSING, "False", APPLY_FAILED, view.apply_error, generation)
    elif view.migrating:
        progressing = _condition(
            PROGRESSING,
            "True",
            "Migrating",
            "waiting for the planned Deployments to become ready before removing old ones"
            + (f"; {view.waiting_on}" if view.waiting_on else ""),
            generation,
        )
    else:
        progressing = _condition(
            PROGRESSING, "False", "Stable", "the running Deployments match the plan", generation
        )

    replicas = f"{view.ready_replicas}/{view.desired_replicas} replicas ready"
    if view.apply_error:
        ready = _condition(READY, "False", APPLY_FAILED, view.apply_error, generation)
    elif not has_plan:
        ready = _condition(READY, "False", "NoPlan", detail or "no plan", generation)
    elif view.all_ready:
        ready = _condition(READY, "True", "AllReplicasReady", replicas, generation)
    else:
        ready = _condition(
            READY,
            "False",
            "ReplicasNotReady",
            replicas + (f"; {view.waiting_on}" if view.waiting_on else ""),
            generation,
        )
    return [ready, planned, feasible, progressing]


def build_status(
    view: ServiceView, previous: LLMServiceStatus | None, now: str
) -> LLMServiceStatus:
    conditions: tuple[Condition, ...] = tuple(previous.conditions) if previous else ()
    for condition in conditions_for(view):
        conditions = set_condition(conditions, condition, now)
    if view.metrics is not None:
        conditions = set_condition(conditions, view.metrics, now)
    else:  # autoscaling turned off: the condition no longer describes anything
        conditions = tuple(c for c in conditions if c.type != METRICS_AVAILABLE)
    return LLMServiceStatus(
        observed_generation=view.generation,
        conditions=list(conditions),
        cost_per_hour=view.cost_per_hour,
        replicas=f"{view.ready_replicas}/{view.desired_replicas}",
        ready_replicas=view.ready_replicas,
        desired_replicas=view.desired_replicas,
        plan=list(view.entries),
        baseline=view.baseline,
        savings_percent=view.savings_percent,
        reasons=list(view.messages),
        last_plan_time=view.last_plan_time,
        observed_demand=view.observed_demand,
        calibration=list(view.calibration) or None,
    )


def status_document(status: LLMServiceStatus) -> dict[str, object]:
    """The status as the API stores it (camelCase, decimals as strings, unset fields omitted)."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)
