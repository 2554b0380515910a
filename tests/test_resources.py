"""The resource models: what `kubectl apply` and `gpumix plan` accept, and their CRDs."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gpumix.errors import InputError
from gpumix.resources import GPUPool, LLMService, load_manifests
from gpumix.resources.crd import all_crds, render, structural_schema
from gpumix.resources.llmservice import LLMServiceSpec
from gpumix.resources.loader import parse_resource
from gpumix.resources.owned import OWNED_ENV

REPO = Path(__file__).resolve().parents[1]

MINIMAL_SERVICE = """
apiVersion: gpumix.io/v1alpha1
kind: LLMService
metadata: {name: chat, namespace: team-a}
spec:
  model: {name: meta-llama/Llama-3.1-8B-Instruct}
  workload: {requestsPerSecond: "12.5"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "input.yaml"
    path.write_text(text)
    return path


def test_committed_crds_match_the_models() -> None:
    for file_name, crd in all_crds().items():
        committed = (REPO / "crds" / file_name).read_text()
        assert committed == render(crd), (
            f"crds/{file_name} drifted from gpumix.resources: "
            "run `python -m gpumix.resources.crd crds/`"
        )


def test_minimal_service_gets_the_documented_defaults(tmp_path: Path) -> None:
    [service] = load_manifests(write(tmp_path, MINIMAL_SERVICE))
    assert isinstance(service, LLMService)
    spec = service.spec
    assert spec.workload.requests_per_second == Decimal("12.5")
    assert spec.workload.headroom_percent == 20
    assert [(c.name, c.input_tokens, c.output_tokens) for c in spec.workload.classes] == [
        ("default", 512, 256)
    ]
    assert spec.model.max_model_len == 8192
    assert spec.slo.ttft_milliseconds == 2000 and spec.slo.tpot_milliseconds == 100
    assert spec.placement.tensor_parallel_sizes == [1, 2, 4, 8]
    assert spec.max_cost_per_hour is None


def test_crd_defaults_match_model_defaults() -> None:
    """The API server and the CLI must fill in the same defaults."""
    schema = structural_schema(LLMServiceSpec)
    placement = schema["properties"]["placement"]
    assert placement["default"] == {}
    assert placement["properties"]["capacityTypes"]["default"] == ["on-demand", "spot"]
    assert schema["properties"]["slo"]["properties"]["tpotMilliseconds"]["default"] == 100
    assert "default" not in schema["properties"]["budget"]


@pytest.mark.parametrize(
    ("patch", "field", "fragment"),
    [
        ("  workload: {requestsPerSecond: 12.5}\n", "spec.workload.requestsPerSecond", "decimal"),
        (
            "  workload: {requestsPerSecond: '1'}\n  objective: MaxThroughput\n",
            "spec",
            "MaxThroughput needs budget.maxCostPerHour",
        ),
        (
            "  workload:\n    requestsPerSecond: '1'\n    autoscaling:\n"
            "      {enabled: true, minRequestsPerSecond: '50', maxRequestsPerSecond: '5'}\n",
            "spec.workload.autoscaling",
            "minRequestsPerSecond must not exceed maxRequestsPerSecond",
        ),
        (
            "  workload: {requestsPerSecond: '1'}\n  placement: {minReplicas: 5, maxReplicas: 2}\n",
            "spec.placement",
            "minReplicas must not exceed maxReplicas",
        ),
        (
            "  workload: {requestsPerSecond: '1', classs: []}\n",
            "spec.workload.classs",
            "Extra inputs",
        ),
        (
            "  workload:\n    requestsPerSecond: '1'\n"
            "    classes: [{name: chat, inputTokens: 0, outputTokens: 5, share: 1}]\n",
            "spec.workload.classes[0].inputTokens",
            "greater than or equal to 1",
        ),
    ],
)
def test_bad_service_names_file_and_field(
    tmp_path: Path, patch: str, field: str, fragment: str
) -> None:
    text = MINIMAL_SERVICE.replace('  workload: {requestsPerSecond: "12.5"}\n', patch)
    path = write(tmp_path, text)
    with pytest.raises(InputError) as error:
        load_manifests(path)
    line = error.value.one_line()
    assert str(path) in line
    assert f": {field}: " in line
    assert fragment in line
    assert "\n" not in line


def test_multi_document_file_with_pools(tmp_path: Path) -> None:
    text = (
        MINIMAL_SERVICE
        + """---
apiVersion: gpumix.io/v1alpha1
kind: GPUPool
metadata: {name: l4-spot}
spec:
  gpuType: L4
  capacityType: spot
  nodeSelector: {karpenter.sh/nodepool: l4-spot}
  pricePerGPUHour: "0.29"
  maxGPUs: 16
"""
    )
    service, pool = load_manifests(write(tmp_path, text))
    assert isinstance(service, LLMService)
    assert isinstance(pool, GPUPool)
    assert pool.spec.price_per_gpu_hour == Decimal("0.29")
    assert pool.spec.max_gpus == 16


def test_unsupported_kind_and_broken_yaml(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unsupported kind 'Deployment'"):
        load_manifests(write(tmp_path, "kind: Deployment\nmetadata: {name: x}\n"))
    with pytest.raises(InputError, match="line 2"):
        load_manifests(write(tmp_path, "kind: GPUPool\n  bad: [\n"))


def test_examples_parse() -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        if path.name.startswith("fleet-sim"):
            continue  # a simulated-fleet file for dev-cluster, not manifests
        if path.name.startswith("whatif-"):
            # A change file for `gpumix whatif`, checked as the API checks its body.
            from gpumix.commands.whatif import load_change

            assert load_change(str(path)), path
            continue
        assert load_manifests(path), path


def test_a_class_longer_than_max_model_len_is_one_line_naming_the_class(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(
        "apiVersion: gpumix.io/v1alpha1\nkind: LLMService\nmetadata: {name: s, namespace: n}\n"
        "spec:\n  model: {name: meta-llama/Llama-3.1-8B-Instruct, maxModelLen: 4096}\n"
        "  workload:\n    requestsPerSecond: '2'\n"
        "    classes: [{name: big, inputTokens: 8000, outputTokens: 500, share: 1}]\n"
    )
    with pytest.raises(InputError) as raised:
        load_manifests(path)
    message = raised.value.one_line()
    assert str(path) in message and "\n" not in message
    assert "workload.classes[0] (big)" in message and "maxModelLen 4096" in message


def test_a_cluster_object_error_names_the_object_without_an_empty_file_prefix() -> None:
    # the operator parses objects from the API server, which have no file name
    document = {
        "apiVersion": "gpumix.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": "s", "namespace": "n"},
        "spec": {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}, "workload": {}},
    }
    with pytest.raises(InputError) as raised:
        parse_resource(document)
    message = raised.value.one_line()
    assert message.startswith("LLMService s: spec.workload.requestsPerSecond: "), message


def service_with_serving(serving: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gpumix.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": "s", "namespace": "n"},
        "spec": {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
            "workload": {"requestsPerSecond": "1"},
            "serving": serving,
        },
    }


@pytest.mark.parametrize(
    ("serving", "field", "fragment"),
    [
        (
            {"extraArgs": ["--enable-prefix-caching", "--tensor-parallel-size", "8"]},
            "spec.serving.extraArgs[1]",
            "--tensor-parallel-size is set by gpumix from the plan",
        ),
        ({"extraArgs": ["--port=9000"]}, "spec.serving.extraArgs[0]", "--port is set by gpumix"),
        (
            {"extraArgs": ["--tensor_parallel_size=2"]},
            "spec.serving.extraArgs[0]",
            "(that is, --tensor-parallel-size)",
        ),
        (
            {"extraArgs": ["--max-model", "4096"]},
            "spec.serving.extraArgs[0]",
            "(that is, --max-model-len)",
        ),
        ({"extraArgs": ["-tp", "2"]}, "spec.serving.extraArgs[0]", "--tensor-parallel-size"),
        ({"extraArgs": ["-qawq"]}, "spec.serving.extraArgs[0]", "--quantization"),
        ({"extraArgs": ["--host", "127.0.0.1"]}, "spec.serving.extraArgs[0]", "--host"),
        (
            {"extraArgs": ["--max-num-batched-tokens=2048"]},
            "spec.serving.extraArgs[0]",
            "the scheduler limit the planner's capacities assume",
        ),
        ({"extraArgs": ["--model", "x"]}, "spec.serving.extraArgs[0]", "--model"),
        ({"extraArgs": ["--served-model-name=x"]}, "spec.serving.extraArgs[0]", "served"),
        ({"extraArgs": ["--dtype", "float32"]}, "spec.serving.extraArgs[0]", "--dtype"),
        ({"extraArgs": ["-pp", "2"]}, "spec.serving.extraArgs[0]", "GPUs per replica"),
        (
            {
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                ]
            },
            "spec.serving.env[1]",
            "NVIDIA_VISIBLE_DEVICES is set by the GPU device plugin",
        ),
        (
            {"env": [{"name": "CUDA_VISIBLE_DEVICES", "value": "0,1"}]},
            "spec.serving.env[0]",
            "CUDA_VISIBLE_DEVICES",
        ),
        ({"env": [{"name": "HF_HOME", "value": "/x"}]}, "spec.serving.env[0]", "modelCache"),
        (
            {
                "env": [
                    {
                        "name": "HF_TOKEN",
                        "value": "hf_plain",
                        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
                    }
                ]
            },
            "spec.serving.env[0]",
            "value or valueFrom, not both",
        ),
        (
            {"env": [{"name": "HF_TOKEN", "valueFrom": {}}]},
            "spec.serving.env[0].valueFrom",
            "exactly one of secretKeyRef or configMapKeyRef",
        ),
        (
            {
                "env": [
                    {"name": "T", "valueFrom": {"secretKeyRef": {"name": "Bad_Name", "key": "k"}}}
                ]
            },
            "spec.serving.env[0].valueFrom.secretKeyRef.name",
            "pattern",
        ),
        ({"modelCache": {}}, "spec.serving.modelCache", "exactly one of persistentVolumeClaim"),
        (
            {"modelCache": {"emptyDir": {"sizeLimit": "lots"}}},
            "spec.serving.modelCache.emptyDir.sizeLimit",
            "pattern",
        ),
    ],
)
def test_serving_settings_that_gpumix_owns_or_that_cannot_work_are_refused(
    serving: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(InputError) as raised:
        parse_resource(service_with_serving(serving))
    message = raised.value.one_line()
    assert message.startswith(f"LLMService s: {field}: "), message
    assert fragment in message


def test_serving_settings_gpumix_does_not_own_are_accepted() -> None:
    service = parse_resource(
        service_with_serving(
            {
                # flags that merely start like an owned one are not abbreviations of it
                "extraArgs": ["--model-impl", "vllm", "--max-logprobs=5", "-O3", "--"],
                "env": [
                    {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}},
                    {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"},
                    {"name": "EMPTY"},
                ],
                "modelCache": {"persistentVolumeClaim": {"claimName": "llama-weights"}},
            }
        )
    )
    assert isinstance(service, LLMService)
    serving = service.spec.serving
    assert serving.env[0].value_from is not None
    assert serving.env[0].value_from.secret_key_ref is not None
    assert serving.model_cache is not None and serving.model_cache.persistent_volume_claim


def test_the_crd_refuses_owned_environment_and_half_set_sources() -> None:
    """The rules the API server applies at `kubectl apply` (CEL) name the same variables the
    models refuse; the e2e suite applies them on a real API server."""
    serving = all_crds()["llmservices.gpumix.io.yaml"]["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]["properties"]["spec"]["properties"]["serving"]
    env_rules = serving["properties"]["env"]["items"]["x-kubernetes-validations"]
    owned_rule = next(rule for rule in env_rules if "self.name in" in rule["rule"])
    for name in OWNED_ENV:
        assert f"'{name}'" in owned_rule["rule"]
    # no default for value: one next to a valueFrom would break the rule for every secret
    assert "default" not in serving["properties"]["env"]["items"]["properties"]["value"]
    assert serving["properties"]["extraArgs"]["maxItems"] > 0  # bounds CEL cost
    assert "x-kubernetes-validations" in serving["properties"]["modelCache"]
