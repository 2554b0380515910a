"""Desired versus actual children of one LLMService → the writes that close the gap.

Pure. Writes happen only where the spec-hash annotation differs, where a Deployment's replica
count was changed by hand, or where another field gpumix owns was (``operator.drift``). Plan
changes are make-before-break, kept as state rather than a blocking wait: every pass applies
the desired objects, and removes obsolete ones once every desired Deployment is ready. An
obsolete Deployment with no Ready pod serves nothing and goes at once. One that serves stays
until the new plan is ready, whatever the deadline: when the migration deadline passes first,
the actions say the migration *stalled*, and the planner re-plans around the configurations
that did not come up (``operator.planner``) instead of removing what serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpumix.operator import ownership
from gpumix.operator.drift import drifted_fields
from gpumix.operator.manifests import SPEC_HASH_ANNOTATION

DEPLOYMENT = "Deployment"
SERVICE = "Service"
ROUTER_APP = "gpumix-router"  # app.kubernetes.io/name of the router's Deployment


@dataclass(frozen=True)
class Child:
    """A live object gpumix created for an LLMService."""

    kind: str
    namespace: str
    name: str
    spec_hash: str | None
    replicas: int
    ready_replicas: int
    # The live object, for comparing the fields gpumix owns (operator.drift).
    body: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    # Whether this LLMService is its controller (operator.ownership): only those are removed.
    controlled: bool = True


def child_from_body(body: Mapping[str, Any], owner_uid: str | None = None) -> Child:
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return Child(
        kind=str(body.get("kind", "")),
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        spec_hash=(metadata.get("annotations") or {}).get(SPEC_HASH_ANNOTATION),
        replicas=int(spec.get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        body=body,
        controlled=ownership.controlled_by(body, owner_uid),
    )


def _key(kind: str, name: str) -> tuple[str, str]:
    return kind, name


def _desired_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return _key(str(obj["kind"]), str(obj["metadata"]["name"]))


def desired_hash(obj: Mapping[str, Any]) -> str | None:
    annotations: Mapping[str, str] = obj["metadata"].get("annotations") or {}
    return annotations.get(SPEC_HASH_ANNOTATION)


def _holds_capacity(obj: Mapping[str, Any]) -> bool:
    """A vLLM Deployment: make-before-break waits for these, not for the router, whose
    readiness must never hold back (or speed up) a migration of GPU capacity."""
    labels: Mapping[str, str] = obj["metadata"].get("labels") or {}
    return obj["kind"] == DEPLOYMENT and labels.get("app.kubernetes.io/name") != ROUTER_APP


def _replicas_drifted(obj: Mapping[str, Any], current: Child) -> bool:
    """A Deployment scaled by hand (``kubectl scale``) keeps its spec hash; gpumix owns the
    replica count (it is the plan), so it puts it back."""
    if obj["kind"] != DEPLOYMENT:
        return False
    return current.replicas != int(obj["spec"].get("replicas") or 0)


def edited_children(actions: Actions, actual: Sequence[Child]) -> dict[tuple[str, str], list[str]]:
    """(kind, name) -> owned fields changed by hand, for the children ``actions`` rewrites
    while their spec hash still matches (so the edit is the only reason for the write)."""
    by_key = {_key(child.kind, child.name): child for child in actual}
    edited = {}
    for obj in actions.apply:
        current = by_key.get(_desired_key(obj))
        if current is None or current.spec_hash != desired_hash(obj):
            continue
        if fields := drifted_fields(obj, current.body):
            edited[_desired_key(obj)] = fields
    return edited


@dataclass(frozen=True)
class Actions:
    apply: tuple[Mapping[str, Any], ...]
    delete: tuple[Child, ...]
    # Desired Deployments that are not ready yet (absent, out of date or starting).
    not_ready: tuple[str, ...]
    # Obsolete children kept running until the desired ones are ready.
    kept: tuple[Child, ...]
    # The deadline passed with desired Deployments still not ready: re-plan around them.
    stalled: bool = False

    @property
    def migrating(self) -> bool:
        return bool(self.kept)

    @property
    def idle(self) -> bool:
        return not self.apply and not self.delete


def decide(
    desired: Sequence[Mapping[str, Any]],
    actual: Sequence[Child],
    *,
    deadline_passed: bool,
) -> Actions:
    actual_by_key = {_key(child.kind, child.name): child for child in actual}
    desired_keys = {_desired_key(obj) for obj in desired}

    to_apply = tuple(
        obj
        for obj in desired
        if (current := actual_by_key.get(_desired_key(obj))) is None
        or current.spec_hash != desired_hash(obj)
        or _replicas_drifted(obj, current)
        or drifted_fields(obj, current.body)
    )

    not_ready: list[str] = []
    for obj in desired:
        if not _holds_capacity(obj):
            continue
        current = actual_by_key.get(_desired_key(obj))
        wanted = int(obj["spec"].get("replicas") or 0)
        if (
            current is None
            or current.spec_hash != desired_hash(obj)
            or current.ready_replicas < wanted
        ):
            not_ready.append(str(obj["metadata"]["name"]))

    # Never what another owner controls, even if it carries gpumix's labels.
    obsolete = tuple(
        child
        for key, child in sorted(actual_by_key.items())
        if key not in desired_keys and child.controlled
    )
    if not not_ready:
        return Actions(to_apply, obsolete, (), ())
    # Make-before-break: what serves stays until the new plan is ready, even past the deadline
    # (a replacement that cannot be scheduled is a reason to re-plan, never to remove capacity).
    idle = serving_nothing(obsolete)
    kept = tuple(child for child in obsolete if child not in idle)
    return Actions(to_apply, idle, tuple(not_ready), kept, stalled=deadline_passed)


def serving_nothing(obsolete: Sequence[Child]) -> tuple[Child, ...]:
    """Obsolete Deployments without a Ready pod, and the obsolete children of the same name
    (their per-configuration Services): removing them drops no capacity, and their pending
    pods would otherwise take GPUs the new plan needs."""
    serving = {
        child.name for child in obsolete if child.kind == DEPLOYMENT and child.ready_replicas > 0
    }
    return tuple(child for child in obsolete if child.name not in serving)


@dataclass(frozen=True)
class MigrationClock:
    """When the make-before-break wait for one desired state gives up (monotonic seconds)."""

    fingerprint: str
    deadline: float


def advance_clock(
    clock: MigrationClock | None, fingerprint: str, now: float, timeout: float
) -> MigrationClock:
    """The clock for ``fingerprint``: the running one, or a new one when the target changed."""
    if clock is not None and clock.fingerprint == fingerprint:
        return clock
    return MigrationClock(fingerprint, now + timeout)
