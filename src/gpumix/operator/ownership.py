"""Which LLMService controls a child: the controller reference, never the labels.

Labels say what an object is about and anyone can set them; the controller reference is the
API's own record of who manages it (Kubernetes API conventions, "controller references").
gpumix overwrites or deletes only objects whose controller is the LLMService at hand. An
object of the same name that another owner controls is a conflict, reported and left alone;
one with no controller at all (rendered offline by ``gpumix render`` and applied by hand) is
adopted, as a ReplicaSet adopts matching orphan pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def controller(body: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The owner reference marked ``controller: true``, if any."""
    for reference in ((body or {}).get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("controller"):
            return reference  # type: ignore[no-any-return]
    return None


def controller_uid(body: Mapping[str, Any] | None) -> str | None:
    reference = controller(body)
    return str(reference["uid"]) if reference and reference.get("uid") else None


def controlled_by(body: Mapping[str, Any] | None, uid: str | None) -> bool:
    """Whether ``uid`` controls the object (always true when the owner has no uid: objects
    rendered offline, and emulators that assign none)."""
    return uid is None or controller_uid(body) == uid


def describe(reference: Mapping[str, Any]) -> str:
    return f"{reference.get('kind', 'an object')} {reference.get('name', '?')}"


def conflict(live: Mapping[str, Any], desired: Mapping[str, Any]) -> str | None:
    """Why ``desired`` must not replace ``live``: another controller holds it. None when the
    object is ours, or nobody's (then applying it adopts it)."""
    wanted = controller_uid(desired)
    holder = controller(live)
    if wanted is None or holder is None or holder.get("uid") == wanted:
        return None
    kind = desired.get("kind", "object")
    name = (desired.get("metadata") or {}).get("name", "?")
    return (
        f"Conflict: {kind} {name} exists and is controlled by {describe(holder)}; gpumix "
        "leaves it alone (rename one of the two, or delete the other object)"
    )
