"""The routing table: what the router knows about one LLMService, as an immutable snapshot.

A watcher (:mod:`gpumix.router.watcher`) builds the pieces from the Kubernetes API and publishes
them through :class:`RouterState`; the request path reads ``state.table`` once per request and
never sees a half-updated table. Tests hand the proxy a fixed table instead of a watcher.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from gpumix.resources.llmservice import DEFAULT_CLASSES


class RoutingMode(StrEnum):
    """``spec.routing.mode`` of the LLMService."""

    PLAN_WEIGHTED = "PlanWeighted"  # follow status.plan[].assignment per request class
    ROUND_ROBIN = "RoundRobin"  # ignore classes and weights: a plain split over ready pods


@dataclass(frozen=True)
class RequestClass:
    name: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class PlanEntry:
    """One configuration of the plan: its Deployment and the share of each class it serves."""

    deployment: str
    assignment: Mapping[str, float]

    def weight(self, class_name: str) -> float:
        return self.assignment.get(class_name, 0.0)

    @property
    def total_weight(self) -> float:
        return sum(self.assignment.values())


DEFAULT_REQUEST_CLASSES = tuple(
    RequestClass(c.name, c.input_tokens, c.output_tokens) for c in DEFAULT_CLASSES
)


def _frozen_pods(pods: Mapping[str, tuple[str, ...]]) -> Mapping[str, tuple[str, ...]]:
    # Sorted so that round-robin order and tests do not depend on watch event order.
    return MappingProxyType({name: tuple(sorted(addrs)) for name, addrs in pods.items() if addrs})


@dataclass(frozen=True)
class RoutingTable:
    """Classes, plan entries and Ready pods (``ip:port``) per Deployment."""

    classes: tuple[RequestClass, ...] = DEFAULT_REQUEST_CLASSES
    entries: tuple[PlanEntry, ...] = ()
    ready_pods: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    mode: RoutingMode = RoutingMode.PLAN_WEIGHTED

    def __post_init__(self) -> None:
        object.__setattr__(self, "ready_pods", _frozen_pods(self.ready_pods))

    def class_named(self, name: str) -> RequestClass | None:
        return next((c for c in self.classes if c.name == name), None)

    def pods_of(self, deployment: str) -> tuple[str, ...]:
        return self.ready_pods.get(deployment, ())

    @property
    def all_pods(self) -> tuple[str, ...]:
        return tuple(sorted(pod for pods in self.ready_pods.values() for pod in pods))

    def without_pods(self, excluded: frozenset[str]) -> RoutingTable:
        """The same table with ``excluded`` pods gone (a retry must not return to them)."""
        if not excluded:
            return self
        kept = {
            name: tuple(pod for pod in pods if pod not in excluded)
            for name, pods in self.ready_pods.items()
        }
        return replace(self, ready_pods=kept)


class RouterState:
    """The current :class:`RoutingTable`, replaced whole by the watcher (any thread).

    Readers take ``state.table`` without a lock: rebinding an attribute is atomic, and the
    table itself is immutable. Writers compose under a lock because the pod watch and the
    LLMService watch update different parts.
    """

    def __init__(self, table: RoutingTable | None = None, *, synced: bool = False) -> None:
        self.table = table if table is not None else RoutingTable()
        # False until the watcher has listed both pods and the LLMService once: /health says
        # "not ready" before that so that the router pod gets no traffic it would refuse.
        self.synced = synced
        self._lock = threading.Lock()

    def update(
        self,
        *,
        classes: tuple[RequestClass, ...] | None = None,
        entries: tuple[PlanEntry, ...] | None = None,
        mode: RoutingMode | None = None,
        ready_pods: Mapping[str, tuple[str, ...]] | None = None,
    ) -> RoutingTable:
        with self._lock:
            table = self.table
            table = replace(
                table,
                classes=table.classes if classes is None else classes,
                entries=table.entries if entries is None else entries,
                mode=table.mode if mode is None else mode,
                ready_pods=table.ready_pods if ready_pods is None else ready_pods,
            )
            self.table = table
            return table
