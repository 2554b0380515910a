"""Field types shared by the custom resources.

Money and rates are decimal *strings* in the API (Kubernetes API conventions discourage floats
in specs: they do not round-trip through every client) and :class:`~decimal.Decimal` in Python.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, WithJsonSchema
from pydantic.alias_generators import to_camel

DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"


def _parse_decimal_string(value: Any) -> Decimal:
    # Strings only, exactly like the API server: a YAML number here would pass the CLI and
    # then be refused by `kubectl apply`, so refuse it in both places.
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise ValueError(f'must be a decimal string such as "12.5" (quoted), got {value!r}')
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"must be a decimal string such as '12.5', got {value!r}") from None
    if not parsed.is_finite() or parsed < 0:
        raise ValueError(f"must be a non-negative decimal, got {value!r}")
    return parsed


DecimalString = Annotated[
    Decimal,
    PlainValidator(_parse_decimal_string),
    PlainSerializer(lambda value: str(value), return_type=str),
    WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN}),
]


class CamelModel(BaseModel):
    """Base for every resource model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )
