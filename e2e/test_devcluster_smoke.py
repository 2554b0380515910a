"""The dev cluster behaves like a real GPU cluster: the real scheduler honours GPU labels,
taints and capacity, kwok makes pods Ready, and the real garbage collector cleans up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, config

from gpumix.devcluster.cluster import DevCluster

NAMESPACE = "default"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def apis(cluster: DevCluster) -> tuple[client.CoreV1Api, client.AppsV1Api]:
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    return client.CoreV1Api(api_client), client.AppsV1Api(api_client)


def gpu_deployment(name: str, gpu_product: str, gpus: int, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": gpu_product},
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.11.0",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                        }
                    ],
                },
            },
        },
    }


def pods_of(core: client.CoreV1Api, app: str) -> list[Any]:
    return list(core.list_namespaced_pod(NAMESPACE, label_selector=f"app={app}").items)


def is_ready(pod: Any) -> bool:
    conditions = pod.status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def test_gpu_pod_is_scheduled_on_its_gpu_type_made_ready_and_garbage_collected(
    dev_cluster: DevCluster,
) -> None:
    core, apps = apis(dev_cluster)
    apps.create_namespaced_deployment(NAMESPACE, gpu_deployment("smoke-l4", "NVIDIA-L4", 1, 1))

    pod = wait_for(
        "a Ready pod of smoke-l4",
        lambda: next((p for p in pods_of(core, "smoke-l4") if is_ready(p)), None),
    )
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert node.metadata.labels["gpumix.io/sim-pool"] == "l4-spot"
    assert pod.metadata.owner_references[0].kind == "ReplicaSet"
    replica_set = pod.metadata.owner_references[0].name

    apps.delete_namespaced_deployment("smoke-l4", NAMESPACE)
    wait_for(
        "the ReplicaSet and pods to be garbage-collected",
        lambda: (
            not pods_of(core, "smoke-l4")
            and not [
                rs
                for rs in apps.list_namespaced_replica_set(NAMESPACE).items
                if rs.metadata.name == replica_set
            ]
        ),
    )


def test_scheduler_respects_gpu_capacity(dev_cluster: DevCluster) -> None:
    core, apps = apis(dev_cluster)
    # The example fleet has one 8-GPU H100 node: only one of three 8-GPU replicas fits.
    apps.create_namespaced_deployment(
        NAMESPACE, gpu_deployment("smoke-h100", "NVIDIA-H100-80GB-HBM3", 8, 3)
    )
    try:
        wait_for(
            "one running and two unschedulable H100 pods",
            lambda: (
                sum(is_ready(p) for p in pods_of(core, "smoke-h100")) == 1
                and sum(
                    any(
                        c.type == "PodScheduled" and c.reason == "Unschedulable"
                        for c in (p.status.conditions or [])
                    )
                    for p in pods_of(core, "smoke-h100")
                )
                == 2
            ),
        )
    finally:
        apps.delete_namespaced_deployment("smoke-h100", NAMESPACE)
        # The session's cluster is shared: give the H100 back before the next test.
        wait_for("the H100 pods to be deleted", lambda: not pods_of(core, "smoke-h100"))


def test_added_nodes_become_ready_and_pool_deletion_removes_them(dev_cluster: DevCluster) -> None:
    core, _ = apis(dev_cluster)
    added = dev_cluster.add_nodes("t4-spot", 2)
    assert added == ["t4-spot-2", "t4-spot-3"]
    wait_for(
        "the added T4 nodes to be Ready",
        lambda: all(
            any(
                c.type == "Ready" and c.status == "True"
                for c in core.read_node(name).status.conditions or []
            )
            for name in added
        ),
    )

    deleted = dev_cluster.delete_pool_nodes("t4-spot")
    assert sorted(deleted) == ["t4-spot-0", "t4-spot-1", "t4-spot-2", "t4-spot-3"]
    wait_for(
        "the T4 nodes to be gone",
        lambda: not core.list_node(label_selector="gpumix.io/sim-pool=t4-spot").items,
    )
    # The session's cluster is shared: restore the fleet file's T4 nodes (t4-spot-0, -1).
    assert dev_cluster.add_nodes("t4-spot", 2) == ["t4-spot-0", "t4-spot-1"]
    dev_cluster.wait_nodes_ready()
