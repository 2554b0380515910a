"""The dashboard the API serves at /: a static page whose assets all come from the operator."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api_support import FixtureSource
from gpumix.api import create_app
from gpumix.api.problems import PROBLEM_JSON

DASHBOARD = Path(__file__).resolve().parent.parent / "src" / "gpumix" / "api" / "dashboard"
# Not a fetch: the namespace createElementNS needs to draw SVG.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(FixtureSource())) as test_client:
        yield test_client


def test_the_page_and_every_asset_it_names_are_served_with_a_self_only_policy(
    client: TestClient,
) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == ["static/dashboard.css", "static/dashboard.js"]
    types = {".js": "text/javascript", ".css": "text/css"}
    for asset in assets:
        response = client.get(f"/{asset}")
        assert response.status_code == 200, asset
        assert response.headers["content-type"].startswith(types[Path(asset).suffix])
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_nothing_is_fetched_from_another_origin() -> None:
    for path in DASHBOARD.iterdir():
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", path.read_text()))
        assert urls <= {SVG_NAMESPACE}, f"{path.name} names another origin: {urls}"


def test_the_script_calls_only_endpoints_the_api_has(client: TestClient) -> None:
    script = (DASHBOARD / "dashboard.js").read_text()
    called = set(re.findall(r'getJSON\("([a-z/]+)"', script))
    assert called == {"fleet", "services", "whatif"}
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {f"/api/v1/{name}" for name in called} <= set(paths)
    markup = re.findall(r"\.(?:inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", script)
    assert not markup, "API values are written as text, never as markup"


def test_an_unknown_asset_is_a_404_problem(client: TestClient) -> None:
    for path in ("/static/nope.js", "/static/..%2Fapp.py", "/static/index.py"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == PROBLEM_JSON


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_script_parses() -> None:
    result = subprocess.run(
        ["node", "--check", str(DASHBOARD / "dashboard.js")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
