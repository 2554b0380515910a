"""The fleet planner driven directly: real inventory, solver and reconcile logic against a fake
Kubernetes adapter and a fake clock, for behaviour that is slow or awkward to reach through kopf
(deadlines, API failures, backoff, namespaced inventory)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any

import pytest

from gpumix.operator import indexes, inventory
from gpumix.operator.kube import KubeError
from gpumix.operator.manifests import LABEL_NAME
from gpumix.operator.planner import FleetPlanner
from gpumix.operator.settings import OperatorConfig

NAMESPACE = "team-a"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


class FakeKube:
    """Children, status and events in memory; ``ready`` is what the Deployment controller says."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.ready: dict[str, int] = {}
        self.calls: list[tuple[str, ...]] = []
        self.statuses: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.apply_error: KubeError | None = None
        self.list_error: KubeError | None = None
        self.cluster_pods: list[dict[str, Any]] = []
        self.pods_error: KubeError | None = None
        self.pool_statuses: dict[str, dict[str, Any]] = {}

    def list_children(self, namespace: str, service_name: str) -> list[dict[str, Any]]:
        self.calls.append(("list", namespace, service_name))
        if self.list_error is not None:
            raise self.list_error
        found = []
        for (kind, obj_namespace, name), obj in self.objects.items():
            labels = obj["metadata"].get("labels") or {}
            if obj_namespace == namespace and labels.get("gpumix.io/service") == service_name:
                body = copy.deepcopy(obj)
                if kind == "Deployment":
                    body["status"] = {"readyReplicas": self.ready.get(name, 0)}
                found.append(body)
        return found

    def apply(self, obj: dict[str, Any]) -> str:
        self.calls.append(("apply", obj["kind"], obj["metadata"]["name"]))
        if self.apply_error is not None:
            raise self.apply_error
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        self.objects[key] = copy.deepcopy(obj)
        return "created"

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.calls.append(("delete", kind, name))
        self.objects.pop((kind, namespace, name), None)

    def patch_llmservice_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.calls.append(("status", name))
        merged = {**self.statuses.get(name, {}), **status}
        self.statuses[name] = {k: v for k, v in merged.items() if v is not None}

    def patch_gpupool_status(self, name: str, status: dict[str, Any]) -> None:
        self.calls.append(("pool-status", name))
        self.pool_statuses[name] = copy.deepcopy(status)

    def post_event(self, **event: Any) -> None:
        self.calls.append(("event", event["reason"]))
        self.events.append(event)

    def list_active_pods(self) -> list[dict[str, Any]]:
        self.calls.append(("list-pods",))
        if self.pods_error is not None:
            raise self.pods_error
        return copy.deepcopy(self.cluster_pods)

    def deployments(self) -> set[str]:
        """The vLLM Deployments (the plan's capacity), not the router's."""
        return {
            name
            for (kind, _, name), obj in self.objects.items()
            if kind == "Deployment" and obj["metadata"]["labels"].get(LABEL_NAME) == "vllm"
        }


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gpu_node(name: str, gpus: int = 4) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {
                "nvidia.com/gpu.product": "NVIDIA-L4",
                "karpenter.sh/capacity-type": "spot",
            },
        },
        "spec": {},
        "status": {
            "allocatable": {"nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def gpu_pod(name: str, namespace: str, node: str, gpus: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": gpus}}}],
        },
        "status": {"phase": "Running"},
    }


def llmservice(
    name: str = "chat", generation: int = 1, rps: str = "2", **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "gpumix.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "generation": generation,
        },
        "spec": {
            "model": {"name": MODEL, "maxModelLen": 4096},
            "workload": {"requestsPerSecond": rps},
            **spec,
        },
    }
    return body


