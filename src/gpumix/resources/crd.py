"""Generate the CustomResourceDefinitions from the resource models (one source of truth).

pydantic's JSON Schema is not a Kubernetes *structural* schema: it uses ``$ref``/``$defs``,
``anyOf`` for optional fields and titles. :func:`structural_schema` inlines references,
collapses ``X | None`` to ``X``, keeps what the API server understands (types, descriptions,
defaults, enums, bounds, patterns, ``x-kubernetes-*``) and gives optional objects whose fields
all have defaults a ``default: {}``, so the API server fills nested defaults too.

Run ``python -m gpumix.resources.crd crds/`` to rewrite the files; a test fails when the
committed files drift from the models.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from gpumix.resources.gpupool import GPUPoolSpec, GPUPoolStatus
from gpumix.resources.llmservice import (
    AUTOSCALING_MIN_ABOVE_MAX,
    ENV_VALUE_OR_VALUE_FROM,
    MAX_THROUGHPUT_NEEDS_BUDGET,
    MODEL_CACHE_ONE_VOLUME,
    VALUE_FROM_ONE_SOURCE,
    LLMServiceSpec,
    LLMServiceStatus,
)
from gpumix.resources.owned import OWNED_ENV

GROUP = "gpumix.io"
VERSION = "v1alpha1"
CATEGORY = "gpumix"

# Keywords of OpenAPI v3 that structural schemas accept and that we carry over.
_KEPT_KEYWORDS = {
    "type",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "format",
}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.get("$defs", {})
    return _convert(raw, definitions)


def _resolve(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, definitions)
    return node


def _strip_null(node: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` arrives as ``anyOf: [X, {type: null}]``: the API server means absent."""
    options = node.get("anyOf")
    if not options:
        return node
    non_null = [option for option in options if option.get("type") != "null"]
    if len(non_null) != 1:
        raise ValueError(f"cannot express union {options} as a structural schema")
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if rest.get("default", object()) is None:
        del rest["default"]
    return {**non_null[0], **rest}


def _convert(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    node = _strip_null(_resolve(node, definitions))
    node = _resolve(node, definitions)
    schema: dict[str, Any] = {k: v for k, v in node.items() if k in _KEPT_KEYWORDS}
    schema.update({k: v for k, v in node.items() if k.startswith("x-kubernetes-")})
    # OpenAPI v3.0 (what the API server speaks) has boolean exclusive bounds.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(schema.get(exclusive), int | float) and not isinstance(
            schema.get(exclusive), bool
        ):
            schema[bound] = schema[exclusive]
            schema[exclusive] = True
    if "const" in node:
        schema["enum"] = [node["const"]]
    if "enum" in schema and "type" not in schema:
        schema["type"] = "string" if all(isinstance(v, str) for v in schema["enum"]) else "integer"

    if node.get("type") == "object" or "properties" in node:
        schema["type"] = "object"
        properties = node.get("properties", {})
        if properties:
            schema["properties"] = {
                name: _convert(child, definitions) for name, child in properties.items()
            }
            required = node.get("required", [])
            if required:
                schema["required"] = list(required)
            for name, child in schema["properties"].items():
                optional = _is_optional(properties[name])
                defaulted = _all_fields_defaulted(child) and "default" not in child
                if name not in required and defaulted and not optional:
                    child["default"] = {}
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            schema["additionalProperties"] = _convert(extra, definitions)
    elif node.get("type") == "array":
        schema["items"] = _convert(node.get("items", {}), definitions)
    return schema


def _is_optional(node: dict[str, Any]) -> bool:
    """`X | None` in the model: absent means "not set", so it must not be defaulted."""
    return any(option.get("type") == "null" for option in node.get("anyOf", []))


def _all_fields_defaulted(schema: dict[str, Any]) -> bool:
    return (
        schema.get("type") == "object"
        and bool(schema.get("properties"))
        and not schema.get("required")
    )


def _condition_printer(condition: str) -> str:
    return f'.status.conditions[?(@.type=="{condition}")].status'


