"""The last plan changes of each service, in memory, bounded: what the plan API shows.

Kubernetes keeps PlanChanged events for an hour and the status only holds the current plan;
this keeps the last few changes with their causes for as long as the operator runs. Losing
them on a restart is fine (the events and the status stay the source of truth). Reconciles of
different services run in threads side by side and the API reads from its own thread, hence
the lock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from gpumix.solver import ServiceKey

DEFAULT_CHANGES_KEPT = 20


@dataclass(frozen=True)
class PlanChange:
    time: str
    message: str  # the PlanChanged event's text
    cause: str
    cost_before: float | None
    cost_after: float | None
    generation: int | None


class PlanHistory:
    def __init__(self, kept: int = DEFAULT_CHANGES_KEPT) -> None:
        self.kept = kept
        self._changes: dict[ServiceKey, deque[PlanChange]] = {}
        self._lock = threading.Lock()

    def record(self, key: ServiceKey, change: PlanChange) -> None:
        with self._lock:
            self._changes.setdefault(key, deque(maxlen=self.kept)).append(change)

    def changes(self, key: ServiceKey) -> tuple[PlanChange, ...]:
        """Oldest first."""
        with self._lock:
            return tuple(self._changes.get(key, ()))

    def keep_only(self, live: Iterable[ServiceKey]) -> None:
        """Forget deleted services (a new service of the same name starts afresh)."""
        keep = set(live)
        with self._lock:
            for key in set(self._changes) - keep:
                del self._changes[key]
