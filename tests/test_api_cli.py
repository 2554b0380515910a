"""`gpumix whatif` against the plan API served on a real socket over the fixture fleet."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_support import FixtureSource
from gpumix.api import create_app
from gpumix.api.server import start_api_server
from gpumix.cli import main


@pytest.fixture(scope="module")
def source() -> FixtureSource:
    return FixtureSource()


@pytest.fixture(scope="module")
def api(source: FixtureSource) -> Iterator[str]:
    server = start_api_server(create_app(source), 0, host="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def change_file(tmp_path: Path, change: Any) -> str:
    path = tmp_path / "change.yaml"
    path.write_text(change if isinstance(change, str) else yaml.safe_dump(change))
    return str(path)


def whatif(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["whatif", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_diff_table_shows_the_replicas_that_move(
    api: str, source: FixtureSource, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = change_file(tmp_path, {"removedPools": ["l4-spot"]})
    code, out, err = whatif(capsys, "--api", api, "-f", path)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("what-if Optimal")
    [header] = [line for line in lines if line.startswith("team-a/chat")]
    assert "→" in header and "(+$" in header  # dearer without spot
    for entry in source.running[0].entries:
        # a row is one configuration: pool and tensor-parallel size (a pool may hold several)
        [row] = [
            line
            for line in lines
            if line.split()[:1] == [entry.pool] and line.split()[3] == str(entry.tensor_parallel)
        ]
        assert row.split()[-3:] == [str(entry.replicas), "0", f"-{entry.replicas}"]


def test_json_output_is_the_api_answer(
    api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = change_file(tmp_path, {})
    code, out, _ = whatif(capsys, "--api", api, "-f", path, "-o", "json")
    answer = json.loads(out)
    assert code == 0 and answer["services"][0]["changes"] == []


def test_a_bad_file_is_one_line_naming_file_and_field_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No server at this address: the file is refused before anything is sent.
    path = change_file(tmp_path, {"prices": [{"pool": "l4-spot", "pricePerGPUHour": 1.5}]})
    code, out, err = whatif(capsys, "--api", "http://127.0.0.1:9", "-f", path)
    assert (code, out) == (2, "")
    [line] = err.splitlines()
    assert line.startswith(f"gpumix whatif: {path}: prices[0].pricePerGPUHour: ")


@pytest.mark.parametrize(
    ("text", "why"),
    [("prices: [\n", "line"), ("- a list\n", "must be a mapping")],
)
def test_unreadable_yaml_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, why: str
) -> None:
    path = change_file(tmp_path, text)
    code, _, err = whatif(capsys, "--api", "http://127.0.0.1:9", "-f", path)
    assert code == 2 and len(err.splitlines()) == 1 and why in err


def test_a_change_the_fleet_cannot_take_is_exit_2_naming_the_field(
    api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = change_file(tmp_path, {"removedPools": ["h100-spot"]})
    code, _, err = whatif(capsys, "--api", api, "-f", path)
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith(f"gpumix whatif: {path}: removedPools[0]: unknown pool 'h100-spot'")


def test_a_change_that_leaves_a_service_without_a_plan_is_exit_3_with_reasons(
    api: str, source: FixtureSource, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change = {"availability": [{"pool": h.pool.name, "availableGPUs": 0} for h in source.pools]}
    code, out, _ = whatif(capsys, "--api", api, "-f", change_file(tmp_path, change))
    assert code == 3
    assert "[becomes infeasible]" in out and "! NoCapacity: " in out


def test_an_unreachable_api_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    path = change_file(tmp_path, {})
    code, _, err = whatif(capsys, "--api", f"http://127.0.0.1:{port}", "-f", path)
    assert code == 1 and err.startswith("gpumix whatif: http://127.0.0.1:")
