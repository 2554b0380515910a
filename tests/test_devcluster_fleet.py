"""The dev cluster's pure parts: fleet file -> Node objects, and wrapper go.mod generation."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from gpumix.devcluster import gomod
from gpumix.devcluster.cluster import default_fleet_path
from gpumix.devcluster.fleet import (
    fleet_nodes,
    free_pod_cidrs,
    load_fleet,
    node_manifest,
    parse_fleet,
)
from gpumix.errors import InputError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FLEET = REPO / "examples" / "fleet-sim.yaml"


def pool(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "l4-spot",
        "gpuType": "L4",
        "capacityType": "spot",
        "nodes": 2,
        "gpusPerNode": 4,
    }
    entry.update(overrides)
    return entry


def test_node_carries_what_real_gpu_nodes_carry() -> None:
    fleet = parse_fleet({"nodePools": [pool(instanceType="g6.12xlarge")]}, "fleet.yaml")
    node = node_manifest(fleet.pools[0], 1)

    assert node["metadata"]["name"] == "l4-spot-1"
    labels = node["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert labels["nvidia.com/gpu.count"] == "4"
    assert labels["karpenter.sh/capacity-type"] == "spot"
    assert labels["node.kubernetes.io/instance-type"] == "g6.12xlarge"
    assert labels["gpumix.io/sim-pool"] == "l4-spot"
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    ]
    for field in ("capacity", "allocatable"):
        resources = node["status"][field]
        assert resources["nvidia.com/gpu"] == "4"
        assert resources["cpu"] == "64"  # default: 16 per GPU
        assert resources["memory"] == "512Gi"
        assert resources["pods"] == "110"


def test_extra_labels_and_taints_are_added_after_the_gpu_taint() -> None:
    fleet = parse_fleet(
        {
            "nodePools": [
                pool(
                    labels={"team": "research"},
                    taints=[{"key": "spot", "value": "true", "effect": "NoExecute"}],
                )
            ]
        },
        "fleet.yaml",
    )
    node = node_manifest(fleet.pools[0], 0)
    assert node["metadata"]["labels"]["team"] == "research"
    assert node["spec"]["taints"][1] == {"key": "spot", "value": "true", "effect": "NoExecute"}


def test_example_fleet_is_mixed_and_packaged_unchanged() -> None:
    fleet = load_fleet(EXAMPLE_FLEET)
    products = {p.gpu_product for p in fleet.pools}
    assert {"NVIDIA-H100-80GB-HBM3", "NVIDIA-L4", "Tesla-T4"} <= products
    assert {p.capacity_type for p in fleet.pools} == {"on-demand", "spot"}
    nodes = fleet_nodes(fleet)
    assert len(nodes) == sum(p.nodes for p in fleet.pools)
    assert len({node["metadata"]["name"] for node in nodes}) == len(nodes)
    # `dev-cluster up` without --fleet uses the packaged copy; it must be the example itself.
    assert default_fleet_path().read_text() == EXAMPLE_FLEET.read_text()


@pytest.mark.parametrize(
    ("document", "field", "message"),
    [
        ({"pools": []}, "nodePools", "nodePools list"),
        ({"nodePools": [pool(gpuType="B300")]}, "nodePools[0].gpuType", "unknown GPU type"),
        ({"nodePools": [pool(capacityType="preemptible")]}, "nodePools[0].capacityType", "spot"),
        ({"nodePools": [pool(nodes="two")]}, "nodePools[0].nodes", "must be of type int"),
        ({"nodePools": [pool(gpusPerNode=0)]}, "nodePools[0].gpusPerNode", ">= 1"),
        ({"nodePools": [pool(name="L4_Spot")]}, "nodePools[0].name", "lower-case"),
        ({"nodePools": [pool(), pool()]}, "nodePools[1].name", "duplicate"),
        ({"nodePools": [pool(memory="lots")]}, "nodePools[0].memory", "quantity"),
        ({"nodePools": [pool(taints=[{"key": "x", "effect": "Never"}])]}, "taints[0].effect", ""),
    ],
)
def test_bad_fleet_names_file_and_field(document: Any, field: str, message: str) -> None:
    with pytest.raises(InputError) as error:
        parse_fleet(document, "fleet.yaml")
    line = error.value.one_line()
    assert line.startswith("fleet.yaml: ")
    assert field in line
    assert message in line


def test_unreadable_fleet_file_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "fleet.yaml"
    broken.write_text("nodePools: [\n")
    with pytest.raises(InputError, match=r"fleet.yaml: not valid YAML"):
        load_fleet(broken)


KUBERNETES_GOMOD = """\
module k8s.io/kubernetes

go 1.24.0

require (
\tk8s.io/api v0.0.0
\tgithub.com/google/cel-go v0.26.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go // comment
)

