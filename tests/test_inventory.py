"""The GPU inventory maths: pools, node eligibility, foreign pods, headroom, prices."""

from __future__ import annotations

from typing import Any

import pytest

from gpumix import catalog
from gpumix.operator import inventory, manifests
from gpumix.resources import GPUPool, LLMService
from gpumix.solver.model import PlanEntry


def node(
    name: str,
    labels: dict[str, str],
    gpus: int = 8,
    *,
    ready: bool = True,
    unschedulable: bool = False,
    taints: list[dict[str, Any]] | None = None,
) -> inventory.NodeRecord:
    return inventory.node_record(
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {"unschedulable": unschedulable, "taints": taints or []},
            "status": {
                "allocatable": {"nvidia.com/gpu": str(gpus)},
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
    )


def pod(
    node_name: str | None, gpus: int, *, gpumix: bool = False, phase: str = "Running"
) -> inventory.PodRecord | None:
    labels = {"app.kubernetes.io/managed-by": "gpumix"} if gpumix else {}
    return inventory.pod_record(
        {
            "metadata": {"name": "p", "namespace": "ns", "labels": labels},
            "spec": {
                "nodeName": node_name,
                "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
            },
            "status": {"phase": phase},
        }
    )


def pods(*records: inventory.PodRecord | None) -> list[inventory.PodRecord]:
    return [record for record in records if record is not None]


def gpupool(name: str, selector: dict[str, str], **spec: Any) -> GPUPool:
    return GPUPool.model_validate(
        {
            "metadata": {"name": name},
            "spec": {"gpuType": "H100-80GB", "capacityType": "spot", "nodeSelector": selector}
            | spec,
        }
    )


H100_GFD = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
# What the GPU operator (and the simulated fleet) puts on every GPU node.
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
# Karpenter's taint on a node it is draining.
DISRUPTED_TAINT = {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}


def test_pods_without_gpus_or_terminated_are_not_recorded() -> None:
    assert pod("n", 0) is None
    assert pod("n", 2, phase="Succeeded") is None
    assert pod("n", 2, phase="Failed") is None
    record = pod("n", 2, phase="Pending")
    assert record is not None and record.gpus == 2 and not record.managed_by_gpumix


def test_init_containers_count_when_larger() -> None:
    spec = {
        "containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}],
        "initContainers": [{"resources": {"limits": {"nvidia.com/gpu": "4"}}}],
    }
    assert inventory.pod_gpu_request(spec) == 4


def test_discovery_from_gfd_gke_and_karpenter_labels() -> None:
    nodes = [
        node("a", {"nvidia.com/gpu.product": "NVIDIA-L4", "karpenter.sh/capacity-type": "spot"}, 1),
        node(
            "b",
            {"cloud.google.com/gke-accelerator": "nvidia-l4", "cloud.google.com/gke-spot": "true"},
            1,
        ),
        node(
            "c",
            {
                "karpenter.k8s.aws/instance-gpu-name": "h100",
                "eks.amazonaws.com/capacityType": "ON_DEMAND",
            },
        ),
        node("d", {"kubernetes.io/hostname": "cpu-only"}, 0),
    ]
    pools = {pool.name: pool for pool in inventory.build_inventory([], nodes, [])}
    # GFD and GKE name the same type differently: two pools, each selecting its own nodes.
    assert set(pools) == {"l4-spot", "l4-spot-2", "h100-80gb-on-demand"}
    by_selector = {tuple(sorted(p.definition.node_selector.items())): p for p in pools.values()}
    gke = by_selector[
        (("cloud.google.com/gke-accelerator", "nvidia-l4"), ("cloud.google.com/gke-spot", "true"))
    ]
    assert gke.definition.capacity_type == "spot" and gke.nodes == 1
    h100 = pools["h100-80gb-on-demand"]
    assert h100.gpus == 8 and h100.available_gpus == 8
    assert h100.definition.price_per_gpu_hour == catalog.default_price("H100-80GB", "on-demand")
    assert h100.definition.discovered


def test_capacity_defaults_to_on_demand_without_a_label() -> None:
    pools = inventory.build_inventory([], [node("a", H100_GFD)], [])
    assert [p.name for p in pools] == ["h100-80gb-on-demand"]
    assert dict(pools[0].definition.node_selector) == H100_GFD


def test_unusable_nodes_offer_no_gpus_but_count_as_nodes() -> None:
    nodes = [
        node("ok", H100_GFD),
        node("not-ready", H100_GFD, ready=False),
        node("cordoned", H100_GFD, unschedulable=True),
        node("evicting", H100_GFD, taints=[{"key": "x", "effect": "NoExecute"}]),
        node("tainted-noschedule", H100_GFD, taints=[{"key": "x", "effect": "NoSchedule"}]),
        node("draining", H100_GFD, taints=[DISRUPTED_TAINT]),
        node("gpu-tainted", H100_GFD, taints=[GPU_TAINT]),
        node("prefer-not", H100_GFD, taints=[{"key": "x", "effect": "PreferNoSchedule"}]),
    ]
    (pool,) = inventory.build_inventory([], nodes, [])
    assert pool.nodes == 8 and pool.ready_nodes == 7
    assert pool.gpus == 64
    # "ok", the GPU-tainted node (gpumix's pods tolerate nvidia.com/gpu) and the node that only
    # prefers no scheduling; untolerated NoSchedule and NoExecute taints block.
    assert pool.available_gpus == 24


def test_foreign_pods_take_gpus_and_gpumix_pods_do_not() -> None:
    nodes = [node("a", H100_GFD), node("b", H100_GFD)]
    records = pods(
        pod("a", 3),  # someone else's training job
        pod("a", 4, gpumix=True),  # our replica: replaced by the next plan, counts as free
        pod("b", 2, phase="Succeeded"),  # finished: holds nothing
        pod(None, 8),  # pending, not on any node yet
        pod("elsewhere", 8),
    )
    (pool,) = inventory.build_inventory([], nodes, records)
    assert pool.available_gpus == 16 - 3
    assert pool.allocated_gpus == 3 + 4


def test_foreign_pods_never_make_a_node_negative() -> None:
    (pool,) = inventory.build_inventory([], [node("a", H100_GFD, 2)], pods(pod("a", 5)))
    assert pool.available_gpus == 0


def test_gpupools_replace_discovery_and_add_scalable_headroom() -> None:
    selector = {"karpenter.sh/nodepool": "h100-spot"}
    nodes = [
        node("a", selector | H100_GFD),
        node("b", selector | H100_GFD, ready=False),
        node("unrelated", {"nvidia.com/gpu.product": "NVIDIA-L4"}, 1),
    ]
    pool_objects = [gpupool("h100-spot", selector, maxGPUs=64, pricePerGPUHour="2.10")]
    (pool,) = inventory.build_inventory(pool_objects, nodes, pods(pod("a", 2)))
    assert pool.name == "h100-spot" and pool.nodes == 2
    # 64 - 16 GPUs on existing nodes may still be added, plus 6 free on the ready node.
    assert pool.available_gpus == 48 + 6
    assert pool.definition.price_per_gpu_hour == pytest.approx(2.10)
    solver_pool = pool.solver_pool()
    assert solver_pool.available_gpus == 54 and solver_pool.gpus_per_node == 8


def test_max_gpus_below_existing_gpus_adds_no_headroom() -> None:
    selector = {"pool": "x"}
    pool_objects = [gpupool("x", selector, maxGPUs=4)]
    (pool,) = inventory.build_inventory(pool_objects, [node("a", selector)], [])
    assert pool.available_gpus == 8


def test_gpupool_without_nodes_uses_catalogue_price_and_node_size() -> None:
    (pool,) = inventory.build_inventory([gpupool("empty", {"pool": "none"}, maxGPUs=16)], [], [])
    assert pool.nodes == 0 and pool.available_gpus == 16
    assert pool.gpus_per_node == catalog.get_gpu("H100-80GB").gpus_per_node
    assert pool.definition.price_per_gpu_hour == catalog.default_price("H100-80GB", "spot")


def test_custom_gpu_without_price_is_not_plannable() -> None:
    custom = GPUPool.model_validate(
        {
            "metadata": {"name": "mystery"},
            "spec": {
                "gpuType": "Mystery-1",
                "nodeSelector": {"pool": "m"},
                "gpu": {"memoryGiB": 48, "bf16TFLOPS": 300, "memoryBandwidthGBps": 900},
            },
        }
    )
    (pool,) = inventory.build_inventory([custom], [], [])
    assert not pool.plannable and pool.problem and "pricePerGPUHour" in pool.problem


# -- configured prices and label keys (the operator's configuration file) ----------------------


CUSTOM_GPU_LABEL = "example.com/gpu-model"
CUSTOM_CAPACITY_LABEL = "example.com/lifecycle"


def test_configured_prices_replace_the_catalogue_for_discovered_pools_and_unpriced_gpupools() -> (
    None
):
    settings = inventory.InventorySettings(
        prices={("H100-80GB", "spot"): 1.75, ("H100-80GB", "on-demand"): 3.5}
    )
    nodes = [node("a", H100_GFD | {"karpenter.sh/capacity-type": "spot"})]
    (discovered,) = inventory.build_inventory([], nodes, [], settings)
    assert discovered.definition.price_per_gpu_hour == 1.75
    assert discovered.solver_pool().price_per_gpu_hour == 1.75

    # GPUPools may spell the type in another case; an explicit spec price still wins.
    unpriced = gpupool("unpriced", {"pool": "a"}, gpuType="h100-80gb", capacityType="on-demand")
    priced = gpupool("priced", {"pool": "b"}, pricePerGPUHour="2.10")
    by_name = {p.name: p for p in inventory.build_inventory([unpriced, priced], [], [], settings)}
    assert by_name["unpriced"].definition.price_per_gpu_hour == 3.5
    assert by_name["priced"].definition.price_per_gpu_hour == pytest.approx(2.10)


def test_unconfigured_pairs_keep_the_catalogue_price() -> None:
    settings = inventory.InventorySettings(prices={("H100-80GB", "spot"): 1.75})
    (pool,) = inventory.build_inventory([], [node("a", H100_GFD)], [], settings)
    assert pool.name == "h100-80gb-on-demand"
    assert pool.definition.price_per_gpu_hour == catalog.default_price("H100-80GB", "on-demand")


def test_a_configured_gpu_label_key_discovers_nodes_the_default_keys_ignore() -> None:
    labels = {CUSTOM_GPU_LABEL: "nvidia-l4", CUSTOM_CAPACITY_LABEL: "spot"}
    nodes = [node("custom", labels, 4)]
    assert inventory.build_inventory([], nodes, []) == ()

    settings = inventory.InventorySettings(
        gpu_type_labels=(CUSTOM_GPU_LABEL, *inventory.GPU_LABELS),
        capacity_type_labels=(CUSTOM_CAPACITY_LABEL,),
    )
    (pool,) = inventory.build_inventory([], nodes, [], settings)
    assert pool.name == "l4-spot" and pool.available_gpus == 4
    # Pods of this pool are pinned by exactly the labels that identified it.
    assert dict(pool.definition.node_selector) == labels
    assert pool.definition.price_per_gpu_hour == catalog.default_price("L4", "spot")


def test_label_keys_are_read_in_the_configured_order() -> None:
    # A node whose custom label says L4 and whose GFD label says H100: the first key wins.
    labels = {CUSTOM_GPU_LABEL: "nvidia-l4"} | H100_GFD
    custom_first = inventory.InventorySettings(
        gpu_type_labels=(CUSTOM_GPU_LABEL, "nvidia.com/gpu.product")
    )
    gfd_first = inventory.InventorySettings(
        gpu_type_labels=("nvidia.com/gpu.product", CUSTOM_GPU_LABEL)
    )
    assert [
        p.name for p in inventory.build_inventory([], [node("a", labels)], [], custom_first)
    ] == ["l4-on-demand"]
    assert [p.name for p in inventory.build_inventory([], [node("a", labels)], [], gfd_first)] == [
        "h100-80gb-on-demand"
    ]


def test_capacity_label_keys_not_configured_are_ignored() -> None:
    labels = H100_GFD | {"karpenter.sh/capacity-type": "spot"}
    only_gke = inventory.InventorySettings(capacity_type_labels=("cloud.google.com/gke-spot",))
    (pool,) = inventory.build_inventory([], [node("a", labels)], [], only_gke)
    assert pool.definition.capacity_type == "on-demand"
    assert "karpenter.sh/capacity-type" not in pool.definition.node_selector


@pytest.mark.parametrize(
    ("value", "capacity_type"),
    [("spot", "spot"), ("true", "spot"), ("Reserved", "reserved"), ("on-demand", "on-demand")],
)
def test_a_custom_capacity_label_reads_names_and_booleans(value: str, capacity_type: str) -> None:
    labels = {CUSTOM_CAPACITY_LABEL: value}
    keys = (CUSTOM_CAPACITY_LABEL,)
    assert inventory.capacity_type_from_labels(labels, keys) == capacity_type


# -- discovered pools never overlap ------------------------------------------------------------


def test_an_unlabelled_node_and_a_spot_node_of_one_type_make_disjoint_pools() -> None:
    # Discovery gives the unlabelled node the selector {gpu.product: H100}, which the spot node
    # matches too: it must still count only in the spot pool, or 16 GPUs look like 24.
    nodes = [
        node("on-demand", H100_GFD),
        node("spot", H100_GFD | {"karpenter.sh/capacity-type": "spot"}),
    ]
    pools = {pool.name: pool for pool in inventory.build_inventory([], nodes, [])}
    assert set(pools) == {"h100-80gb-on-demand", "h100-80gb-spot"}
    on_demand, spot = pools["h100-80gb-on-demand"], pools["h100-80gb-spot"]
    assert (on_demand.nodes, on_demand.gpus, on_demand.available_gpus) == (1, 8, 8)
    assert (spot.nodes, spot.gpus, spot.available_gpus) == (1, 8, 8)
    assert sum(pool.gpus for pool in pools.values()) == 16
    # Its pods must avoid every node with a capacity-type label; the spot pool needs no such rule.
    assert on_demand.definition.excluded_label_keys == inventory.CAPACITY_LABELS
    assert spot.definition.excluded_label_keys == ()


def test_foreign_pods_on_a_spot_node_do_not_shrink_the_unlabelled_pool() -> None:
    nodes = [
        node("on-demand", H100_GFD),
        node("spot", H100_GFD | {"karpenter.sh/capacity-type": "spot"}),
    ]
    pools = {p.name: p for p in inventory.build_inventory([], nodes, pods(pod("spot", 3)))}
    assert pools["h100-80gb-on-demand"].allocated_gpus == 0
    assert pools["h100-80gb-on-demand"].available_gpus == 8
    assert pools["h100-80gb-spot"].available_gpus == 5


def test_a_pool_identified_by_a_later_capacity_key_excludes_the_earlier_ones() -> None:
    # A node's capacity type comes from the first configured key it carries: a pool found
    # through the EKS label (the last default key) must keep off nodes with an earlier one.
    nodes = [
        node("eks", H100_GFD | {"eks.amazonaws.com/capacityType": "SPOT"}),
        node(
            "both",
            H100_GFD
            | {"karpenter.sh/capacity-type": "on-demand", "eks.amazonaws.com/capacityType": "SPOT"},
        ),
    ]
    pools = {pool.name: pool for pool in inventory.build_inventory([], nodes, [])}
    assert pools["h100-80gb-spot"].nodes == 1
    assert pools["h100-80gb-spot"].definition.excluded_label_keys == (
        "karpenter.sh/capacity-type",
        "cloud.google.com/gke-spot",
    )
    assert pools["h100-80gb-on-demand"].nodes == 1


def test_excluded_keys_follow_the_configured_capacity_labels() -> None:
    settings = inventory.InventorySettings(capacity_type_labels=(CUSTOM_CAPACITY_LABEL,))
    nodes = [node("plain", H100_GFD), node("spot", H100_GFD | {CUSTOM_CAPACITY_LABEL: "spot"})]
    pools = {pool.name: pool for pool in inventory.build_inventory([], nodes, [], settings)}
    assert pools["h100-80gb-on-demand"].definition.excluded_label_keys == (CUSTOM_CAPACITY_LABEL,)
    assert pools["h100-80gb-on-demand"].gpus == 8


def test_gpupools_keep_plain_selector_semantics() -> None:
    # A GPUPool selecting by GPU type alone takes every matching node, labelled or not.
    nodes = [
        node("on-demand", H100_GFD),
        node("spot", H100_GFD | {"karpenter.sh/capacity-type": "spot"}),
    ]
    (pool,) = inventory.build_inventory([gpupool("all-h100", H100_GFD)], nodes, [])
    assert pool.nodes == 2 and pool.available_gpus == 16
    assert pool.definition.excluded_label_keys == ()


# -- taints and the pool's tolerations ---------------------------------------------------------


DEDICATED_TAINT = {"key": "dedicated", "value": "llm", "effect": "NoExecute"}


def test_a_gpupool_that_tolerates_its_dedicated_no_execute_taint_has_its_gpus() -> None:
    selector = {"pool": "dedicated"}
    nodes = [node("a", selector | H100_GFD, taints=[GPU_TAINT, DEDICATED_TAINT])]
    tolerating = gpupool(
        "dedicated",
        selector,
        tolerations=[
            {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoExecute"}
        ],
    )
    (pool,) = inventory.build_inventory([tolerating], nodes, [])
    assert pool.gpus == 8 and pool.available_gpus == 8
    # The same nodes behind a pool without the toleration: nothing to place.
    (plain,) = inventory.build_inventory([gpupool("plain", selector)], nodes, [])
    assert plain.available_gpus == 0


def test_a_draining_node_offers_no_gpus_to_a_gpupool() -> None:
    selector = {"karpenter.sh/nodepool": "h100-spot"}
    nodes = [
        node("a", selector | H100_GFD, taints=[GPU_TAINT]),
        node("draining", selector | H100_GFD, taints=[GPU_TAINT, DISRUPTED_TAINT]),
    ]
    (pool,) = inventory.build_inventory([gpupool("h100-spot", selector)], nodes, [])
    assert pool.nodes == 2 and pool.gpus == 16 and pool.available_gpus == 8


def test_the_simulated_fleet_gpu_taint_keeps_discovered_nodes_usable() -> None:
    nodes = [node("a", H100_GFD | {"karpenter.sh/capacity-type": "spot"}, taints=[GPU_TAINT])]
    (pool,) = inventory.build_inventory([], nodes, [])
    assert pool.available_gpus == 8


def test_node_records_keep_every_taint() -> None:
    record = node("a", H100_GFD, taints=[GPU_TAINT, DISRUPTED_TAINT])
    assert record.taints == (
        inventory.Taint("nvidia.com/gpu", "present", "NoSchedule"),
        inventory.Taint("karpenter.sh/disrupted", "", "NoSchedule"),
    )


SPOT_TAINT = inventory.Taint("karpenter.sh/spot", "true", "NoSchedule")


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        ({"key": "karpenter.sh/spot", "operator": "Exists"}, True),
        ({"key": "karpenter.sh/spot", "operator": "Exists", "effect": "NoSchedule"}, True),
        ({"key": "karpenter.sh/spot", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "karpenter.sh/spot", "operator": "Equal", "value": "true"}, True),
        ({"key": "karpenter.sh/spot", "value": "true"}, True),  # operator defaults to Equal
        ({"key": "karpenter.sh/spot", "operator": "Equal", "value": "false"}, False),
        ({"key": "karpenter.sh/spot"}, False),  # Equal to the empty value
        ({"key": "other", "operator": "Exists"}, False),
        ({"operator": "Exists"}, True),  # empty key with Exists tolerates everything
        ({"operator": "Exists", "effect": "NoExecute"}, False),
    ],
)
def test_toleration_matching_follows_kubernetes(
    toleration: dict[str, str], tolerated: bool
) -> None:
    assert inventory.tolerates(toleration, SPOT_TAINT) is tolerated


