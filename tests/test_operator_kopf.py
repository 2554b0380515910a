"""The operator end to end against kmock, an in-process Kubernetes API emulator.

kopf runs in a background thread (KopfRunner) with the registry `gpumix operator` uses, against
kmock's HTTP server on 127.0.0.1; the kubeconfig points both kopf and the kubernetes client at it.
The solver and the planning glue are real: the fleet is small enough to solve in well under a
second.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import yaml
from kmock._internal import parsing as kmock_parsing
from kopf.testing import KopfRunner

from gpumix.operator.inventory import InventorySettings
from gpumix.operator.kube import Kube
from gpumix.operator.main import build_registry, make_api_client
from gpumix.operator.settings import OperatorConfig

LLMSERVICES = "gpumix.io/v1alpha1/llmservices"
GPUPOOLS = "gpumix.io/v1alpha1/gpupools"
DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"
NODES = "v1/nodes"
EVENTS = "v1/events"
NAMESPACE = "team-a"

CONFIG = OperatorConfig(
    liveness_endpoint=None,
    planner_interval_seconds=3600,
    debounce_seconds=0.1,
    solver_time_limit_seconds=20,
    migration_timeout_seconds=3600,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")


def gpu_node(name: str, product: str = "NVIDIA-L4", gpus: int = 1, spot: bool = True) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "nvidia.com/gpu.product": product,
                "karpenter.sh/capacity-type": "spot" if spot else "on-demand",
            },
        },
        "spec": {},
        "status": {
            "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "16", "memory": "64Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def llmservice(name: str = "chat", rps: str = "1", **spec: Any) -> dict:
    return {
        "apiVersion": "gpumix.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "generation": 1,
        },
        "spec": {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "maxModelLen": 4096},
            "workload": {"requestsPerSecond": rps},
            **spec,
        },
    }


@pytest.fixture
def cluster(kmock: kmock.KubernetesEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    kmock.resources.load_bundled()
    kmock.resources[LLMSERVICES] = kmock.ResourceInfo(
        kind="LLMService",
        singular="llmservice",
        namespaced=True,
        verbs={"list", "watch", "get", "patch", "update", "create", "delete"},
        subresources={"status"},
    )
    kmock.resources[GPUPOOLS] = kmock.ResourceInfo(
        kind="GPUPool",
        singular="gpupool",
        namespaced=False,
        verbs={"list", "watch", "get", "patch", "update", "create", "delete"},
        subresources={"status"},
    )
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "kmock", "user": {"token": "test"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
        "current-context": "kmock",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # kmock stores a created object as sent; an API server gives it a uid. kopf keys its
    # indices by (namespace, name, uid), so without uids a Deployment and a Service of the
    # same name would be one object to it.
    create = Kube._create

    def create_with_uid(self: Kube, kind: str, namespace: str, body: Any) -> None:
        metadata = {**body["metadata"], "uid": str(uuid.uuid4())}
        create(self, kind, namespace, {**body, "metadata": metadata})

    monkeypatch.setattr(Kube, "_create", create_with_uid)
    # kmock's path parser takes a bare /api/v1/namespaces for the prefix of a namespaced path
    # and fails; an API server lists the (cluster-scoped) Namespaces there.
    parse = kmock_parsing.parse_path

    def parse_namespace_list(path: str) -> kmock_parsing.ParsedPath:
        if path.strip("/") == "api/v1/namespaces":
            return kmock_parsing.ParsedPath("", "v1", "namespaces")
        return parse(path)

    monkeypatch.setattr(kmock_parsing, "parse_path", parse_namespace_list)
    return kmock


def objects(cluster: kmock.KubernetesEmulator, resource: str) -> dict[str, dict]:
    found = {}
    for (res, _namespace, name), obj in cluster.objects.items():
        if res == kmock.resource(resource) and not obj.deleted:
            found[name] = copy.deepcopy(dict(obj.raw))
    return found


def vllm_deployments(cluster: kmock.KubernetesEmulator) -> dict[str, dict]:
    """The plan's Deployments; the router's Deployment is left out (kmock cannot replace the
    entry Service that a ready router would take over: it has no PUT)."""
    return {
        name: deployment
        for name, deployment in objects(cluster, DEPLOYMENTS).items()
        if deployment["metadata"]["labels"].get("app.kubernetes.io/name") == "vllm"
    }


def condition(service: dict, kind: str) -> dict:
    for entry in (service.get("status") or {}).get("conditions", []):
        if entry["type"] == kind:
            return entry
    return {}


async def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (KeyError, AssertionError, IndexError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


def runner(config: OperatorConfig = CONFIG) -> KopfRunner:
    return KopfRunner(
        ["run", "--standalone", "--all-namespaces"],
        registry=build_registry(config),
        timeout=30,
    )


def writes(cluster: kmock.KubernetesEmulator) -> list[str]:
    return [
        f"{request.method} {request.url.path}"
        for request in list(cluster)
        if str(request.method).lower().endswith(("post", "put", "patch", "delete"))
    ]


def events(cluster: kmock.KubernetesEmulator, reason: str) -> list[str]:
    return [e["message"] for e in objects(cluster, EVENTS).values() if e["reason"] == reason]


async def api(cluster: kmock.KubernetesEmulator, method: str, path: str, body: Any = None) -> None:
    """A write as kubectl (or a controller) would make it: through the API, so watches see it."""
    async with (
        aiohttp.ClientSession(base_url=str(cluster.url)) as session,
        session.request(method, path, json=body) as response,
    ):
        assert response.status < 400, await response.text()


async def mark_ready(cluster: kmock.KubernetesEmulator) -> None:
    """What the Deployment controller does once every pod passes its readiness probe."""
    for name, deployment in vllm_deployments(cluster).items():
        replicas = deployment["spec"]["replicas"]
        status = {"status": {"replicas": replicas, "readyReplicas": replicas}}
        path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}/status"
        await api(cluster, "PATCH", path, status)


async def update_spec(cluster: kmock.KubernetesEmulator, name: str, spec: dict) -> None:
    current = objects(cluster, LLMSERVICES)[name]
    generation = current["metadata"]["generation"] + 1
    body = {"metadata": {"generation": generation}, "spec": spec}
    await api(
        cluster,
        "PATCH",
        f"/apis/gpumix.io/v1alpha1/namespaces/{NAMESPACE}/llmservices/{name}",
        body,
    )


def status_of(cluster: kmock.KubernetesEmulator, name: str = "chat") -> dict:
    return objects(cluster, LLMSERVICES)[name].get("status") or {}


def when(
    predicate: Callable[[dict], bool], name: str = "chat"
) -> Callable[[kmock.KubernetesEmulator], dict | None]:
    def check(cluster: kmock.KubernetesEmulator) -> dict | None:
        status = status_of(cluster, name)
        return status if status and predicate(status) else None

    return check


def cond(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


async def test_create_plans_reconciles_and_reports_readiness(
    cluster: kmock.KubernetesEmulator,
) -> None:
    cluster.objects[NODES, None, "l4-a"] = gpu_node("l4-a")
    cluster.objects[NODES, None, "l4-b"] = gpu_node("l4-b")
    cluster.objects[LLMSERVICES, NAMESPACE, "chat"] = llmservice()

    with runner():
        planned = await eventually(
            lambda: when(lambda s: cond(s, "Planned").get("status") == "True")(cluster)
        )
        assert cond(planned, "Feasible")["status"] == "True"
        assert cond(planned, "Ready")["status"] == "False"
        assert planned["plan"], planned
        entry = planned["plan"][0]
        assert entry["pool"] == "l4-spot" and entry["gpuType"] == "L4"
        desired = sum(e["replicas"] for e in planned["plan"])
        assert planned["replicas"] == f"0/{desired}"
        deployments = vllm_deployments(cluster)
        assert set(deployments) == {e["deployment"] for e in planned["plan"]}
        services = objects(cluster, SERVICES)
        assert "chat" in services and entry["deployment"] in services
        owner = deployments[entry["deployment"]]["metadata"]["ownerReferences"][0]
        assert owner["uid"] == "uid-chat" and owner["kind"] == "LLMService"
        changed = events(cluster, "PlanChanged")
        assert len(changed) == 1, changed
        assert changed[0].startswith("planned L4/spot ×") and changed[0].endswith("first plan")

        await mark_ready(cluster)
        ready = await eventually(
            lambda: when(lambda s: cond(s, "Ready").get("status") == "True")(cluster)
        )
        assert ready["replicas"] == f"{desired}/{desired}"
        assert ready["plan"][0]["readyReplicas"] == entry["replicas"]
    # kopf bookkeeping stays out of status and annotations: the schema is structural.
    service = objects(cluster, LLMSERVICES)["chat"]
    assert "kopf" not in service.get("status", {})
    assert not any("kopf" in key for key in service["metadata"].get("annotations", {}))


async def test_update_migrates_make_before_break(cluster: kmock.KubernetesEmulator) -> None:
    cluster.objects[NODES, None, "l4-a"] = gpu_node("l4-a")
    cluster.objects[NODES, None, "a100-a"] = gpu_node(
        "a100-a", product="NVIDIA-A100-SXM4-80GB", spot=False
    )
    cluster.objects[LLMSERVICES, NAMESPACE, "chat"] = llmservice(placement={"gpuTypes": ["L4"]})

    with runner():
        first = await eventually(lambda: when(lambda s: bool(s.get("plan")))(cluster))
        old_names = {e["deployment"] for e in first["plan"]}
        await mark_ready(cluster)
        await eventually(lambda: when(lambda s: cond(s, "Ready").get("status") == "True")(cluster))

        await update_spec(cluster, "chat", {"placement": {"gpuTypes": ["A100-80GB"]}})
        moving = await eventually(
            lambda: when(lambda s: cond(s, "Progressing").get("status") == "True")(cluster)
        )
        new_names = {e["deployment"] for e in moving["plan"]}
        assert new_names.isdisjoint(old_names)
        assert all(e["gpuType"] == "A100-80GB" for e in moving["plan"])
        # Make before break: the old Deployment serves until the new one is ready.
        assert old_names | new_names <= set(vllm_deployments(cluster))
        changed = events(cluster, "PlanChanged")
        assert any(
            "L4/spot" in m and "A100-80GB/on-demand" in m and "spec changed (generation 1 → 2)" in m
            for m in changed
        ), changed

        await mark_ready(cluster)
        await eventually(lambda: set(vllm_deployments(cluster)) == new_names)
        done = await eventually(
            lambda: when(lambda s: cond(s, "Progressing").get("status") == "False")(cluster)
        )
        assert cond(done, "Ready")["status"] == "True"
        assert not old_names & set(objects(cluster, SERVICES))


async def test_infeasible_update_keeps_last_good_plan(cluster: kmock.KubernetesEmulator) -> None:
    cluster.objects[NODES, None, "l4-a"] = gpu_node("l4-a")
    cluster.objects[LLMSERVICES, NAMESPACE, "chat"] = llmservice()

    with runner():
        first = await eventually(lambda: when(lambda s: bool(s.get("plan")))(cluster))
        await update_spec(cluster, "chat", {"budget": {"maxCostPerHour": "0.01"}})
        kept = await eventually(
            lambda: when(lambda s: cond(s, "Feasible").get("status") == "False")(cluster)
        )
    feasible = cond(kept, "Feasible")
    assert feasible["reason"] == "BudgetTooSmall"
    assert feasible["message"]
    assert feasible["observedGeneration"] == 2
    assert cond(kept, "Planned")["reason"] == "LastGoodPlanKept"
    assert kept["plan"] == first["plan"]
    assert set(vllm_deployments(cluster)) == {e["deployment"] for e in first["plan"]}
    assert events(cluster, "BudgetTooSmall")


async def test_invalid_spec_is_reported_and_does_not_block_others(
    cluster: kmock.KubernetesEmulator,
) -> None:
    cluster.objects[NODES, None, "l4-a"] = gpu_node("l4-a")
    cluster.objects[NODES, None, "l4-b"] = gpu_node("l4-b")
    bad = llmservice("bad")
    bad["spec"]["model"] = {"name": "acme/unknown-model-7b"}
    cluster.objects[LLMSERVICES, NAMESPACE, "bad"] = bad
    cluster.objects[LLMSERVICES, NAMESPACE, "chat"] = llmservice()

    with runner():
        good = await eventually(lambda: when(lambda s: bool(s.get("plan")))(cluster))
        invalid = await eventually(
            lambda: when(lambda s: cond(s, "Feasible").get("status") == "False", "bad")(cluster)
        )
    assert cond(good, "Feasible")["status"] == "True"
    assert cond(invalid, "Feasible")["reason"] == "InvalidSpec"
    assert "unknown-model" in cond(invalid, "Feasible")["message"]
    assert cond(invalid, "Ready")["status"] == "False"
    assert not any(name.startswith("bad") for name in vllm_deployments(cluster))


async def test_an_owned_vllm_argument_is_an_invalid_spec_naming_field_and_argument(
    cluster: kmock.KubernetesEmulator,
) -> None:
    cluster.objects[NODES, None, "l4-a"] = gpu_node("l4-a")
    cluster.objects[LLMSERVICES, NAMESPACE, "bad"] = llmservice(
        "bad",
        serving={"extraArgs": ["--enable-prefix-caching", "--tensor-parallel-size", "8"]},
    )
    cluster.objects[LLMSERVICES, NAMESPACE, "chat"] = llmservice()

    with runner():
        await eventually(lambda: when(lambda s: bool(s.get("plan")))(cluster))
        invalid = await eventually(
            lambda: when(lambda s: cond(s, "Feasible").get("status") == "False", "bad")(cluster)
        )
    feasible = cond(invalid, "Feasible")
    assert feasible["reason"] == "InvalidSpec"
    assert (
        "spec.serving.extraArgs[1]: --tensor-parallel-size is set by gpumix from the plan"
        in feasible["message"]
    )
    assert not any(name.startswith("bad") for name in vllm_deployments(cluster))


async def test_infeasible_from_the_start_creates_nothing(cluster: kmock.KubernetesEmulator) -> None:
    cluster.objects[NODES, None, "l4-a"] = gpu_node("l4-a")
    cluster.objects[LLMSERVICES, NAMESPACE, "chat"] = llmservice(
        rps="20", placement={"maxReplicas": 1000}
    )

    with runner():
        status = await eventually(
            lambda: when(lambda s: cond(s, "Feasible").get("status") == "False")(cluster)
        )
    assert cond(status, "Feasible")["reason"] == "NoCapacity", cond(status, "Feasible")
    assert cond(status, "Planned")["status"] == "False"
    assert objects(cluster, DEPLOYMENTS) == {}


async def test_delete_leaves_children_to_the_garbage_collector(
    cluster: kmock.KubernetesEmulator,
) -> None:
    cluster.objects[NODES, None, "l4-a"] = gpu_node("l4-a")
    cluster.objects[LLMSERVICES, NAMESPACE, "chat"] = llmservice()

    with runner():
        planned = await eventually(lambda: when(lambda s: bool(s.get("plan")))(cluster))
        await api(
            cluster, "DELETE", f"/apis/gpumix.io/v1alpha1/namespaces/{NAMESPACE}/llmservices/chat"
        )
        await asyncio.sleep(1.0)
        before = len(writes(cluster))
        await asyncio.sleep(1.0)
        after = len(writes(cluster))
    assert "chat" not in objects(cluster, LLMSERVICES)
    # No finalizer to remove and nothing left to write: owner references do the rest.
    assert after == before
    for name in (e["deployment"] for e in planned["plan"]):
        owners = vllm_deployments(cluster)[name]["metadata"]["ownerReferences"]
        assert owners[0]["uid"] == "uid-chat" and owners[0]["controller"] is True


async def test_restart_writes_nothing_when_nothing_changed(
    cluster: kmock.KubernetesEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.objects[NODES, None, "l4-a"] = gpu_node("l4-a")
    cluster.objects[NODES, None, "l4-b"] = gpu_node("l4-b")
    cluster.objects[LLMSERVICES, NAMESPACE, "chat"] = llmservice()

    with runner():
        await eventually(lambda: when(lambda s: bool(s.get("plan")))(cluster))
        await mark_ready(cluster)
        await eventually(lambda: when(lambda s: cond(s, "Ready").get("status") == "True")(cluster))
        await asyncio.sleep(0.5)
    before = len(writes(cluster))
    passes_before = planning_passes(caplog)

    with runner():
        # Wait until the second operator has planned (its reconcile follows in the same pass,
        # reading the children from its indices) and then some.
        await eventually(lambda: planning_passes(caplog) > passes_before)
        await asyncio.sleep(1.0)
    assert writes(cluster)[before:] == []


def planning_passes(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for record in caplog.records if record.getMessage().startswith("planned "))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def scrape_until(port: int, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
            if needle in text:
                return text
            await asyncio.sleep(0.1)
    raise AssertionError(f"{needle!r} never appeared in /metrics:\n{text}")


async def test_configured_prices_are_planned_with_and_metrics_report_them(
    cluster: kmock.KubernetesEmulator,
) -> None:
    # What the Helm chart's pricing.defaults and metrics.port become inside the operator.
    port = free_port()
    config = dataclasses.replace(
        CONFIG, metrics_port=port, inventory=InventorySettings(prices={("L4", "spot"): 0.61})
    )
    cluster.objects[NODES, None, "l4-a"] = gpu_node("l4-a")
    cluster.objects[NODES, None, "l4-b"] = gpu_node("l4-b")
    cluster.objects[LLMSERVICES, NAMESPACE, "chat"] = llmservice()

    with runner(config):
        planned = await eventually(lambda: when(lambda s: bool(s.get("plan")))(cluster))
        gpus = sum(entry["gpus"] for entry in planned["plan"])
        assert planned["costPerHour"] == f"{gpus * 0.61:.2f}", planned
        service = 'gpumix_llmservice_cost_dollars_per_hour{name="chat",namespace="team-a"}'
        text = await scrape_until(port, service)
    pool = '{capacity_type="spot",gpu_type="L4",pool="l4-spot"}'
    assert f"{service} {float(planned['costPerHour'])}" in text
    assert f"gpumix_pool_available_gpus{pool} 2.0" in text
    assert f"gpumix_pool_price_dollars_per_gpu_hour{pool} 0.61" in text
    desired = sum(entry["replicas"] for entry in planned["plan"])
    assert (
        f'gpumix_llmservice_desired_replicas{{name="chat",namespace="team-a"}} {desired}.0' in text
    )
    assert 'gpumix_llmservice_feasible{name="chat",namespace="team-a"} 1.0' in text
    assert re.search(
        r'^gpumix_planner_solves_total\{status="(Optimal|Feasible)"\} [1-9]', text, re.M
    )


class PassCounter(logging.Handler):
    """Counts the planner's passes from its debug log line (one per pass)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("planning pass"):
            self.count += 1