class Fleet:
    """A planner over fake indices that the test edits the way the watches would."""

    def __init__(
        self,
        nodes: Sequence[dict[str, Any]],
        services: Sequence[dict[str, Any]],
        pods: Sequence[dict[str, Any]] = (),
        **config: Any,
    ) -> None:
        self.kube = FakeKube()
        self.clock = FakeClock()
        self.indices: dict[str, dict[None, list[Any]]] = {
            indexes.NODES_INDEX: {None: [inventory.node_record(node) for node in nodes]},
            indexes.PODS_INDEX: {None: [r for p in pods if (r := inventory.pod_record(p))]},
            indexes.SERVICES_INDEX: {None: []},
            indexes.POOLS_INDEX: {None: []},
        }
        self.services = list(services)
        settings = {"liveness_endpoint": None, "debounce_seconds": 0.0, **config}
        self.planner = FleetPlanner(
            OperatorConfig(**settings),
            self.kube,  # type: ignore[arg-type]
            self.indices,
            monotonic=self.clock,
        )

    def set_service(self, body: dict[str, Any]) -> None:
        """The LLMService as the watch delivers it: with the status last written."""
        name = body["metadata"]["name"]
        self.services = [s for s in self.services if s["metadata"]["name"] != name] + [body]

    async def run_pass(self, *, force: bool = False, seconds: float = 5.0) -> None:
        self.clock.now += seconds
        records = []
        for body in self.services:
            stored = self.kube.statuses.get(body["metadata"]["name"])
            records.append(indexes.service_record({**body, "status": stored or {}}))
        self.indices[indexes.SERVICES_INDEX] = {None: records}
        await self.planner.run_pass(force_solve=force)

    def mark_ready(self) -> None:
        for (kind, _, name), obj in self.kube.objects.items():
            if kind == "Deployment":
                self.kube.ready[name] = obj["spec"]["replicas"]

    def condition(self, kind: str, name: str = "chat") -> dict[str, Any]:
        conditions = self.kube.statuses.get(name, {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), {})


async def waits(planner: FleetPlanner, seconds: float = 0.3) -> bool:
    """Whether the planner loop would sleep (rather than start another pass at once)."""
    try:
        await asyncio.wait_for(planner._wait_for_work(), timeout=seconds)
    except TimeoutError:
        return True
    return False


# -- migration deadlines ------------------------------------------------------------------------


async def start_migration(fleet: Fleet) -> set[str]:
    """Plan, become ready, then change the spec so new Deployments replace the old ones."""
    await fleet.run_pass(force=True)
    old = fleet.kube.deployments()
    assert old
    fleet.mark_ready()
    await fleet.run_pass()
    moved = llmservice(generation=2)
    moved["spec"]["model"]["weightFormats"] = ["fp8"]
    fleet.set_service(moved)
    await fleet.run_pass()
    assert fleet.kube.deployments() > old, "the new plan's Deployments start beside the old"
    assert fleet.condition("Progressing")["status"] == "True"
    assert fleet.planner.state.clocks
    return old


async def test_infeasible_spec_mid_migration_does_not_spin_the_loop() -> None:
    fleet = Fleet([gpu_node("l4-1"), gpu_node("l4-2")], [llmservice()])
    await start_migration(fleet)

    # The user makes the spec infeasible while the new Deployments are still starting.
    broken = llmservice(generation=3, budget={"maxCostPerHour": "0.01"})
    broken["spec"]["model"]["weightFormats"] = ["fp8"]
    fleet.set_service(broken)
    await fleet.run_pass()
    assert fleet.condition("Feasible")["reason"] == "BudgetTooSmall"

    # Long past the migration deadline, nothing is due but the periodic re-plan.
    fleet.clock.now += 10 * fleet.planner.config.migration_timeout_seconds
    fleet.planner.state.next_periodic = fleet.clock.now + 60
    for _ in range(3):
        calls = len(fleet.kube.calls)
        assert await waits(fleet.planner), "a pass would start with nothing to do"
        await fleet.run_pass(seconds=0.0)
        assert len(fleet.kube.calls) - calls <= 2, fleet.kube.calls[calls:]