replace github.com/example/fork v1.0.0 => github.com/example/fork v1.0.1
"""


def test_kubernetes_wrapper_replaces_staging_with_published_versions() -> None:
    text = gomod.kubernetes_wrapper_gomod(KUBERNETES_GOMOD, "v1.34.4")
    assert "\tk8s.io/kubernetes v1.34.4\n" in text
    assert "\tk8s.io/api => k8s.io/api v0.34.4\n" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.34.4\n" in text
    # A non-local replace of the upstream module must be carried over: a dependency's
    # replace directives are ignored by the main module.
    assert "github.com/example/fork v1.0.0 => github.com/example/fork v1.0.1" in text
    assert "./staging" not in text
    assert "\tk8s.io/kubernetes/cmd/kube-apiserver\n" in text


def test_etcd_wrapper_drops_the_forbidden_dependency_guard() -> None:
    upstream = (
        "module go.etcd.io/etcd/server/v3\n\nreplace (\n\tgo.etcd.io/etcd/api/v3 => ../api\n)\n\n"
        "replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY\n"
    )
    text = gomod.etcd_wrapper_gomod(upstream, "v3.6.16")
    assert "go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v3.6.16" in text
    assert "FORBIDDEN" not in text
    assert "\tgo.etcd.io/etcd/server/v3\n" in text


def test_staging_version_rejects_non_kubernetes_versions() -> None:
    assert gomod.staging_version("v1.34.4") == "v0.34.4"
    assert gomod.staging_version("v1.35.0-rc.1") == "v0.35.0-rc.1"
    with pytest.raises(ValueError, match="kubernetes"):
        gomod.staging_version("v3.6.16")


def test_committed_wrapper_modules_pin_the_built_versions() -> None:
    from gpumix.devcluster import binaries

    root = REPO / "src" / "gpumix" / "devcluster" / "gomod"
    kubernetes = (root / "kubernetes" / "go.mod").read_text()
    assert f"k8s.io/kubernetes {binaries.KUBERNETES_VERSION}" in kubernetes
    assert f"k8s.io/api => k8s.io/api {gomod.staging_version(binaries.KUBERNETES_VERSION)}" in (
        kubernetes
    )
    assert (root / "kubernetes" / "go.sum").stat().st_size > 0
    etcd = (root / "etcd" / "go.mod").read_text()
    assert f"go.etcd.io/etcd/server/v3 {binaries.ETCD_VERSION}" in etcd
    assert (root / "etcd" / "go.sum").stat().st_size > 0


def test_control_plane_listens_on_loopback_only(tmp_path: Path) -> None:
    from gpumix.devcluster.certs import CertPaths
    from gpumix.devcluster.cluster import Ports, component_argvs

    ports = Ports(2379, 2380, 6443, 10257, 10259, 10247, 9090)
    binaries = {
        name: f"/bin/{name}"
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
    }
    kubeconfigs = {
        stem: tmp_path / f"{stem}.kubeconfig"
        for stem in ("admin", "kube-controller-manager", "kube-scheduler")
    }
    argvs = component_argvs(
        binaries, ports, CertPaths(tmp_path), tmp_path, kubeconfigs, etcd_data=tmp_path / "etcd"
    )
    # Every URL a process listens on or dials (the issuer is a name inside tokens, not an address).
    urls = [
        arg
        for argv in argvs.values()
        for arg in argv
        if "://" in arg and not arg.startswith("--service-account-issuer")
    ]
    assert urls and all("127.0.0.1" in url for url in urls)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert "--bind-address=127.0.0.1" in argvs[name]
    assert "--authorization-mode=RBAC" in argvs["kube-apiserver"]
    assert "--unsafe-no-fsync" in argvs["etcd"]
    # kwok must leave nodes it was not asked to simulate alone.
    assert "--manage-all-nodes=false" in argvs["kwok"]
    assert "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" in argvs["kwok"]
    # Pods on a node without a podCIDR still get a loopback IP, never kwok's 10.0.0.0/24.
    cidr = next(arg.split("=", 1)[1] for arg in argvs["kwok"] if arg.startswith("--cidr="))
    assert ipaddress.ip_network(cidr, strict=False).subnet_of(ipaddress.ip_network("127.0.0.0/8"))


def test_every_node_gets_its_own_loopback_pod_cidr() -> None:
    fleet = load_fleet(EXAMPLE_FLEET)
    nodes = fleet_nodes(fleet)
    cidrs = [node["spec"]["podCIDR"] for node in nodes]
    assert len(set(cidrs)) == len(nodes)
    loopback = ipaddress.ip_network("127.0.0.0/8")
    assert all(ipaddress.ip_network(cidr).subnet_of(loopback) for cidr in cidrs)
    # A node added later never takes a CIDR a live node holds.
    fresh = next(iter(free_pod_cidrs(cidrs)))
    assert fresh not in cidrs and ipaddress.ip_network(fresh).subnet_of(loopback)


def test_system_nodes_take_pods_without_gpus_and_carry_no_gpu_labels() -> None:
    from gpumix.devcluster.fleet import system_node_manifest

    node = system_node_manifest(0, "127.64.200.0/24")
    assert node["metadata"]["name"] == "system-0"
    assert "taints" not in node["spec"]  # router pods tolerate nothing
    assert "nvidia.com/gpu" not in node["status"]["allocatable"]
    assert not any(key.startswith("nvidia.com/") for key in node["metadata"]["labels"])
    assert node["spec"]["podCIDR"] == "127.64.200.0/24"
