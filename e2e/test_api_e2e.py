"""The plan API of the real operator process on the real dev cluster: it reports what
`kubectl get` shows, and a what-if of losing the spot pool predicts the plan that deleting the
pool's nodes then produces."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from gpumix.devcluster.browser import DashboardDOM, chromium
from gpumix.devcluster.cluster import DevCluster
from support import Kubectl, OperatorProcess, gpu_types_planned, is_ready, llmservice, wait_for


def api_get(operator: OperatorProcess, path: str) -> Any:
    response = httpx.get(operator.api_url + path, timeout=30)
    return response.json() if response.status_code == 200 else None


def gpus_by_pool(entries: list[dict[str, Any]]) -> Counter[str]:
    held: Counter[str] = Counter()
    for entry in entries:
        held[entry["pool"]] += entry["gpus"]
    return held


def test_the_api_shows_what_kubectl_shows_and_predicts_a_spot_loss(
    kubectl: Kubectl, operator: OperatorProcess, dev_cluster: DevCluster, namespace: str
) -> None:
    spec = {"placement": {"gpuTypes": ["L4", "A100-80GB"]}}
    kubectl.apply(llmservice("forecast", namespace, **spec))
    service = wait_for("forecast Ready", lambda: is_ready(kubectl, namespace, "forecast"))
    assert gpu_types_planned(service) == {"L4"}, "cheap spot L4s are the cheapest plan"
    status = service["status"]

    def shown() -> Any:
        found = api_get(operator, f"/services/{namespace}/forecast")
        return found if found and found["readyReplicas"] == status["readyReplicas"] else None

    view = wait_for("the API to show the plan", shown)
    assert view["costPerHour"] == float(status["costPerHour"])
    assert [(e["deployment"], e["replicas"]) for e in view["plan"]] == [
        (e["deployment"], e["replicas"]) for e in status["plan"]
    ]

    def pools_agree() -> bool:
        fleet = api_get(operator, "/fleet")
        gpupools = kubectl.json("gpupools")["items"]
        counted = {
            p["metadata"]["name"]: (p["status"]["gpus"], p["status"]["availableGPUs"])
            for p in gpupools
        }
        if not fleet:
            return False
        # Discovered pools (nodes no GPUPool selects) are in the API only.
        served = {p["name"]: (p["gpus"], p["availableGPUs"]) for p in fleet["pools"]}
        return bool(counted) and {name: served.get(name) for name in counted} == counted

    wait_for("the API's pools to match kubectl get gpupools", pools_agree)

    response = httpx.post(
        operator.api_url + "/whatif", json={"removedPools": ["l4-spot"]}, timeout=60
    )
    assert response.status_code == 200, response.text
    [predicted] = [s for s in response.json()["services"] if s["name"] == "forecast"]
    assert predicted["feasible"] and predicted["changes"]
    assert is_ready(kubectl, namespace, "forecast")["status"]["plan"] == status["plan"], (
        "a what-if must not change the running plan"
    )

    removed = dev_cluster.delete_pool_nodes("l4-spot")
    try:

        def replanned() -> dict[str, Any] | None:
            found = is_ready(kubectl, namespace, "forecast")
            return found if found and "L4" not in gpu_types_planned(found) else None

        after = wait_for("forecast Ready off the L4 spot pool", replanned)["status"]
        # The same money on the same pools' GPUs. Equal-cost configurations (one tp4 replica
        # or two tp2 replicas) may be picked either way, so the GPU split is compared.
        assert float(after["costPerHour"]) == pytest.approx(predicted["costPerHour"], abs=0.01)
        assert gpus_by_pool(after["plan"]) == gpus_by_pool(predicted["plan"])
    finally:
        kubectl.run("delete", "llmsvc", "forecast", "-n", namespace)
        assert len(dev_cluster.add_nodes("l4-spot", len(removed))) == len(removed)
        dev_cluster.wait_nodes_ready()


def test_the_dashboard_renders_the_live_fleet_in_chromium(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    """The dashboard the operator serves, loaded in headless Chromium from the dev cluster:
    the fleet table holds each service's GPUs where `kubectl get llmsvc` says they run, and
    the cost chart its $/h. The screenshot in the README is this test's
    (GPUMIX_DASHBOARD_SCREENSHOT=docs/dashboard.png)."""
    names = ("board-chat", "board-rag")
    kubectl.apply(llmservice(names[0], namespace))
    kubectl.apply(llmservice(names[1], namespace, placement={"gpuTypes": ["L40S"]}))
    statuses = {
        f"{namespace}/{name}": wait_for(
            f"{name} Ready", lambda name=name: is_ready(kubectl, namespace, name)
        )["status"]
        for name in names
    }
    try:
        dashboard = operator.api_url.removesuffix("/api/v1") + "/"

        def rendered() -> DashboardDOM | None:
            page = DashboardDOM()
            page.feed(chromium(tmp_path / "profile", dashboard, "--dump-dom"))
            shown = {name: page.bars.get(name) for name in statuses}
            costs = {name: float(s["costPerHour"]) for name, s in statuses.items()}
            return page if shown == costs else None

        # the API publishes after the planner's pass that made the services Ready
        page = wait_for("the dashboard to show both services' costs", rendered)
        pools = {p["metadata"]["name"] for p in kubectl.json("gpupools")["items"]}
        assert pools <= set(page.pool_rows), (pools, sorted(page.pool_rows))
        held_in_status: Counter[str] = Counter()
        for status in statuses.values():
            held_in_status += gpus_by_pool(status["plan"])
        held_on_page: Counter[str] = Counter()
        for pool, cells in page.pool_rows.items():
            # pool, GPU, capacity, price, GPUs, allocated, available, then one per service
            held_on_page[pool] = sum(int(cell) for cell in cells[7:] if cell.strip())
        assert +held_on_page == held_in_status
        # with a what-if answered on the page, so the screenshot shows every part
        change = quote(json.dumps({"removedPools": sorted(held_in_status)[:1]}))
        target = Path(os.environ.get("GPUMIX_DASHBOARD_SCREENSHOT") or tmp_path / "dash.png")
        chromium(
            tmp_path / "profile",
            f"{dashboard}#whatif={change}",
            f"--screenshot={target}",
            "--window-size=1200,1500",
        )
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        for name in names:
            kubectl.run("delete", "llmsvc", name, "-n", namespace)