async def test_deadline_already_acted_on_is_not_waited_for_again() -> None:
    fleet = Fleet([gpu_node("l4-1"), gpu_node("l4-2")], [llmservice()])
    await start_migration(fleet)
    # The deadline passes while listing the children fails: the clock stays, stale.
    fleet.clock.now += 10 * fleet.planner.config.migration_timeout_seconds
    fleet.kube.list_error = KubeError("list Deployments in team-a", 0, "connection reset")
    await fleet.run_pass(seconds=0.0)
    assert fleet.planner.state.clocks
    fleet.planner.state.next_periodic = fleet.clock.now + 60
    assert await waits(fleet.planner)


def unschedulable_pod(name: str, deployment: str) -> dict[str, Any]:
    """A pending pod of one of gpumix's Deployments, as the scheduler leaves it."""
    pod = gpu_pod(name, NAMESPACE, node="", gpus=1)
    pod["metadata"]["labels"] = {
        "app.kubernetes.io/managed-by": "gpumix",
        "gpumix.io/deployment": deployment,
    }
    pod["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
            }
        ],
    }
    return pod


async def test_a_stalled_migration_keeps_what_serves_and_re_plans_around_the_pool() -> None:
    fleet = Fleet([gpu_node("l4-1"), gpu_node("l4-2")], [llmservice()])
    old = await start_migration(fleet)
    (new,) = fleet.kube.deployments() - old
    pending = inventory.pod_record(unschedulable_pod(f"{new}-abc", new))
    fleet.indices[indexes.PODS_INDEX] = {None: [pending]}
    await fleet.run_pass()
    progressing = fleet.condition("Progressing")
    assert progressing["reason"] == "Migrating"
    assert f"{new}: its pods cannot be scheduled: 0/2 nodes" in progressing["message"]
    assert "Insufficient nvidia.com/gpu" in fleet.condition("Ready")["message"]

    # The deadline wakes the planner; the old Deployment still serves, so it stays.
    clock = next(iter(fleet.planner.state.clocks.values()))
    fleet.planner.state.next_periodic = clock.deadline + 3600
    assert fleet.planner.wait_timeout() == pytest.approx(clock.deadline - fleet.clock.now)
    await fleet.run_pass(seconds=clock.deadline - fleet.clock.now)
    assert old <= fleet.kube.deployments()
    (stalled,) = warnings(fleet.kube, "MigrationStalled")
    assert new in stalled and "without pool l4-spot" in stalled and "Insufficient" in stalled
    assert not await waits(fleet.planner), "the re-plan is due at once"

    # The re-plan leaves l4-spot out for the new configurations. The spec now allows only
    # fp8, which no other pool offers: no plan, and the running one is kept, untouched.
    await fleet.run_pass(seconds=0.0)
    feasible = fleet.condition("Feasible")
    assert feasible["status"] == "False" and feasible["reason"] == "NoCapacity"
    assert "pool l4-spot is left out for now (its pods cannot be scheduled" in feasible["message"]
    assert old <= fleet.kube.deployments()
    assert len(warnings(fleet.kube, "MigrationStalled")) == 1

    # New nodes in the pool end the block: the plan is tried again.
    fleet.indices[indexes.NODES_INDEX][None].append(inventory.node_record(gpu_node("l4-3")))
    await fleet.run_pass(force=True)
    assert fleet.condition("Feasible")["status"] == "True"


# -- writes the API refuses ---------------------------------------------------------------------

DENIED = KubeError(
    "create Deployment team-a",
    403,
    'admission webhook "quota.example.com" denied the request: team-a may not use GPUs',
)


def applies(kube: FakeKube) -> int:
    return sum(1 for call in kube.calls if call[0] == "apply")


def warnings(kube: FakeKube, reason: str) -> list[str]:
    return [
        e["message"] for e in kube.events if e["reason"] == reason and e["event_type"] == "Warning"
    ]


