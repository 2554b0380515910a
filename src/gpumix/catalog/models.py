"""The model catalogue: transformer shapes the performance model needs, keyed by HF id.

Data lives in ``models.yaml`` next to this module. Models outside the catalogue are described
inline with the LLMService ``spec.model.architecture`` fields (camelCase, see
:data:`ARCHITECTURE_FIELDS`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gpumix.catalog._validate import (
    CatalogError,
    entry_mapping,
    load_package_yaml,
    non_empty_string,
    optional_bool,
    optional_positive_number,
    positive_int,
    positive_number,
)
from gpumix.errors import InputError, UnknownNameError

MODEL_FILE = "models.yaml"

# spec.model.architecture field -> ModelArchitecture attribute
ARCHITECTURE_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "parametersBillions": "parameters_billions",
        "layers": "layers",
        "hiddenSize": "hidden_size",
        "attentionHeads": "attention_heads",
        "kvHeads": "kv_heads",
        "headDim": "head_dim",
        "intermediateSize": "intermediate_size",
        "vocabSize": "vocab_size",
        "activeParametersBillions": "active_parameters_billions",
        "tiedEmbeddings": "tied_embeddings",
    }
)


@dataclass(frozen=True)
class ModelArchitecture:
    name: str
    parameters_billions: float
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    active_parameters_billions: float | None = None
    # config.json's tie_word_embeddings: the output projection (lm_head) is the input
    # embedding matrix, stored and streamed once
    tied_embeddings: bool = False

    @property
    def is_mixture_of_experts(self) -> bool:
        return self.active_parameters_billions is not None

    @property
    def compute_parameters_billions(self) -> float:
        """Parameters each token passes through: the active ones for MoE."""
        return self.active_parameters_billions or self.parameters_billions


def architecture_from_spec(
    name: str, spec: object, *, source: str | None = None, field: str = "spec.model.architecture"
) -> ModelArchitecture:
    """Inline ``architecture`` mapping -> ModelArchitecture; InputError names the bad field."""
    try:
        entry = entry_mapping(spec, field)
        unknown = sorted(set(entry) - set(ARCHITECTURE_FIELDS) - {"source"})
        if unknown:
            raise UnknownNameError(f"field in {field}", unknown[0], ARCHITECTURE_FIELDS)
        model = ModelArchitecture(
            name=name,
            parameters_billions=positive_number(entry, "parametersBillions", field),
            layers=positive_int(entry, "layers", field),
            hidden_size=positive_int(entry, "hiddenSize", field),
            attention_heads=positive_int(entry, "attentionHeads", field),
            kv_heads=positive_int(entry, "kvHeads", field),
            head_dim=positive_int(entry, "headDim", field),
            intermediate_size=positive_int(entry, "intermediateSize", field),
            vocab_size=positive_int(entry, "vocabSize", field),
            active_parameters_billions=optional_positive_number(
                entry, "activeParametersBillions", field
            ),
            tied_embeddings=optional_bool(entry, "tiedEmbeddings", field, default=False),
        )
        _check_consistent(model, field)
    except InputError as error:
        raise InputError(error.detail, source=source, field=error.field) from error
    return model


def _check_consistent(model: ModelArchitecture, field: str) -> None:
    if model.attention_heads % model.kv_heads != 0:
        raise InputError(
            f"attentionHeads ({model.attention_heads}) must be a multiple of kvHeads "
            f"({model.kv_heads})",
            field=f"{field}.kvHeads",
        )
    embeddings = model.vocab_size * model.hidden_size * (1 if model.tied_embeddings else 2)
    if model.parameters_billions * 1e9 <= embeddings:
        raise InputError(
            f"parametersBillions ({model.parameters_billions}) must exceed the embeddings "
            f"alone ({embeddings / 1e9:.3f} billion for vocabSize x hiddenSize"
            f"{'' if model.tied_embeddings else ' x 2, untied'})",
            field=f"{field}.parametersBillions",
        )
    active = model.active_parameters_billions
    if active is not None and active > model.parameters_billions:
        raise InputError(
            f"activeParametersBillions ({active}) exceeds parametersBillions "
            f"({model.parameters_billions})",
            field=f"{field}.activeParametersBillions",
        )


def parse_model_catalog(
    data: Mapping[str, Any], source: str = MODEL_FILE
) -> dict[str, ModelArchitecture]:
    catalog: dict[str, ModelArchitecture] = {}
    try:
        for name, raw in data.items():
            entry = dict(entry_mapping(raw, str(name)))
            non_empty_string(entry, "source", str(name))
            catalog[str(name)] = architecture_from_spec(str(name), entry, field=str(name))
    except InputError as error:
        raise CatalogError(f"{source}: {error.one_line()}") from error
    return catalog


@functools.cache
def model_catalog() -> Mapping[str, ModelArchitecture]:
    return MappingProxyType(parse_model_catalog(load_package_yaml(MODEL_FILE)))


@functools.cache
def _lookup_index() -> Mapping[str, str]:
    """lower-cased HF id and short name (after the slash) -> HF id."""
    index: dict[str, str] = {}
    for hf_id in model_catalog():
        index[hf_id.lower()] = hf_id
        index[hf_id.rsplit("/", 1)[-1].lower()] = hf_id
    return MappingProxyType(index)


def find_model(name: str) -> ModelArchitecture | None:
    hf_id = _lookup_index().get(name.strip().lower())
    return model_catalog()[hf_id] if hf_id is not None else None


def get_model(name: str) -> ModelArchitecture:
    """Lookup by HF id or the short name after the slash, case-insensitively."""
    model = find_model(name)
    if model is None:
        raise UnknownNameError("model", name, model_catalog())
    return model


def resolve_model(
    name: str, architecture: Mapping[str, Any] | None = None, *, source: str | None = None
) -> ModelArchitecture:
    """The model an LLMService means: its inline architecture if given, else the catalogue's.

    An unknown name without an architecture is an UnknownNameError that also says how to
    describe the model inline.
    """
    if architecture:
        return architecture_from_spec(name, architecture, source=source)
    model = find_model(name)
    if model is not None:
        return model
    error = UnknownNameError("model", name, model_catalog(), source=source, field="spec.model")
    error.detail += " (describe it with spec.model.architecture)"
    error.args = (error.one_line(),)
    raise error
