"""Read LLMService and GPUPool manifests from YAML files, as `kubectl apply -f` would."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gpumix.errors import InputError
from gpumix.resources.gpupool import GPUPool
from gpumix.resources.llmservice import LLMService

Resource = LLMService | GPUPool
RESOURCE_KINDS: dict[str, type[LLMService] | type[GPUPool]] = {
    "LLMService": LLMService,
    "GPUPool": GPUPool,
}


def field_path(location: Sequence[int | str]) -> str:
    """Render a pydantic error location as the dotted path a user sees in YAML."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-") or part in {"str", "int", "float", "none"}:
            continue  # pydantic's internal validator names, meaningless to a user
        else:
            path += f".{part}" if path else part
    return path


def first_error(error: ValidationError) -> tuple[str, str]:
    """The first error of a validation failure, as (field path, message)."""
    detail = error.errors(include_url=False)[0]
    message = str(detail["msg"]).removeprefix("Value error, ")
    return field_path(detail["loc"]), message


def parse_resource(document: Mapping[str, Any], *, source: str = "") -> Resource:
    """Parse one manifest; raise InputError naming the field on any problem."""
    kind = document.get("kind")
    model = RESOURCE_KINDS.get(str(kind))
    if model is None:
        known = ", ".join(RESOURCE_KINDS)
        raise InputError(
            f"unsupported kind {kind!r} (expected {known})", source=source, field="kind"
        )
    metadata = document.get("metadata")
    name = metadata.get("name", "?") if isinstance(metadata, Mapping) else "?"
    try:
        return model.model_validate(document)
    except ValidationError as error:
        where, message = first_error(error)
        resource = f"{kind} {name}"
        raise InputError(
            message, source=f"{source}: {resource}" if source else resource, field=where
        ) from None


def load_manifests(path: str | Path) -> list[Resource]:
    """All LLMService and GPUPool objects of a (multi-document) YAML file."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise InputError(f"cannot read: {error.strerror}", source=source) from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise InputError(f"{line}{problem}", source=source) from None
    resources: list[Resource] = []
    for document in documents:
        if not isinstance(document, Mapping):
            raise InputError("each YAML document must be a mapping (a manifest)", source=source)
        items = document.get("items") if document.get("kind") == "List" else [document]
        for item in items or []:
            if not isinstance(item, Mapping):
                raise InputError("each document must be a mapping", source=source)
            resources.append(parse_resource(item, source=source))
    return resources