async def test_refused_apply_is_reported_in_status_and_one_event() -> None:
    fleet = Fleet([gpu_node("l4-1")], [llmservice()])
    fleet.kube.apply_error = DENIED
    await fleet.run_pass(force=True)

    ready = fleet.condition("Ready")
    assert ready["status"] == "False" and ready["reason"] == "ApplyFailed"
    assert "team-a may not use GPUs" in ready["message"] and "HTTP 403" in ready["message"]
    assert ready["observedGeneration"] == 1
    progressing = fleet.condition("Progressing")
    assert progressing["status"] == "False" and progressing["reason"] == "ApplyFailed"
    assert fleet.kube.statuses["chat"]["observedGeneration"] == 1
    assert len(warnings(fleet.kube, "ApplyFailed")) == 1
    assert "team-a may not use GPUs" in warnings(fleet.kube, "ApplyFailed")[0]

    # Wake-ups during the backoff neither retry the writes nor repeat the event.
    tried = applies(fleet.kube)
    for _ in range(4):
        await fleet.run_pass(seconds=1.0)
    assert applies(fleet.kube) == tried
    assert fleet.condition("Ready")["reason"] == "ApplyFailed"
    # The loop sleeps until the retry is due, then tries again (still refused: one event).
    assert fleet.planner.wait_timeout() == pytest.approx(1.0)
    await fleet.run_pass(seconds=1.0)
    assert applies(fleet.kube) == tried + 1
    assert len(warnings(fleet.kube, "ApplyFailed")) == 1
    # The second refusal doubles the wait.
    await fleet.run_pass(seconds=6.0)
    assert applies(fleet.kube) == tried + 1
    await fleet.run_pass(seconds=5.0)
    assert applies(fleet.kube) == tried + 2

    # Once the API accepts, the children exist and the status says so.
    fleet.kube.apply_error = None
    await fleet.run_pass(seconds=30.0)
    assert fleet.kube.deployments()
    assert fleet.condition("Ready")["reason"] == "ReplicasNotReady"
    assert fleet.condition("Progressing")["reason"] != "ApplyFailed"
    assert not fleet.planner.state.apply_failures


async def test_refused_apply_is_retried_at_once_for_a_new_spec() -> None:
    fleet = Fleet([gpu_node("l4-1")], [llmservice()])
    fleet.kube.apply_error = DENIED
    await fleet.run_pass(force=True)
    tried = applies(fleet.kube)
    fleet.set_service(llmservice(generation=2, rps="8"))
    await fleet.run_pass(seconds=0.5)
    assert applies(fleet.kube) > tried
    assert fleet.condition("Ready")["observedGeneration"] == 2


async def test_refused_apply_does_not_stop_other_services() -> None:
    fleet = Fleet([gpu_node("l4-1"), gpu_node("l4-2")], [llmservice("chat"), llmservice("rag")])
    original = fleet.kube.apply

    def refuse_chat(obj: dict[str, Any]) -> str:
        if obj["metadata"]["labels"].get("gpumix.io/service") == "chat":
            raise DENIED
        return original(obj)

    fleet.kube.apply = refuse_chat  # type: ignore[method-assign]
    await fleet.run_pass(force=True)
    assert fleet.condition("Ready", "chat")["reason"] == "ApplyFailed"
    assert fleet.condition("Ready", "rag")["reason"] == "ReplicasNotReady"
    assert any(name.startswith("rag") for name in fleet.kube.deployments())


# -- namespaced mode: GPUs held in namespaces kopf does not watch ---------------------------------


def available_gpus(fleet: Fleet, pool: str = "l4-spot") -> int:
    outcome = next(iter(fleet.planner.state.outcomes.values()))
    return outcome.pool_facts[pool].available_gpus


