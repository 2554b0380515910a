"""The README's worked examples are what the commands print today (docs do not drift)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gpumix.cli import main

REPO = Path(__file__).resolve().parent.parent


def console_blocks() -> list[tuple[str, list[str]]]:
    """(command, printed lines) of every ```console block that runs `gpumix plan|profile`."""
    text = (REPO / "README.md").read_text()
    blocks = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines = block.rstrip("\n").split("\n")
        if lines[0].startswith("$ gpumix plan") or lines[0].startswith("$ gpumix profile"):
            blocks.append((lines[0].removeprefix("$ "), lines[1:]))
    return blocks


BLOCKS = console_blocks()


def test_the_readme_has_worked_examples() -> None:
    assert {command.split()[1] for command, _ in BLOCKS} == {"plan", "profile"}


@pytest.mark.parametrize(("command", "shown"), BLOCKS, ids=[c for c, _ in BLOCKS])
def test_readme_example_matches_the_command(
    command: str,
    shown: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    exit_code = main(shlex.split(command)[1:])
    printed = capsys.readouterr().out.rstrip("\n").split("\n")
    assert exit_code == 0

    def without_timing(lines: list[str]) -> list[str]:
        return [re.sub(r"solved in [\d.]+ s", "solved in _ s", line) for line in lines]

    assert without_timing(printed) == without_timing(shown)


def whatif_blocks() -> list[tuple[str, list[str]]]:
    text = (REPO / "README.md").read_text()
    blocks = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines = block.rstrip("\n").split("\n")
        if lines[0].startswith("$ gpumix whatif"):
            blocks.append((lines[0].removeprefix("$ "), lines[1:]))
    return blocks


def test_the_readme_whatif_example_is_what_the_command_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The state the README names: examples/llmservice-chat.yaml planned on examples/fleet.yaml.
    from api_support import FixtureSource
    from gpumix.api import create_app
    from gpumix.api.server import start_api_server
    from gpumix.planning import pool_hardware
    from gpumix.resources import GPUPool, LLMService, load_manifests

    [(command, shown)] = whatif_blocks()
    monkeypatch.chdir(REPO)
    pools = [p for p in load_manifests("examples/fleet.yaml") if isinstance(p, GPUPool)]
    services = [s for s in load_manifests("examples/llmservice-chat.yaml")]
    source = FixtureSource(
        [pool_hardware(pool) for pool in pools],
        [service for service in services if isinstance(service, LLMService)],
    )
    server = start_api_server(create_app(source), 0, host="127.0.0.1")
    try:
        args = shlex.split(command)[1:]
        args[args.index("--api") + 1] = f"http://127.0.0.1:{server.port}"
        assert main(args) == 0
    finally:
        server.stop()
    printed = capsys.readouterr().out.rstrip("\n").split("\n")

    def without_timing(lines: list[str]) -> list[str]:
        return [re.sub(r"Optimal in [\d.]+ s", "Optimal in _ s", line) for line in lines]

    assert without_timing(printed) == without_timing(shown)