@pytest.fixture
def passes() -> Iterator[PassCounter]:
    counter = PassCounter()
    planner_logger = logging.getLogger("gpumix.operator.planner")
    level = planner_logger.level
    planner_logger.setLevel(logging.DEBUG)
    planner_logger.addHandler(counter)
    yield counter
    planner_logger.removeHandler(counter)
    planner_logger.setLevel(level)


def pod(name: str, gpus: int = 0, node: str = "l4-a") -> dict:
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {"requests": {"cpu": "1"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": "busybox", "resources": resources}],
        },
        "status": {"phase": "Running"},
    }


async def settled(passes: PassCounter) -> int:
    """The pass count once the planner has gone quiet."""
    count = passes.count
    while True:
        await asyncio.sleep(0.6)
        if passes.count == count:
            return count
        count = passes.count


async def test_only_gpu_pods_and_gpu_nodes_wake_the_planner(
    cluster: kmock.KubernetesEmulator, passes: PassCounter
) -> None:
    cluster.objects[NODES, None, "l4-a"] = gpu_node("l4-a")
    cluster.objects[NODES, None, "l4-b"] = gpu_node("l4-b")
    cluster.objects[LLMSERVICES, NAMESPACE, "chat"] = llmservice()
    cpu_node = gpu_node("cpu-a")
    del cpu_node["metadata"]["labels"]["nvidia.com/gpu.product"]
    del cpu_node["status"]["allocatable"]["nvidia.com/gpu"]

    with runner():
        await eventually(lambda: when(lambda s: bool(s.get("plan")))(cluster))
        quiet = await settled(passes)

        # CPU-only pods and nodes come and go: the planner sleeps through all of it.
        await api(cluster, "POST", "/api/v1/nodes", cpu_node)
        await api(cluster, "POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod("web"))
        await api(
            cluster,
            "PATCH",
            f"/api/v1/namespaces/{NAMESPACE}/pods/web",
            {"metadata": {"labels": {"version": "2"}}},
        )
        await api(cluster, "DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/web")
        await api(cluster, "PATCH", "/api/v1/nodes/cpu-a", {"metadata": {"labels": {"x": "y"}}})
        await api(cluster, "DELETE", "/api/v1/nodes/cpu-a")
        await asyncio.sleep(1.0)
        assert passes.count == quiet

        # A foreign pod taking a GPU does wake it.
        await api(cluster, "POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod("train", gpus=1))
        await eventually(lambda: passes.count > quiet)
        quiet = await settled(passes)

        # So does a GPU node losing its GPU labels, and a GPU node going away.
        unlabel = {
            "metadata": {"labels": {"nvidia.com/gpu.product": None}},
            "status": {"allocatable": {"nvidia.com/gpu": None}},
        }
        await api(cluster, "PATCH", "/api/v1/nodes/l4-b", unlabel)
        await eventually(lambda: passes.count > quiet)
        node = objects(cluster, NODES)["l4-b"]
        assert "nvidia.com/gpu.product" not in node["metadata"]["labels"]
        assert "nvidia.com/gpu" not in node["status"]["allocatable"]
        quiet = await settled(passes)
        await api(cluster, "DELETE", "/api/v1/nodes/l4-a")
        await eventually(lambda: passes.count > quiet)


async def test_kube_lists_active_pods_of_every_namespace(cluster: kmock.KubernetesEmulator) -> None:
    # What namespaced mode counts besides kopf's (namespace-narrowed) pods index.
    other = pod("finetune", gpus=4)
    other["metadata"]["namespace"] = "ml-research"
    await api(cluster, "POST", "/api/v1/namespaces/ml-research/pods", other)
    await api(cluster, "POST", f"/api/v1/namespaces/{NAMESPACE}/pods", pod("web"))
    api_client = await asyncio.to_thread(make_api_client)
    try:
        listed = await asyncio.to_thread(Kube(api_client).list_active_pods)
    finally:
        api_client.close()
    assert {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in listed} >= {
        ("ml-research", "finetune"),
        (NAMESPACE, "web"),
    }
    pods_list = [r for r in list(cluster) if str(r.url.path) == "/api/v1/pods"]
    assert pods_list
    query = pods_list[-1].url.query
    assert query["fieldSelector"] == "status.phase!=Succeeded,status.phase!=Failed"


async def test_the_plan_api_reports_the_plan_and_a_what_if_writes_nothing(
    cluster: kmock.KubernetesEmulator,
) -> None:
    # `gpumix operator --api-port`: the operator serves the API; a what-if is planned in
    # memory, and not one write reaches the Kubernetes API because of it.
    port = free_port()
    metrics_port = free_port()
    config = dataclasses.replace(CONFIG, api_port=port, metrics_port=metrics_port)
    cluster.objects[NODES, None, "l4-a"] = gpu_node("l4-a", gpus=4)
    cluster.objects[NODES, None, "l4-od"] = gpu_node("l4-od", gpus=4, spot=False)
    cluster.objects[LLMSERVICES, NAMESPACE, "chat"] = llmservice()
    base = f"http://127.0.0.1:{port}/api/v1"

    async def get(session: aiohttp.ClientSession, path: str) -> Any:
        async with session.get(base + path) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    with runner(config):
        planned = await eventually(lambda: when(lambda s: bool(s.get("plan")))(cluster))
        assert {entry["pool"] for entry in planned["plan"]} == {"l4-spot"}
        async with aiohttp.ClientSession() as session:
            service = await published(session, f"{base}/services/{NAMESPACE}/chat")
            fleet = await get(session, "/fleet")
            before = writes(cluster)
            async with session.post(
                f"{base}/whatif", json={"removedPools": ["l4-spot"]}
            ) as response:
                assert response.status == 200, await response.text()
                answer = await response.json()
            await asyncio.sleep(0.5)  # a write it caused would have been made by now
            assert writes(cluster) == before
        # The metrics port is separate and still serves.
        await scrape_until(metrics_port, "gpumix_pool_gpus")

    assert service["costPerHour"] == float(planned["costPerHour"])
    assert [e["deployment"] for e in service["plan"]] == [e["deployment"] for e in planned["plan"]]
    pools = {pool["name"]: pool for pool in fleet["pools"]}
    assert pools["l4-spot"]["gpus"] == 4 and pools["l4-on-demand"]["capacityType"] == "on-demand"
    held = sum(h["gpus"] for h in pools["l4-spot"]["holdings"])
    assert held == sum(entry["gpus"] for entry in planned["plan"])
    [chat] = answer["services"]
    assert {entry["pool"] for entry in chat["plan"]} == {"l4-on-demand"}
    assert {c["pool"]: c["delta"] for c in chat["changes"]}["l4-spot"] == -sum(
        entry["replicas"] for entry in planned["plan"]
    )
    # The runner stopped: so did the API (the cleanup handler closes its port).
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


async def published(session: aiohttp.ClientSession, url: str, timeout: float = 20.0) -> Any:
    """The service at ``url`` once the planner has published a pass with its plan (the status
    write comes just before the pass ends, so the API can be a moment behind it)."""
    deadline = time.monotonic() + timeout
    found: Any = None
    while time.monotonic() < deadline:
        async with session.get(url) as response:
            found = await response.json()
            if response.status == 200 and found.get("plan"):
                return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"the API never showed a plan: {found}")
