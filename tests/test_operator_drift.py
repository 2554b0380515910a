"""Hand edits to what gpumix owns are seen; what the API server adds or rewrites is not."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gpumix.operator.drift import drifted_fields, quantity_value
from gpumix.operator.manifests import build_deployment
from test_manifests import H100_ENTRY, H100_ON_DEMAND, L4_SPOT, L4_SPOT_ENTRY, make_service

# A service with everything spec.serving can add to a pod: a secret and an empty variable, and
# a model cache whose size the API server rewrites (1024Mi is stored as 1Gi).
SERVING = {
    "env": [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        {"name": "VLLM_NO_USAGE_STATS", "value": ""},
    ],
    "modelCache": {"emptyDir": {"sizeLimit": "1024Mi"}},
}


def built() -> dict[str, Any]:
    return build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT)


def built_with_serving() -> dict[str, Any]:
    return build_deployment(make_service(serving=SERVING), H100_ENTRY, H100_ON_DEMAND)


def canonical_binary(quantity: str) -> str:
    """The API server's form of a binary-suffixed size: the largest exact suffix."""
    value = quantity_value(quantity)
    assert value is not None and value == int(value)
    number = int(value)
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        factor = 1024 ** (["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].index(suffix) + 1)
        if number % factor == 0:
            return f"{number // factor}{suffix}"
    return str(number)


def as_served(deployment: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns for ``deployment``: defaults added, quantities as strings,
    empty lists and maps dropped, status filled in."""
    live = copy.deepcopy(deployment)
    live["metadata"].update(uid="u", resourceVersion="7", generation=2)
    live["spec"]["progressDeadlineSeconds"] = 600
    live["spec"]["revisionHistoryLimit"] = 10
    pod = live["spec"]["template"]["spec"]
    pod.update(restartPolicy="Always", dnsPolicy="ClusterFirst", schedulerName="default-scheduler")
    for volume in pod.get("volumes", []):
        empty_dir = volume.get("emptyDir") or {}
        if "sizeLimit" in empty_dir:
            empty_dir["sizeLimit"] = canonical_binary(empty_dir["sizeLimit"])
    for container in pod["containers"]:
        container.update(
            imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log"
        )
        container["securityContext"].setdefault("procMount", "Default")
        for variable in container.get("env", []):
            if variable.get("value") == "":
                del variable["value"]  # omitempty
        for section in ("limits", "requests"):
            values = container.get("resources", {}).get(section, {})
            for name, value in values.items():
                values[name] = str(value)
        for key in [k for k, v in container.items() if v in ([], {})]:
            del container[key]
    live["status"] = {"replicas": 1, "readyReplicas": 1}
    return live


def pod_of(live: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = live["spec"]["template"]["spec"]
    return pod


def container(live: dict[str, Any]) -> dict[str, Any]:
    return dict(live["spec"]["template"]["spec"]["containers"][0])


def test_a_faithful_copy_as_the_api_serves_it_is_not_an_edit() -> None:
    assert drifted_fields(built(), as_served(built())) == []


def test_an_image_from_another_registry_is_an_edit() -> None:
    live = as_served(built())
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil.example/vllm:latest"
    assert drifted_fields(built(), live) == ["spec.template.spec.containers[0].image"]


def test_an_appended_argument_is_an_edit() -> None:
    live = as_served(built())
    live["spec"]["template"]["spec"]["containers"][0]["args"].append("--trust-remote-code")
    assert drifted_fields(built(), live) == ["spec.template.spec.containers[0].args"]


def test_a_gpu_limit_set_to_zero_is_an_edit() -> None:
    live = as_served(built())
    limits = live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert container(built())["resources"]["limits"]["nvidia.com/gpu"]  # gpumix sets it
    limits["nvidia.com/gpu"] = "0"
    assert drifted_fields(built(), live) == [
        "spec.template.spec.containers[0].resources.limits.nvidia.com/gpu"
    ]


def test_a_removed_node_selector_is_an_edit() -> None:
    live = as_served(built())
    del live["spec"]["template"]["spec"]["nodeSelector"]
    assert drifted_fields(built(), live) == ["spec.template.spec.nodeSelector"]


def test_only_deployments_are_compared() -> None:
    service = {"kind": "Service", "spec": {"type": "ClusterIP"}}
    assert drifted_fields(service, {"kind": "Service", "spec": {"type": "NodePort"}}) == []


def test_a_faithful_copy_with_secrets_caches_and_security_is_not_an_edit() -> None:
    desired = built_with_serving()
    live = as_served(desired)
    cache = next(v for v in pod_of(live)["volumes"] if v["name"] == "model-cache")
    assert cache["emptyDir"]["sizeLimit"] == "1Gi"  # the server's rewrite really happened
    assert drifted_fields(desired, live) == []


def test_a_cache_size_changed_by_hand_is_an_edit() -> None:
    live = as_served(built_with_serving())
    cache = next(v for v in pod_of(live)["volumes"] if v["name"] == "model-cache")
    cache["emptyDir"]["sizeLimit"] = "1Mi"
    assert drifted_fields(built_with_serving(), live) == [
        "spec.template.spec.volumes[1].emptyDir.sizeLimit"
    ]


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (
            lambda pod: pod["securityContext"].update(runAsNonRoot=False, runAsUser=0),
            [
                "spec.template.spec.securityContext.runAsNonRoot",
                "spec.template.spec.securityContext.runAsUser",
            ],
        ),
        (
            lambda pod: pod["containers"][0]["securityContext"].update(
                allowPrivilegeEscalation=True
            ),
            ["spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation"],
        ),
        (
            lambda pod: pod["containers"][0]["env"][3]["valueFrom"]["secretKeyRef"].update(
                name="someone-elses-token"
            ),
            ["spec.template.spec.containers[0].env[3].valueFrom.secretKeyRef.name"],
        ),
        (
            lambda pod: pod["containers"][0]["env"].append(
                {"name": "CUDA_VISIBLE_DEVICES", "value": "0,1,2,3,4,5,6,7"}
            ),
            ["spec.template.spec.containers[0].env"],
        ),
    ],
    ids=["root", "privilege-escalation", "secret-swapped", "gpus-exposed"],
)
def test_a_weakened_pod_is_an_edit(edit: Any, path: list[str]) -> None:
    live = as_served(built_with_serving())
    edit(pod_of(live))
    assert drifted_fields(built_with_serving(), live) == path


def test_quantities_compare_by_value() -> None:
    assert quantity_value("1Gi") == quantity_value("1024Mi") == 1024**3
    assert quantity_value("1G") == 10**9 and quantity_value("1e3") == 1000
    assert quantity_value("500m") == quantity_value("0.5")
    assert quantity_value("lots") is None
