"""`gpumix plan` as a user meets it: exit codes, the JSON contract, one-line input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpumix.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SERVICE = str(EXAMPLES / "llmservice-chat.yaml")
FLEET = str(EXAMPLES / "fleet.yaml")

CONTRACT_KEYS = {"status", "objective", "gap", "solveSeconds", "totalCostPerHour", "services"}
SERVICE_KEYS = {
    "namespace",
    "name",
    "costPerHour",
    "demandRequestsPerSecond",
    "scaleFactor",
    "servedRequestsPerSecond",
    "replicas",
    "baselines",
    "reasons",
    "savingsPercent",
    "reasonCodes",
}
ENTRY_KEYS = {
    "pool",
    "gpuType",
    "capacityType",
    "tensorParallel",
    "weightFormat",
    "replicas",
    "gpus",
    "costPerHour",
    "assignment",
    "capacityRequestsPerSecond",
}


def plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main(["plan", *args, "-o", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_example_plan_follows_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, document = plan_json(capsys, "-f", SERVICE, "--fleet", FLEET)
    assert code == 0
    assert set(document) >= CONTRACT_KEYS
    assert document["status"] == "Optimal"
    (service,) = document["services"]  # type: ignore[misc]
    assert set(service) >= SERVICE_KEYS
    assert service["replicas"] and all(set(e) >= ENTRY_KEYS for e in service["replicas"])
    assert service["costPerHour"] <= 40.0  # the budget
    assert sum(e["replicas"] for e in service["replicas"]) >= 2  # minReplicas
    # minOnDemandReplicas: 1
    assert any(e["capacityType"] == "on-demand" for e in service["replicas"])
    # Every class is fully routed and the plan is no dearer than any homogeneous fleet.
    for name in ("chat", "rag"):
        assert sum(e["assignment"][name] for e in service["replicas"]) == pytest.approx(1, 1e-3)
    assert service["savingsPercent"] >= 0
    costs = [b["costPerHour"] for b in service["baselines"] if b["costPerHour"] is not None]
    assert costs and service["costPerHour"] <= min(costs) + 1e-6


def test_infeasible_budget_exits_3_and_still_prints_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = Path(SERVICE).read_text().replace('maxCostPerHour: "40.00"', 'maxCostPerHour: "1.00"')
    service = tmp_path / "poor.yaml"
    service.write_text(text)
    code, document = plan_json(capsys, "-f", str(service), "--fleet", FLEET)
    assert code == 3
    assert document["status"] == "Infeasible"
    (plan,) = document["services"]  # type: ignore[misc]
    assert plan["reasonCodes"] == ["BudgetTooSmall"]
    assert "budget is $1.00/h" in plan["reasons"][0]


def test_unreachable_slo_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = Path(SERVICE).read_text().replace("tpotMilliseconds: 100", "tpotMilliseconds: 1")
    service = tmp_path / "fast.yaml"
    service.write_text(text)
    code, document = plan_json(capsys, "-f", str(service), "--fleet", FLEET)
    assert code == 3
    (plan,) = document["services"]  # type: ignore[misc]
    assert "SLOUnreachable" in plan["reasonCodes"]
    assert "TPOT" in " ".join(plan["reasons"])


def test_invalid_field_exits_2_with_one_line_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = Path(SERVICE).read_text().replace("headroomPercent: 20", "headroomPercent: -5")
    service = tmp_path / "bad.yaml"
    service.write_text(text)
    assert main(["plan", "-f", str(service), "--fleet", FLEET]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "bad.yaml" in err and "spec.workload.headroomPercent" in err


def test_an_owned_environment_variable_exits_2_naming_file_field_and_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load(Path(SERVICE).read_text())
    document["spec"]["serving"] = {"env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]}
    service = tmp_path / "gpus.yaml"
    service.write_text(yaml.safe_dump(document))
    assert main(["plan", "-f", str(service), "--fleet", FLEET]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "gpus.yaml" in line and "spec.serving.env[0]: NVIDIA_VISIBLE_DEVICES" in line


def test_pool_without_availability_is_invalid_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "apiVersion: gpumix.io/v1alpha1\nkind: GPUPool\nmetadata: {name: l4}\n"
        "spec: {gpuType: L4, capacityType: spot, nodeSelector: {a: b}}\n"
    )
    assert main(["plan", "-f", SERVICE, "--fleet", str(fleet)]) == 2
    err = capsys.readouterr().err
    assert "fleet.yaml" in err and "spec.maxGPUs" in err


def test_profiles_override_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Profiles exist for L4 only at TP1 bf16: L4 may then only be used that way."""
    profiles = tmp_path / "profiles.yaml"
    rows = [
        {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "gpuType": "L4",
            "tensorParallel": 1,
            "weightFormat": "bf16",
            "inputTokens": i,
            "outputTokens": 256,
            "maxRequestsPerSecond": 100.0,
        }
        for i in (512, 4096)
    ]
    profiles.write_text(json.dumps(rows))
    code, document = plan_json(capsys, "-f", SERVICE, "--fleet", FLEET, "--profiles", str(profiles))
    assert code == 0
    (plan,) = document["services"]  # type: ignore[misc]
    l4 = [e for e in plan["replicas"] if e["gpuType"] == "L4"]
    # 100 req/s per L4 for $0.44/h beats everything: the spot pool carries the load.
    assert l4 and all((e["tensorParallel"], e["weightFormat"]) == (1, "bf16") for e in l4)
    assert all(e["capacityRequestsPerSecond"]["chat"] == 100.0 for e in l4)


