"""Shared checks for the catalogue data files and for inline specs.

A catalogue file that fails these checks is a packaging bug (:class:`CatalogError`); the same
checks applied to a user's inline spec raise :class:`gpumix.errors.InputError` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

import yaml

from gpumix.errors import InputError


class CatalogError(ValueError):
    """A catalogue data file shipped with gpumix is malformed."""


def load_package_yaml(filename: str) -> Mapping[str, Any]:
    text = resources.files("gpumix.catalog").joinpath(filename).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise CatalogError(f"{filename}: top level must be a mapping of name -> entry")
    return data


def entry_mapping(entry: object, where: str) -> Mapping[str, Any]:
    if not isinstance(entry, Mapping):
        raise InputError("must be a mapping", field=where)
    return entry


def positive_number(entry: Mapping[str, Any], key: str, where: str) -> float:
    value = entry.get(key)
    # bool is an int subclass; `true` is never a valid figure
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InputError(f"must be a positive number, got {value!r}", field=f"{where}.{key}")
    return float(value)


def optional_positive_number(entry: Mapping[str, Any], key: str, where: str) -> float | None:
    if entry.get(key) is None:
        return None
    return positive_number(entry, key, where)


def optional_bool(entry: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise InputError(f"must be true or false, got {value!r}", field=f"{where}.{key}")
    return value


def positive_int(entry: Mapping[str, Any], key: str, where: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"must be a positive integer, got {value!r}", field=f"{where}.{key}")
    return value


def string_list(entry: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(f"must be a list of strings, got {value!r}", field=f"{where}.{key}")
    return tuple(value)


def non_empty_string(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"must be a non-empty string, got {value!r}", field=f"{where}.{key}")
    return value