async def test_namespaced_mode_counts_gpu_pods_of_other_namespaces() -> None:
    # Five single-GPU replicas fit on two 4-GPU nodes only if nobody else uses them.
    service = llmservice(placement={"minReplicas": 5, "tensorParallelSizes": [1]})
    watched = gpu_pod("train", NAMESPACE, "l4-2", 1)
    fleet = Fleet(
        [gpu_node("l4-1"), gpu_node("l4-2")], [service], pods=[watched], namespaces=(NAMESPACE,)
    )
    # Another team's job, invisible to kopf's namespaced pods index; the watched pod is
    # listed too and must be counted once.
    fleet.kube.cluster_pods = [gpu_pod("finetune", "ml-research", "l4-1", 4), watched]
    await fleet.run_pass(force=True)

    assert available_gpus(fleet) == 3
    feasible = fleet.condition("Feasible")
    assert feasible["status"] == "False" and feasible["reason"] == "NoCapacity", feasible
    assert not fleet.kube.deployments()

    # The job ends: the next pass sees the GPUs free and plans.
    fleet.kube.cluster_pods = [watched]
    await fleet.run_pass(force=True)
    assert available_gpus(fleet) == 7
    assert fleet.condition("Feasible")["status"] == "True"


async def test_namespaced_mode_keeps_the_last_pod_list_when_listing_fails() -> None:
    fleet = Fleet([gpu_node("l4-1"), gpu_node("l4-2")], [llmservice()], namespaces=(NAMESPACE,))
    fleet.kube.cluster_pods = [gpu_pod("finetune", "ml-research", "l4-1", 4)]
    await fleet.run_pass(force=True)
    assert available_gpus(fleet) == 4
    fleet.kube.pods_error = KubeError("list Pods in all namespaces", 0, "connection reset")
    await fleet.run_pass(force=True)
    assert available_gpus(fleet) == 4


async def test_clusterwide_mode_reads_pods_from_the_index_only() -> None:
    fleet = Fleet(
        [gpu_node("l4-1"), gpu_node("l4-2")],
        [llmservice()],
        pods=[gpu_pod("finetune", "ml-research", "l4-1", 4)],
    )
    await fleet.run_pass(force=True)
    assert ("list-pods",) not in fleet.kube.calls
    assert available_gpus(fleet) == 4


# -- discovered pools ---------------------------------------------------------------------------


async def test_pods_of_an_unlabelled_discovered_pool_stay_off_labelled_spot_nodes() -> None:
    # No GPUPools: an L4 node without a capacity label (on-demand) and a labelled spot L4.
    # The on-demand pool's selector alone would also match the spot node, so its pods must
    # refuse nodes that carry a capacity-type label.
    on_demand = gpu_node("l4-plain")
    del on_demand["metadata"]["labels"]["karpenter.sh/capacity-type"]
    fleet = Fleet(
        [on_demand, gpu_node("l4-spot")],
        [llmservice(placement={"capacityTypes": ["on-demand"], "minReplicas": 1})],
    )
    await fleet.run_pass(force=True)

    deployments = [
        fleet.kube.objects[("Deployment", "team-a", name)] for name in fleet.kube.deployments()
    ]
    assert deployments, fleet.kube.statuses
    for deployment in deployments:
        affinity = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        keys = {(e["key"], e["operator"]) for term in terms for e in term["matchExpressions"]}
        assert ("karpenter.sh/capacity-type", "DoesNotExist") in keys


# -- the router --------------------------------------------------------------------------------


async def test_the_entry_service_moves_to_the_router_only_once_a_router_pod_is_ready() -> None:
    fleet = Fleet([gpu_node("l4-1")], [llmservice()])
    await fleet.run_pass(force=True)
    kinds = {kind for kind, _, _ in fleet.kube.objects}
    assert {"ServiceAccount", "Role", "RoleBinding", "PodDisruptionBudget"} <= kinds
    entry = fleet.kube.objects[("Service", NAMESPACE, "chat")]
    # the router is not ready yet: clients still reach the vLLM pods directly
    assert entry["spec"]["selector"]["app.kubernetes.io/name"] == "vllm"

    fleet.kube.ready["chat-router"] = 1
    await fleet.run_pass()
    entry = fleet.kube.objects[("Service", NAMESPACE, "chat")]
    assert entry["spec"]["selector"] == {
        "app.kubernetes.io/name": "gpumix-router",
        "gpumix.io/service": "chat",
    }


