"""Which fields gpumix owns on a live child were changed by someone else.

Pure. The spec-hash annotation says what gpumix last wrote, not what the object holds now: a
hand edit (``kubectl edit``, ``kubectl set image``) changes the spec and leaves the
annotation alone. So a Deployment's live ``spec`` is compared with the built one, field by
field, over the fields gpumix sets only: whatever the API server adds (defaults, status) is
not in the built object and not compared.

Three API-server habits are allowed for, so that a faithful copy never looks edited (which
would rewrite it on every pass): numbers come back as strings in quantities (``1`` →
``"1"``), quantities come back in canonical form (an emptyDir ``sizeLimit`` of ``1024Mi`` is
served as ``1Gi``), and empty lists, maps and strings are dropped (``value: ""`` of an
environment variable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

# Fields compared per kind: the part of the object that decides what runs.
OWNED_SPEC_KINDS = frozenset({"Deployment"})


def drifted_fields(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> list[str]:
    """Paths (``spec.template.spec.containers[0].image``) where ``live`` differs from
    ``desired`` in a field that ``desired`` sets; [] when nothing gpumix owns was changed."""
    if live is None or desired.get("kind") not in OWNED_SPEC_KINDS:
        return []
    return _differences(desired.get("spec"), live.get("spec"), "spec")


# Fields that hold a resource.Quantity, which the API server canonicalises.
_QUANTITY_KEYS = frozenset({"sizeLimit"})
_QUANTITY_SECTIONS = (".resources.requests.", ".resources.limits.")
_QUANTITY = re.compile(r"^([+-]?[0-9]*\.?[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[mkMGTPE])?$")
_SUFFIX_FACTORS = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    **{suffix: Decimal(1000) ** power for power, suffix in enumerate("kMGTPE", start=1)},
    **{f"{suffix}i": Decimal(1024) ** power for power, suffix in enumerate("KMGTPE", start=1)},
}


def quantity_value(text: str) -> Decimal | None:
    """The number a Kubernetes quantity stands for (``1Gi`` → 1073741824), or None."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in {"e", "E"}:
            return Decimal(number) * Decimal(10) ** int(suffix[1:])
        return Decimal(number) * _SUFFIX_FACTORS[suffix]
    except (InvalidOperation, KeyError):
        return None


def _is_quantity_path(path: str) -> bool:
    return path.rsplit(".", 1)[-1] in _QUANTITY_KEYS or any(
        section in path for section in _QUANTITY_SECTIONS
    )


def _same_quantity(want: Any, have: Any) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return False
    wanted = quantity_value(str(want)) if isinstance(want, int | float | str) else None
    held = quantity_value(have) if isinstance(have, str) else None
    return wanted is not None and wanted == held


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == [] or value == ""


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
    if want == have or (_empty(want) and _empty(have)):
        return []
    if isinstance(want, bool) or isinstance(have, bool):
        return [path]
    if isinstance(want, int | float) and isinstance(have, str) and str(want) == have:
        return []  # a quantity: 1 is served back as "1"
    if _is_quantity_path(path) and _same_quantity(want, have):
        return []  # a quantity in canonical form: 1024Mi is served back as 1Gi
    return [path]