def llmservice_crd() -> dict[str, Any]:
    spec_schema = structural_schema(LLMServiceSpec)
    spec_schema["x-kubernetes-validations"] = [
        {
            "rule": "self.objective != 'MaxThroughput' || "
            "(has(self.budget) && has(self.budget.maxCostPerHour))",
            "message": MAX_THROUGHPUT_NEEDS_BUDGET,
            "fieldPath": ".budget",
            "reason": "FieldValueRequired",
        }
    ]
    placement = spec_schema["properties"]["placement"]
    # Guarded with has(): the API server also evaluates these rules against the schema's
    # `default: {}` for placement (before nested defaults apply) and rejects the CRD otherwise.
    placement["x-kubernetes-validations"] = [
        {
            "rule": "!has(self.minReplicas) || !has(self.maxReplicas) || "
            "self.minReplicas <= self.maxReplicas",
            "message": "minReplicas must not exceed maxReplicas",
        },
        {
            "rule": "!has(self.minOnDemandReplicas) || !has(self.maxReplicas) || "
            "self.minOnDemandReplicas <= self.maxReplicas",
            "message": "minOnDemandReplicas must not exceed maxReplicas",
        },
    ]
    _add_serving_rules(spec_schema["properties"]["serving"])
    autoscaling = spec_schema["properties"]["workload"]["properties"]["autoscaling"]
    autoscaling["x-kubernetes-validations"] = [
        {
            "rule": "!has(self.minRequestsPerSecond) || !has(self.maxRequestsPerSecond) || "
            "double(self.minRequestsPerSecond) <= double(self.maxRequestsPerSecond)",
            "message": AUTOSCALING_MIN_ABOVE_MAX,
        }
    ]
    return _crd(
        kind="LLMService",
        plural="llmservices",
        short_names=["llmsvc"],
        scope="Namespaced",
        description="An LLM served by vLLM on the cheapest mix of GPUs that meets its targets.",
        spec_schema=spec_schema,
        status_schema=structural_schema(LLMServiceStatus),
        printer_columns=[
            {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
            {"name": "Replicas", "type": "string", "jsonPath": ".status.replicas"},
            {"name": "Cost/h", "type": "string", "jsonPath": ".status.costPerHour"},
            {"name": "Ready", "type": "string", "jsonPath": _condition_printer("Ready")},
            {
                "name": "Load",
                "type": "string",
                "description": "Requests/s observed now (autoscaling only)",
                "jsonPath": ".status.observedDemand.requestsPerSecond",
            },
            {
                "name": "Planned",
                "type": "string",
                "description": "Requests/s the plan is sized for (autoscaling only)",
                "jsonPath": ".status.observedDemand.plannedRequestsPerSecond",
            },
            {
                "name": "Savings",
                "type": "string",
                "priority": 1,
                "jsonPath": ".status.savingsPercent",
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )


def _cel_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _add_serving_rules(serving: dict[str, Any]) -> None:
    """The rules of spec.serving that are simple in CEL, so `kubectl apply` refuses at once.

    Owned extraArgs are left to the models (the operator answers Feasible=False, InvalidSpec):
    how vLLM's argparse reads abbreviations and attached values is not a simple CEL rule, and a
    partial copy would be a second, weaker definition.
    """
    env_item = serving["properties"]["env"]["items"]
    names = sorted(OWNED_ENV)
    owned = "[" + ", ".join(_cel_string(name) for name in names) + "]"
    reasons = "{" + ", ".join(f"{_cel_string(n)}: {_cel_string(OWNED_ENV[n])}" for n in names) + "}"
    env_item["x-kubernetes-validations"] = [
        {"rule": "!has(self.value) || !has(self.valueFrom)", "message": ENV_VALUE_OR_VALUE_FROM},
        {
            "rule": f"!(self.name in {owned})",
            # the same words as the models': the reason looked up by name
            "messageExpression": f"self.name + ' ' + {reasons}[self.name]",
            "fieldPath": ".name",
        },
    ]
    value_from = env_item["properties"]["valueFrom"]
    value_from["x-kubernetes-validations"] = [
        {
            "rule": "has(self.secretKeyRef) != has(self.configMapKeyRef)",
            "message": VALUE_FROM_ONE_SOURCE,
        }
    ]
    serving["properties"]["modelCache"]["x-kubernetes-validations"] = [
        {
            "rule": "has(self.persistentVolumeClaim) != has(self.emptyDir)",
            "message": MODEL_CACHE_ONE_VOLUME,
        }
    ]


def gpupool_crd() -> dict[str, Any]:
    spec_schema = structural_schema(GPUPoolSpec)
    return _crd(
        kind="GPUPool",
        plural="gpupools",
        short_names=["gpool"],
        scope="Cluster",
        description="Nodes of one GPU type and one capacity type, selected by labels.",
        spec_schema=spec_schema,
        status_schema=structural_schema(GPUPoolStatus),
        printer_columns=[
            {"name": "GPU", "type": "string", "jsonPath": ".spec.gpuType"},
            {"name": "Capacity", "type": "string", "jsonPath": ".spec.capacityType"},
            {"name": "Price", "type": "string", "jsonPath": ".status.pricePerGPUHour"},
            {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus"},
            # Requested by running pods, gpumix's included; Available counts gpumix's own GPUs
            # as free (they can be re-planned), so the two columns read together.
            {"name": "Allocated", "type": "integer", "jsonPath": ".status.allocatedGPUs"},
            {"name": "Available", "type": "integer", "jsonPath": ".status.availableGPUs"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )


def _crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    scope: str,
    description: str,
    spec_schema: dict[str, Any],
    status_schema: dict[str, Any],
    printer_columns: list[dict[str, Any]],
) -> dict[str, Any]:
    spec_schema.pop("default", None)
    status_schema.pop("default", None)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "gpumix", "app.kubernetes.io/part-of": "gpumix"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": [CATEGORY],
            },
            "scope": scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD object."""
    return {
        "llmservices.gpumix.io.yaml": llmservice_crd(),
        "gpupools.gpumix.io.yaml": gpupool_crd(),
    }


def render(crd: dict[str, Any]) -> str:
    header = "# Generated by `python -m gpumix.resources.crd crds/` from gpumix.resources.\n"
    header += "# Do not edit by hand: edit the models and regenerate.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gpumix.resources.crd OUTPUT_DIR", file=sys.stderr)
        return 2
    output = Path(argv[0])
    output.mkdir(parents=True, exist_ok=True)
    for file_name, crd in all_crds().items():
        (output / file_name).write_text(render(crd))
        print(f"wrote {output / file_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
