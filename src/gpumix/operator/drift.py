"""Which fields gpumix owns on a live child were changed by someone else.

Pure. The spec-hash annotation says what gpumix last wrote, not what the object holds now: a
hand edit (``kubectl edit``, ``kubectl set image``) changes the spec and leaves the
annotation alone. So a Deployment's live ``spec`` is compared with the built one, field by
field, over the fields gpumix sets only: whatever the API server adds (defaults, status) is
not in the built object and not compared.

Two API-server habits are allowed for, so that a faithful copy never looks edited (which
would rewrite it on every pass): numbers come back as strings in quantities (``1`` →
``"1"``), and empty lists and maps are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Fields compared per kind: the part of the object that decides what runs.
OWNED_SPEC_KINDS = frozenset({"Deployment"})


def drifted_fields(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> list[str]:
    """Paths (``spec.template.spec.containers[0].image``) where ``live`` differs from
    ``desired`` in a field that ``desired`` sets; [] when nothing gpumix owns was changed."""
    if live is None or desired.get("kind") not in OWNED_SPEC_KINDS:
        return []
    return _differences(desired.get("spec"), live.get("spec"), "spec")


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def _differences(want: Any, have: Any, path: str) -> list[str]:
    if isinstance(want, Mapping):
        if _empty(want) and _empty(have):
            return []
        if not isinstance(have, Mapping):
            return [path]
        found: list[str] = []
        for key, value in want.items():
            found += _differences(value, have.get(key), f"{path}.{key}")
        return found
    if isinstance(want, list):
        if _empty(want) and _empty(have):
            return []
        if not isinstance(have, list) or len(have) != len(want):
            return [path]
        found = []
        for index, (wanted, held) in enumerate(zip(want, have, strict=True)):
            found += _differences(wanted, held, f"{path}[{index}]")
        return found
    if want == have:
        return []
    if isinstance(want, bool) or isinstance(have, bool):
        return [path]
    if isinstance(want, int | float) and isinstance(have, str) and str(want) == have:
        return []  # a quantity: 1 is served back as "1"
    return [path]
