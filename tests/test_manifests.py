"""Manifest builders: golden files for what lands in the cluster, plus the properties a user
would notice (names, selectors, hashes).

Regenerate the golden files after an intended change with
``GPUMIX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_manifests.py`` and review the diff.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpumix.operator.manifests import (
    LABEL_CAPACITY_TYPE,
    LABEL_GPU_TYPE,
    LABEL_POOL,
    LABEL_SERVICE,
    SPEC_HASH_ANNOTATION,
    PoolPlacement,
    build_deployment,
    build_entry_service,
    build_service,
    deployment_name,
    spec_hash,
)
from gpumix.resources import LLMService, load_manifests
from gpumix.solver.model import PlanEntry

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("GPUMIX_UPDATE_GOLDEN") == "1"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
UID = "6f1c2b4e-8a7d-4c1e-9b2f-0d3e5a7c9b11"


def make_service(name: str = "chat", **spec_overrides: Any) -> LLMService:
    spec: dict[str, Any] = {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "maxModelLen": 8192},
        "workload": {
            "requestsPerSecond": "12.5",
            "classes": [
                {"name": "chat", "inputTokens": 512, "outputTokens": 256, "share": 70},
                {"name": "rag", "inputTokens": 4096, "outputTokens": 256, "share": 30},
            ],
        },
        "serving": {
            "extraArgs": ["--enable-prefix-caching"],
            "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "INFO"}],
        },
    }
    spec.update(spec_overrides)
    return LLMService.model_validate(
        {
            "apiVersion": "gpumix.io/v1alpha1",
            "kind": "LLMService",
            "metadata": {"name": name, "namespace": "team-a", "uid": UID},
            "spec": spec,
        }
    )


L4_SPOT_ENTRY = PlanEntry(
    pool="l4-spot",
    gpu_type="L4",
    capacity_type="spot",
    tensor_parallel=1,
    weight_format="bf16",
    replicas=3,
    gpus=3,
    cost_per_hour=0.87,
    assignment={"chat": 0.4, "rag": 0.0},
    capacity_rps={"chat": 4.2, "rag": 0.9},
)
L4_SPOT = PoolPlacement(
    name="l4-spot",
    gpu_type="L4",
    capacity_type="spot",
    node_selector={"karpenter.sh/nodepool": "l4-spot", "karpenter.sh/capacity-type": "spot"},
    tolerations=({"key": "karpenter.sh/spot", "operator": "Exists", "effect": "NoSchedule"},),
)
H100_ENTRY = PlanEntry(
    pool="h100-on-demand",
    gpu_type="H100-80GB",
    capacity_type="on-demand",
    tensor_parallel=4,
    weight_format="fp8",
    replicas=1,
    gpus=4,
    cost_per_hour=15.72,
    assignment={"chat": 0.6, "rag": 1.0},
    capacity_rps={"chat": 31.5, "rag": 7.25},
)
H100_ON_DEMAND = PoolPlacement(
    name="h100-on-demand",
    gpu_type="H100-80GB",
    capacity_type="on-demand",
    node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
)

# A discovered pool of unlabelled on-demand nodes: its selector names the GPU type only.
H100_DISCOVERED_ON_DEMAND = PoolPlacement(
    name="h100-80gb-on-demand",
    gpu_type="H100-80GB",
    capacity_type="on-demand",
    node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    excluded_label_keys=(
        "karpenter.sh/capacity-type",
        "cloud.google.com/gke-spot",
        "eks.amazonaws.com/capacityType",
    ),
)


def check_golden(name: str, obj: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.yaml"
    rendered = yaml.safe_dump(obj, sort_keys=False, width=100)
    if UPDATE_GOLDEN:
        path.write_text(rendered)
        return
    assert path.exists(), f"{path} missing: run with GPUMIX_UPDATE_GOLDEN=1"
    assert rendered == path.read_text(), (
        f"{path.name} differs from the builder's output; if intended, regenerate with "
        "GPUMIX_UPDATE_GOLDEN=1 and review the diff"
    )


def test_golden_tp1_bf16_spot_deployment() -> None:
    check_golden(
        "deployment-tp1-bf16-spot", build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT)
    )


def test_golden_tp4_fp8_on_demand_deployment() -> None:
    deployment = build_deployment(make_service(), H100_ENTRY, H100_ON_DEMAND)
    check_golden("deployment-tp4-fp8-on-demand", deployment)


def test_golden_discovered_on_demand_deployment_avoids_capacity_labelled_nodes() -> None:
    entry = dataclasses.replace(H100_ENTRY, pool="h100-80gb-on-demand")
    deployment = build_deployment(make_service(), entry, H100_DISCOVERED_ON_DEMAND)
    check_golden("deployment-tp4-fp8-discovered-on-demand", deployment)


def test_excluded_label_keys_become_a_required_does_not_exist_affinity() -> None:
    pod = build_deployment(make_service(), H100_ENTRY, H100_DISCOVERED_ON_DEMAND)["spec"][
        "template"
    ]["spec"]
    required = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    # One term: the scheduler ORs terms, so every key must sit in the same term to be ANDed.
    assert required["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "karpenter.sh/capacity-type", "operator": "DoesNotExist"},
                {"key": "cloud.google.com/gke-spot", "operator": "DoesNotExist"},
                {"key": "eks.amazonaws.com/capacityType", "operator": "DoesNotExist"},
            ]
        }
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    # Pools without excluded keys get no affinity at all.
    for placement in (L4_SPOT, H100_ON_DEMAND):
        assert (
            "affinity"
            not in build_deployment(make_service(), H100_ENTRY, placement)["spec"]["template"][
                "spec"
            ]
        )


def test_golden_services() -> None:
    check_golden("service", build_service(make_service()))
    check_golden("entry-service", build_entry_service(make_service(), L4_SPOT_ENTRY, L4_SPOT))


def test_deployment_runs_the_planned_configuration() -> None:
    deployment = build_deployment(make_service(), H100_ENTRY, H100_ON_DEMAND)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]

    def flag(name: str) -> str:
        return str(args[args.index(name) + 1])

    assert deployment["spec"]["replicas"] == 1
    assert flag("--model") == "meta-llama/Llama-3.1-8B-Instruct"
    assert flag("--tensor-parallel-size") == "4"
    assert flag("--quantization") == "fp8"
    assert flag("--max-model-len") == "8192"
    assert flag("--port") == "8000"
    assert args[args.index("--served-model-name") + 1 : args.index("--served-model-name") + 3] == [
        "chat",
        "meta-llama/Llama-3.1-8B-Instruct",
    ]
    assert args[-1] == "--enable-prefix-caching", "user extraArgs come last so they win"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels[LABEL_GPU_TYPE] == "H100-80GB"
    assert labels[LABEL_CAPACITY_TYPE] == "on-demand"
    assert labels[LABEL_POOL] == "h100-on-demand"


def test_tp1_has_no_shared_memory_volume_and_tolerates_the_pool() -> None:
    deployment = build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT)
    pod = deployment["spec"]["template"]["spec"]
    # one process per replica: no NCCL shared memory, only the writable HOME
    assert [volume["name"] for volume in pod["volumes"]] == ["home"]
    assert [mount["mountPath"] for mount in pod["containers"][0]["volumeMounts"]] == ["/home/vllm"]
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "karpenter.sh/spot", "operator": "Exists", "effect": "NoSchedule"},
    ]
    args = pod["containers"][0]["args"]
    assert args[args.index("--dtype") + 1] == "bfloat16"
    assert "--quantization" not in args


@pytest.mark.parametrize("weight_format", ["int8", "int4"])
def test_integer_formats_rely_on_a_pre_quantized_checkpoint(weight_format: str) -> None:
    entry = dataclasses.replace(L4_SPOT_ENTRY, weight_format=weight_format)
    args = build_deployment(make_service(), entry, L4_SPOT)["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--quantization" not in args and "--dtype" not in args


def test_unknown_weight_format_is_refused() -> None:
    entry = dataclasses.replace(L4_SPOT_ENTRY, weight_format="fp4")
    with pytest.raises(ValueError, match="fp4"):
        build_deployment(make_service(), entry, L4_SPOT)


def test_owner_reference_points_at_the_llmservice() -> None:
    for obj in (
        build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT),
        build_service(make_service()),
        build_entry_service(make_service(), L4_SPOT_ENTRY, L4_SPOT),
    ):
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "gpumix.io/v1alpha1",
                "kind": "LLMService",
                "name": "chat",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert obj["metadata"]["namespace"] == "team-a"


def test_names_are_dns_labels_and_deterministic() -> None:
    assert deployment_name("chat", L4_SPOT_ENTRY) == "chat-l4-spot-tp1-bf16"
    long_name = "a-very-long-llm-service-name-for-the-customer-support-assistant"
    first = deployment_name(long_name, H100_ENTRY)
    assert first == deployment_name(long_name, H100_ENTRY)
    assert len(first) <= 63 and DNS_1035.match(first)
    # Two configurations that differ only beyond the truncation point still get distinct names.
    other = deployment_name(long_name, dataclasses.replace(H100_ENTRY, weight_format="bf16"))
    assert other != first and len(other) <= 63 and DNS_1035.match(other)
    # Characters a DNS label cannot hold do not make distinct pools collide.
    dotted = deployment_name("chat", dataclasses.replace(L4_SPOT_ENTRY, pool="l4.spot"))
    assert DNS_1035.match(dotted) and dotted != "chat-l4-spot-tp1-bf16"


def test_services_and_pools_whose_names_share_dashes_get_distinct_deployments() -> None:
    """`chat` on pool `l4-spot` and `chat-l4` on pool `spot`, in one namespace, were one
    Deployment name: the second service's apply overwrote the first's."""
    spot = dataclasses.replace(L4_SPOT_ENTRY, pool="spot")
    names = {
        deployment_name("chat", L4_SPOT_ENTRY),
        deployment_name("chat-l4", spot),
        deployment_name("chat-l4-spot", dataclasses.replace(L4_SPOT_ENTRY, pool="x")),
    }
    assert len(names) == 3, names
    assert deployment_name("chat", L4_SPOT_ENTRY) == "chat-l4-spot-tp1-bf16"  # stays readable
    dashed = deployment_name("chat-l4", spot)
    assert dashed.startswith("chat-l4-spot-tp1-bf16-") and DNS_1035.match(dashed)
    assert dashed == deployment_name("chat-l4", spot)  # deterministic: the same on every pass


def test_long_service_names_give_valid_labels_and_selectors() -> None:
    long_name = "x" * 40 + "." + "y" * 40
    service = make_service(name=long_name)
    deployment = build_deployment(service, L4_SPOT_ENTRY, L4_SPOT)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(len(value) <= 63 for value in labels.values())
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items(), "the selector must match the pod template"
    endpoint = build_service(service)
    assert DNS_1035.match(endpoint["metadata"]["name"])
    assert endpoint["spec"]["selector"][LABEL_SERVICE] == labels[LABEL_SERVICE]


def test_selector_is_stable_when_the_pool_changes_gpu_type() -> None:
    # Deployment selectors are immutable: editing a pool must not require a new selector.
    before = build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT)
    relabelled = dataclasses.replace(L4_SPOT, gpu_type="L4-24GB")
    after = build_deployment(make_service(), L4_SPOT_ENTRY, relabelled)
    assert before["spec"]["selector"] == after["spec"]["selector"]
    assert (
        before["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        != (after["metadata"]["annotations"][SPEC_HASH_ANNOTATION])
    )


def test_services_select_the_pods_they_serve() -> None:
    deployment = build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    endpoint = build_service(make_service())
    per_entry = build_entry_service(make_service(), L4_SPOT_ENTRY, L4_SPOT)
    assert endpoint["metadata"]["name"] == "chat"
    assert per_entry["metadata"]["name"] == deployment["metadata"]["name"]
    assert endpoint["spec"]["selector"].items() <= pod_labels.items()
    assert per_entry["spec"]["selector"].items() <= pod_labels.items()
    other = build_deployment(make_service(), H100_ENTRY, H100_ON_DEMAND)
    other_labels = other["spec"]["template"]["metadata"]["labels"]
    assert not per_entry["spec"]["selector"].items() <= other_labels.items()
    assert endpoint["spec"]["selector"].items() <= other_labels.items()


def test_spec_hash_changes_with_the_spec_and_only_then() -> None:
    base = build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT)
    again = build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT)
    recorded = base["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    assert recorded == again["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    assert recorded == spec_hash(base), "the annotation is the hash of the rest of the object"

    # Key order and the annotation's own value do not matter.
    reordered = yaml.safe_load(yaml.safe_dump(base, sort_keys=True))
    reordered["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = "stale"
    assert spec_hash(reordered) == recorded

    more_replicas = build_deployment(
        make_service(), dataclasses.replace(L4_SPOT_ENTRY, replicas=4), L4_SPOT
    )
    new_image = build_deployment(
        make_service(serving={"image": "vllm/vllm-openai:v0.11.1"}), L4_SPOT_ENTRY, L4_SPOT
    )
    hashes = {recorded} | {
        obj["metadata"]["annotations"][SPEC_HASH_ANNOTATION] for obj in (more_replicas, new_image)
    }
    assert len(hashes) == 3


def test_spec_hash_does_not_mutate_its_input() -> None:
    base = build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT)
    snapshot = yaml.safe_dump(base)
    spec_hash(base)
    assert yaml.safe_dump(base) == snapshot


def test_traffic_shift_does_not_roll_pods() -> None:
    # A re-plan that only moves class shares updates annotations on the Deployment, not the
    # pod template, so no replica restarts (each restart is a 20-minute model load).
    base = build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT)
    shifted = build_deployment(
        make_service(),
        dataclasses.replace(L4_SPOT_ENTRY, assignment={"chat": 0.5, "rag": 0.1}),
        L4_SPOT,
    )
    assert base["spec"]["template"] == shifted["spec"]["template"]
    assert shifted["metadata"]["annotations"]["gpumix.io/assignment"] == '{"chat":0.5,"rag":0.1}'


def test_offline_rendering_without_uid_has_no_owner_reference() -> None:
    service = make_service()
    offline = service.model_copy(
        update={"metadata": service.metadata.model_copy(update={"uid": None})}
    )
    assert "ownerReferences" not in build_service(offline)["metadata"]


def test_the_70b_example_builds_a_tp4_deployment() -> None:
    [service] = load_manifests(Path(__file__).resolve().parents[1] / "examples/llmservice-70b.yaml")
    assert isinstance(service, LLMService)
    entry = dataclasses.replace(H100_ENTRY, assignment={"chat": 1.0, "long-context": 0.8})
    deployment = build_deployment(service, entry, H100_ON_DEMAND)
    assert deployment["metadata"]["name"] == "assistant-70b-h100-on-demand-tp4-fp8-64378f1b"
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model") + 1] == "meta-llama/Llama-3.1-70B-Instruct"
    assert args[args.index("--max-model-len") + 1] == "16384"
