"""The dashboard in headless Chromium (Debian's ``chromium`` package) against the plan API
served over the fixture fleet: the fleet table and the cost chart render the API's numbers.

The page runs its own script here, so this is the test that the JavaScript works; the
assertions compare what Chromium rendered with what the source holds. Set
``GPUMIX_DASHBOARD_SCREENSHOT`` to a path to keep the screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from fastapi.testclient import TestClient

from api_support import FixtureSource
from gpumix.api import create_app
from gpumix.api.server import start_api_server
from gpumix.planning import pool_hardware
from gpumix.resources import GPUPool, LLMService, load_manifests

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


class Rendered(HTMLParser):
    """The fleet table's rows and the cost chart's bars, from Chromium's dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.pool_rows: dict[str, list[str]] = {}
        self.bars: dict[str, float] = {}
        self.summary = ""
        self.changes: set[str] = set()
        self.whatif_text = ""
        self._in_whatif = 0
        self._row: str | None = None
        self._cell: list[str] | None = None
        self._in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-pool"):
            self._row = found["data-pool"]
            self.pool_rows[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "rect" and found.get("class") == "bar-plan":
            self.bars[str(found["data-service"])] = float(str(found["data-cost"]))
        elif tag == "span" and found.get("id") == "summary":
            self._in_summary = True
        if found.get("data-change"):
            self.changes.add(str(found["data-change"]))
        if tag == "div" and found.get("id") == "whatif-answer":
            self._in_whatif = 1
        elif self._in_whatif and tag == "div":
            self._in_whatif += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self.pool_rows[self._row].append("".join(self._cell))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "span":
            self._in_summary = False
        elif tag == "div" and self._in_whatif:
            self._in_whatif -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_summary:
            self.summary += data
        if self._in_whatif:
            self.whatif_text += data


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


def chromium(profile: Path, url: str, *args: str) -> str:
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # root in a container; the page is our own
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            # Virtual time: the page's fetches and drawing finish before the DOM is taken.
            "--virtual-time-budget=5000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_fleet_table_and_cost_chart_show_the_api_numbers(
    source: FixtureSource, url: str, tmp_path: Path
) -> None:
    page = Rendered()
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
    page = Rendered()
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