async def test_a_defect_planning_one_service_is_its_condition_and_the_others_are_planned() -> None:
    from gpumix.operator.planner import default_demand_builder

    def crashing_for_bad(resource: Any, hardware: Any, current: Any, admission: Any) -> Any:
        if resource.metadata.name == "bad":
            raise IndexError("list index out of range")
        return default_demand_builder(resource, hardware, current, admission)

    fleet = Fleet([gpu_node("l4-1"), gpu_node("l4-2")], [llmservice("bad"), llmservice("good")])
    fleet.planner.demand_builder = crashing_for_bad
    await fleet.run_pass(force=True)
    bad = fleet.condition("Feasible", "bad")
    assert (bad["status"], bad["reason"]) == ("False", "InvalidSpec")
    assert "IndexError" in bad["message"]
    assert fleet.condition("Feasible", "good")["status"] == "True"
    assert any(name.startswith("good-") for name in fleet.kube.deployments())


# -- GPUPool conditions ------------------------------------------------------------------------


def gpupool(name: str, gpu_type: str) -> dict[str, Any]:
    return {
        "apiVersion": "gpumix.io/v1alpha1",
        "kind": "GPUPool",
        "metadata": {"name": name, "generation": 1},
        "spec": {"gpuType": gpu_type, "nodeSelector": {"karpenter.sh/nodepool": name}},
    }


async def test_a_gpupool_of_an_unknown_gpu_type_says_it_is_left_out_and_why() -> None:
    fleet = Fleet([gpu_node("l4-1")], [llmservice()])
    fleet.indices[indexes.POOLS_INDEX] = {
        None: [indexes.pool_record(gpupool("mystery", "B300-288GB"))]
    }
    await fleet.run_pass(force=True)
    written = fleet.kube.pool_statuses["mystery"]
    condition = next(c for c in written["conditions"] if c["type"] == "Plannable")
    assert (condition["status"], condition["reason"]) == ("False", "UnknownGPUType")
    assert "B300-288GB" in condition["message"] and "spec.gpu" in condition["message"]

    # the same answer on the next pass is not written again
    fleet.indices[indexes.POOLS_INDEX] = {
        None: [indexes.pool_record({**gpupool("mystery", "B300-288GB"), "status": written})]
    }
    writes = len(fleet.kube.calls)
    await fleet.run_pass(force=True)
    assert ("pool-status", "mystery") not in fleet.kube.calls[writes:]


async def test_a_pool_reserved_for_another_team_waits_until_the_namespace_is_admitted() -> None:
    fleet = Fleet([gpu_node("l4-1"), gpu_node("l4-2")], [llmservice()])
    reserved = gpupool("l4-team-b", "L4")
    reserved["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-L4"}
    reserved["spec"]["capacityType"] = "spot"
    reserved["spec"]["namespaceSelector"] = {"matchLabels": {"team": "b"}}
    fleet.indices[indexes.POOLS_INDEX] = {None: [indexes.pool_record(reserved)]}
    fleet.indices[indexes.NAMESPACES_INDEX] = {None: [(NAMESPACE, {"team": "a"})]}
    await fleet.run_pass(force=True)
    feasible = fleet.condition("Feasible")
    assert feasible["status"] == "False" and feasible["reason"] == "NoCapacity"
    assert f"no GPUPool admits namespace {NAMESPACE}" in feasible["message"]
    assert "l4-team-b: team=b" in feasible["message"]
    assert not fleet.kube.deployments()

    # The namespace joins team b: the next pass plans it onto the pool.
    fleet.indices[indexes.NAMESPACES_INDEX] = {None: [(NAMESPACE, {"team": "b"})]}
    await fleet.run_pass(force=True)
    assert fleet.condition("Feasible")["status"] == "True"
    assert fleet.kube.deployments()
