"""The dashboard in headless Chromium (Debian's ``chromium`` package) against the plan API
served over the fixture fleet: the fleet table and the cost chart render the API's numbers.

The page runs its own script here, so this is the test that the JavaScript works; the
assertions compare what Chromium rendered with what the source holds. Set
``GPUMIX_DASHBOARD_SCREENSHOT`` to a path to keep the screenshot.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from fastapi.testclient import TestClient

from api_support import FixtureSource
from gpumix.api import create_app
from gpumix.api.server import start_api_server
from gpumix.devcluster.browser import CHROMIUM, DashboardDOM, chromium
from gpumix.planning import pool_hardware
from gpumix.resources import GPUPool, LLMService, load_manifests

REPO = Path(__file__).resolve().parent.parent
# CI installs chromium (.ci/run), so there a missing browser is a failure, not a skip
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def source() -> FixtureSource:
    pools = [p for p in load_manifests(REPO / "examples/fleet.yaml") if isinstance(p, GPUPool)]
    services = [
        s
        for name in ("llmservice-chat.yaml", "llmservice-70b.yaml")
        for s in load_manifests(REPO / "examples" / name)
        if isinstance(s, LLMService)
    ]
    return FixtureSource([pool_hardware(p) for p in pools], services)


@pytest.fixture(scope="module")
def url(source: FixtureSource) -> Iterator[str]:
    server = start_api_server(create_app(source), 0, host="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{server.port}/"
    finally:
        server.stop()


def test_the_fleet_table_and_cost_chart_show_the_api_numbers(
    source: FixtureSource, url: str, tmp_path: Path
) -> None:
    page = DashboardDOM()
    page.feed(chromium(tmp_path / "profile", url, "--dump-dom"))

    assert set(page.pool_rows) == {h.pool.name for h in source.pools}
    services = [f"{s.key.namespace}/{s.key.name}" for s in source.running]
    for hardware in source.pools:
        cells = page.pool_rows[hardware.pool.name]
        # pool, GPU, capacity, price, GPUs, allocated, available, then one column per service
        assert cells[1] == hardware.pool.gpu_type
        assert cells[3] == f"{hardware.pool.price_per_gpu_hour:.2f}"
        assert int(cells[6]) == hardware.pool.available_gpus
        for column, running in zip(cells[7:], source.running, strict=True):
            held = sum(
                e.replicas * e.tensor_parallel
                for e in running.entries
                if e.pool == hardware.pool.name
            )
            assert column == (str(held) if held else ""), (hardware.pool.name, running.key)
    assert page.bars == {
        name: pytest.approx(running.cost_per_hour)
        for name, running in zip(services, source.running, strict=True)
    }
    total = sum(s.cost_per_hour or 0 for s in source.running)
    assert page.summary == f"2 services, {len(source.pools)} pools, ${total:.2f}/h"


def test_a_what_if_link_runs_and_shows_the_replicas_that_move(
    source: FixtureSource, url: str, tmp_path: Path
) -> None:
    change = {"removedPools": ["l4-spot"]}
    link = f"{url}#whatif={quote(json.dumps(change))}"
    page = DashboardDOM()
    page.feed(chromium(tmp_path / "profile", link, "--dump-dom"))

    with TestClient(create_app(source)) as client:
        answer = client.post("/api/v1/whatif", json=change).json()
    expected = {
        f"{s['namespace']}/{s['name']} {c['pool']} tp{c['tensorParallel']} "
        f"{c['weightFormat']} {c['delta']}"
        for s in answer["services"]
        for c in s["changes"]
    }
    assert any(" l4-spot " in line for line in expected), "the premise: spot replicas move"
    assert page.changes == expected
    assert f"${answer['totalCostPerHour']:.2f}/h" in page.whatif_text


def test_a_screenshot_of_the_dashboard_is_saved(url: str, tmp_path: Path) -> None:
    # With the README's what-if answered on the page, so the screenshot shows every part.
    change = yaml.safe_load((REPO / "examples" / "whatif-no-spot.yaml").read_text())
    link = f"{url}#whatif={quote(json.dumps(change))}"
    target = Path(os.environ.get("GPUMIX_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    chromium(tmp_path / "profile", link, f"--screenshot={target}", "--window-size=1200,1350")
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