def test_a_tolerate_everything_pool_uses_tainted_nodes_but_not_cordoned_ones() -> None:
    selector = {"pool": "any"}
    nodes = [
        node("tainted", selector, taints=[DISRUPTED_TAINT, DEDICATED_TAINT]),
        node("cordoned", selector, unschedulable=True),
    ]
    (pool,) = inventory.build_inventory(
        [gpupool("any", selector, tolerations=[{"operator": "Exists"}])], nodes, []
    )
    assert pool.available_gpus == 8


def test_the_inventory_assumes_exactly_the_tolerations_the_pods_get() -> None:
    definition = inventory.pool_definition(
        gpupool("x", {"pool": "x"}, tolerations=[{"key": "dedicated", "operator": "Exists"}])
    )
    placement = manifests.PoolPlacement(
        name=definition.name,
        gpu_type=definition.gpu_type,
        capacity_type=definition.capacity_type,
        node_selector=definition.node_selector,
        tolerations=definition.tolerations,
    )
    service = LLMService.model_validate(
        {
            "metadata": {"name": "chat", "namespace": "ns"},
            "spec": {
                "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
                "workload": {"requestsPerSecond": "1"},
            },
        }
    )
    entry = PlanEntry(
        pool="x",
        gpu_type="H100-80GB",
        capacity_type="spot",
        tensor_parallel=1,
        weight_format="bf16",
        replicas=1,
        gpus=1,
        cost_per_hour=1.0,
        assignment={},
        capacity_rps={},
    )
    pod_spec = manifests.build_deployment(service, entry, placement)["spec"]["template"]["spec"]
    assert pod_spec["tolerations"] == [dict(t) for t in definition.pod_tolerations]