def test_bad_profile_row_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("- {model: m, gpuType: L4, tensorParallel: 1, weightFormat: bf16}\n")
    assert main(["plan", "-f", SERVICE, "--fleet", FLEET, "--profiles", str(profiles)]) == 2
    assert "[0].inputTokens" in capsys.readouterr().err


def test_table_output_shows_plan_and_savings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "-f", SERVICE, "--fleet", FLEET]) == 0
    out = capsys.readouterr().out
    assert "team-a/chat" in out and "vs best homogeneous" in out and "savings" in out
    assert "class capacity vs demand" in out


def test_json_on_stdout_is_only_json_in_a_fresh_process() -> None:
    # Solver libraries print banners from C++ on the first solver object of a process; a
    # script piping `gpumix plan -o json` into jq must still get a parseable document.
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "gpumix.cli", "plan", "-f", SERVICE, "--fleet", FLEET, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "Optimal"


def reserve_pools(tmp_path: Path, pools: set[str] | None, namespace: str) -> str:
    """The example fleet with ``pools`` (None: all) admitting only ``namespace``, by name."""
    import yaml

    documents = list(yaml.safe_load_all(Path(FLEET).read_text()))
    for document in documents:
        reserved = pools is None or document["metadata"]["name"] in pools
        if document and document.get("kind") == "GPUPool" and reserved:
            document["spec"]["namespaceSelector"] = {
                "matchLabels": {"kubernetes.io/metadata.name": namespace}
            }
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump_all(documents))
    return str(fleet)


def test_pools_reserved_for_another_namespace_are_not_planned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, free = plan_json(capsys, "-f", SERVICE, "--fleet", FLEET)
    (plan,) = free["services"]  # type: ignore[misc]
    used = {entry["pool"] for entry in plan["replicas"]}
    code, reserved = plan_json(
        capsys, "-f", SERVICE, "--fleet", reserve_pools(tmp_path, used, "team-x")
    )
    assert code == 0
    (plan,) = reserved["services"]  # type: ignore[misc]
    assert plan["replicas"] and not {entry["pool"] for entry in plan["replicas"]} & used
    assert plan["costPerHour"] >= free["services"][0]["costPerHour"]  # type: ignore[index]

    # The pools admit the service's own namespace: nothing changes.
    namespace = free["services"][0]["namespace"]  # type: ignore[index]
    _, own = plan_json(capsys, "-f", SERVICE, "--fleet", reserve_pools(tmp_path, used, namespace))
    assert own["services"][0]["replicas"] == free["services"][0]["replicas"]  # type: ignore[index]


def test_a_namespace_no_pool_admits_gets_no_capacity_with_the_selectors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document = plan_json(
        capsys, "-f", SERVICE, "--fleet", reserve_pools(tmp_path, None, "team-x")
    )
    assert code == 3
    (plan,) = document["services"]  # type: ignore[misc]
    assert plan["reasonCodes"] == ["NoCapacity"]
    assert "no GPUPool admits namespace" in plan["reasons"][0]
    assert "kubernetes.io/metadata.name=team-x" in plan["reasons"][0]
