"""Hand edits to what gpumix owns are seen; what the API server adds or rewrites is not."""

from __future__ import annotations

import copy
from typing import Any

from gpumix.operator.drift import drifted_fields
from gpumix.operator.manifests import build_deployment
from test_manifests import L4_SPOT, L4_SPOT_ENTRY, make_service


def built() -> dict[str, Any]:
    return build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT)


def as_served(deployment: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns for ``deployment``: defaults added, quantities as strings,
    empty lists and maps dropped, status filled in."""
    live = copy.deepcopy(deployment)
    live["metadata"].update(uid="u", resourceVersion="7", generation=2)
    live["spec"]["progressDeadlineSeconds"] = 600
    live["spec"]["revisionHistoryLimit"] = 10
    pod = live["spec"]["template"]["spec"]
    pod.update(restartPolicy="Always", dnsPolicy="ClusterFirst", schedulerName="default-scheduler")
    for container in pod["containers"]:
        container.update(
            imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log"
        )
        for section in ("limits", "requests"):
            values = container.get("resources", {}).get(section, {})
            for name, value in values.items():
                values[name] = str(value)
        for key in [k for k, v in container.items() if v in ([], {})]:
            del container[key]
    live["status"] = {"replicas": 1, "readyReplicas": 1}
    return live


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
