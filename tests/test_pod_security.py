"""gpumix's pods are admitted by a namespace that enforces the `restricted` Pod Security
Standard, and vLLM, run as a non-root user, still has somewhere to write.

``restricted_violations`` checks a pod spec the way the API server's PodSecurity admission
does for the controls that apply to these pods (the e2e test asks the real admission plugin);
it is tested on a plain pod first, so a pass below means something.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from gpumix.operator.manifests import build_deployment, vllm_args
from gpumix.operator.router_manifests import RouterOptions, build_router_deployment
from gpumix.resources.owned import OWNED_ENV, owned_flag
from test_manifests import H100_ENTRY, H100_ON_DEMAND, L4_SPOT, L4_SPOT_ENTRY, make_service

# Volume types the restricted profile allows (Pod Security Standards, "Volume Types").
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The `restricted` controls ``pod`` breaks (baseline's host namespaces and privileged
    containers included), in the policy's own words."""
    found: list[str] = []
    pod_context = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(f"host namespaces ({key})")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"restricted volume types ({volume['name']})")
    if pod_context.get("runAsUser") == 0:
        found.append("runAsUser=0")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    for container in pod.get("containers") or []:
        context = container.get("securityContext") or {}
        name = container["name"]
        if context.get("privileged"):
            found.append(f"privileged ({name})")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"allowPrivilegeEscalation != false ({name})")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"unrestricted capabilities ({name})")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"unrestricted capabilities, added ({name})")
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            found.append(f"runAsNonRoot != true ({name})")
        if context.get("runAsUser") == 0:
            found.append(f"runAsUser=0 ({name})")
        seccomp = (context.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            found.append(f"seccompProfile ({name})")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            found.append(f"hostPort ({name})")
    return found


def vllm_pod(**spec: Any) -> dict[str, Any]:
    entry = H100_ENTRY
    pod: dict[str, Any] = build_deployment(make_service(**spec), entry, H100_ON_DEMAND)["spec"][
        "template"
    ]["spec"]
    return pod


def router_pod() -> dict[str, Any]:
    deployment = build_router_deployment(make_service(), RouterOptions())
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in pod["containers"][0]["env"]}


def mount_paths(pod: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}


def test_the_checker_refuses_a_pod_without_a_security_context() -> None:
    plain = copy.deepcopy(vllm_pod())
    del plain["securityContext"]
    for container in plain["containers"]:
        del container["securityContext"]
    assert restricted_violations(plain) == [
        "allowPrivilegeEscalation != false (vllm)",
        "unrestricted capabilities (vllm)",
        "runAsNonRoot != true (vllm)",
        "seccompProfile (vllm)",
    ]
    plain["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert "restricted volume types (host)" in restricted_violations(plain)


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"serving": {"modelCache": {"persistentVolumeClaim": {"claimName": "weights"}}}},
        {"serving": {"modelCache": {"emptyDir": {"sizeLimit": "100Gi"}}}},
    ],
    ids=["default", "pvc-cache", "emptydir-cache"],
)
def test_vllm_pods_meet_the_restricted_standard(spec: dict[str, Any]) -> None:
    pod = vllm_pod(**spec)
    assert restricted_violations(pod) == []
    assert pod["securityContext"]["runAsUser"] != 0
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    # a volume the non-root user can write: fsGroup, without a recursive chown on every start
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


def test_router_pods_meet_the_restricted_standard() -> None:
    pod = router_pod()
    assert restricted_violations(pod) == []
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_home_and_the_hugging_face_cache_are_on_writable_volumes() -> None:
    pod = vllm_pod()
    env = env_of(pod)
    mounts = mount_paths(pod)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    home = env["HOME"]["value"]
    assert home in mounts and "emptyDir" in volumes[mounts[home]]
    # no size limit: a limit below the weights evicts a pod mid-download
    assert volumes[mounts[home]]["emptyDir"] == {}
    assert env["HF_HOME"]["value"].startswith(home + "/")
    # PyTorch's getpass.getuser() fails for a user id the image does not know, unless USER
    assert env["USER"]["value"]


def test_a_persistent_model_cache_becomes_hf_home() -> None:
    pod = vllm_pod(serving={"modelCache": {"persistentVolumeClaim": {"claimName": "weights"}}})
    hf_home = env_of(pod)["HF_HOME"]["value"]
    volume_name = mount_paths(pod)[hf_home]
    [volume] = [v for v in pod["volumes"] if v["name"] == volume_name]
    assert volume == {"name": volume_name, "persistentVolumeClaim": {"claimName": "weights"}}
    # HOME stays per pod: compile caches are not shared through the claim
    assert mount_paths(pod)[env_of(pod)["HOME"]["value"]] != volume_name


def test_an_empty_dir_model_cache_keeps_its_size_limit() -> None:
    pod = vllm_pod(serving={"modelCache": {"emptyDir": {"sizeLimit": "200Gi"}}})
    volume_name = mount_paths(pod)[env_of(pod)["HF_HOME"]["value"]]
    [volume] = [v for v in pod["volumes"] if v["name"] == volume_name]
    assert volume["emptyDir"] == {"sizeLimit": "200Gi"}


def test_tensor_parallel_pods_keep_their_shared_memory() -> None:
    pod = vllm_pod(serving={"modelCache": {"emptyDir": {}}})
    shm = mount_paths(pod)["/dev/shm"]
    [volume] = [v for v in pod["volumes"] if v["name"] == shm]
    assert volume["emptyDir"]["medium"] == "Memory"
    single = build_deployment(make_service(), L4_SPOT_ENTRY, L4_SPOT)["spec"]["template"]["spec"]
    assert "/dev/shm" not in mount_paths(single)


def test_a_secret_reaches_the_container_by_reference_only() -> None:
    pod = vllm_pod(
        serving={
            "env": [
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
                {
                    "name": "VLLM_CONFIG",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "tuning", "key": "x", "optional": True}
                    },
                },
                {"name": "EMPTY"},
            ]
        }
    )
    env = env_of(pod)
    assert env["HF_TOKEN"] == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
    }
    assert env["VLLM_CONFIG"]["valueFrom"]["configMapKeyRef"]["optional"] is True
    # as the API server stores it: no empty value that would later read as a hand edit
    assert env["EMPTY"] == {"name": "EMPTY"}


def test_every_flag_gpumix_sets_is_refused_in_extra_args() -> None:
    """A flag added to vllm_args without being owned would let extraArgs override it."""
    for entry in (L4_SPOT_ENTRY, H100_ENTRY, dataclasses.replace(H100_ENTRY, weight_format="int4")):
        args = vllm_args(make_service(serving={"extraArgs": []}), entry)
        flags = [arg for arg in args if arg.startswith("-")]
        assert flags and all(owned_flag(flag) == flag for flag in flags), flags


def test_the_environment_gpumix_sets_is_refused_in_env() -> None:
    owned_by_builder = set(env_of(vllm_pod(serving={"env": []})))
    assert owned_by_builder <= set(OWNED_ENV)
