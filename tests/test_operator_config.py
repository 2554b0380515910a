"""`gpumix operator --config`: the file the Helm chart renders, parsed once at startup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gpumix.cli import main
from gpumix.commands.operator import config_path
from gpumix.errors import InputError
from gpumix.operator.config_file import load_config_file, parse_config
from gpumix.operator.inventory import InventorySettings
from gpumix.operator.settings import OperatorConfig

GOOD = {
    "pricing": {
        "defaults": {
            "H100-80GB": {"on-demand": "3.93", "spot": "2.47"},
            "l4": {"reserved": "0.50"},  # any spelling the catalogue knows
        }
    },
    "discovery": {
        "gpuTypeLabels": ["example.com/gpu-model", "nvidia.com/gpu.product"],
        "capacityTypeLabels": ["example.com/lifecycle"],
    },
    "metrics": {"port": 9191},
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def load_error(tmp_path: Path, data: Any) -> str:
    path = write(tmp_path, data)
    with pytest.raises(InputError) as caught:
        load_config_file(path)
    message = caught.value.one_line()
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message


def test_a_good_file_gives_prices_label_keys_and_port(tmp_path: Path) -> None:
    config = load_config_file(write(tmp_path, GOOD))
    settings = config.inventory_settings()
    assert settings.prices == {
        ("H100-80GB", "on-demand"): 3.93,
        ("H100-80GB", "spot"): 2.47,
        ("L4", "reserved"): 0.50,
    }
    assert settings.gpu_type_labels == ("example.com/gpu-model", "nvidia.com/gpu.product")
    assert settings.capacity_type_labels == ("example.com/lifecycle",)
    assert config.metrics.port == 9191


@pytest.mark.parametrize("text", ["", "{}\n", "pricing: {}\ndiscovery: {}\nmetrics: {}\n"])
def test_an_empty_file_means_todays_behaviour(tmp_path: Path, text: str) -> None:
    config = load_config_file(write(tmp_path, text))
    assert config.inventory_settings() == InventorySettings()
    assert config.metrics.port is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"pricing": {"defaults": {"H200-80GB": {"spot": "2.00"}}}},
            "pricing.defaults.H200-80GB: unknown GPU type 'H200-80GB'; did you mean",
        ),
        (
            {"pricing": {"defaults": {"L4": {"spot": "0,29"}}}},
            "pricing.defaults.L4.spot: must be a decimal string",
        ),
        (
            {"pricing": {"defaults": {"L4": {"spot": "2."}}}},
            "pricing.defaults.L4.spot: must be a decimal string",
        ),
        (
            {"pricing": {"defaults": {"L4": {"spot": 0.29}}}},
            'pricing.defaults.L4.spot: must be a decimal string such as "12.5" (quoted)',
        ),
        (
            {"pricing": {"defaults": {"L4": {"preemptible": "0.29"}}}},
            "pricing.defaults.L4.preemptible: Input should be 'on-demand', 'spot' or 'reserved'",
        ),
        ({"discovery": {"gpuLabels": ["a/b"]}}, "discovery.gpuLabels: unknown key"),
        ({"prices": {}}, "prices: unknown key"),
        (
            {"discovery": {"capacityTypeLabels": ["not a label"]}},
            "discovery.capacityTypeLabels.0: not a Kubernetes label key: 'not a label'",
        ),
        ({"metrics": {"port": 70000}}, "metrics.port: Input should be less than or equal to"),
        ("pricing: [1\n", "not valid YAML"),
        ("- pricing\n", "must be a mapping"),
    ],
)
def test_a_bad_file_is_one_line_naming_file_and_field(
    tmp_path: Path, data: Any, expected: str
) -> None:
    assert expected in load_error(tmp_path, data)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.yaml: cannot read"):
        load_config_file(tmp_path / "missing.yaml")


# -- the command line --------------------------------------------------------------------------


def test_the_file_comes_from_the_flag_else_gpumix_config() -> None:
    assert config_path("/a.yaml", {"GPUMIX_CONFIG": "/b.yaml"}) == "/a.yaml"
    assert config_path(None, {"GPUMIX_CONFIG": "/b.yaml"}) == "/b.yaml"
    assert config_path(None, {"GPUMIX_CONFIG": ""}) is None
    assert config_path(None, {}) is None


def test_a_bad_file_stops_the_operator_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[OperatorConfig] = []
    monkeypatch.setattr("gpumix.operator.main.run", started.append)
    path = write(tmp_path, {"pricing": {"defaults": {"H200-80GB": {"spot": "2.00"}}}})
    monkeypatch.setenv("GPUMIX_CONFIG", str(path))
    assert main(["operator"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"gpumix operator: {path}: pricing.defaults.H200-80GB: unknown GPU")
    assert started == []


def run_operator(monkeypatch: pytest.MonkeyPatch, *args: str) -> OperatorConfig:
    started: list[OperatorConfig] = []
    monkeypatch.setattr("gpumix.operator.main.run", started.append)
    assert main(["operator", *args]) == 0
    [config] = started
    return config


def test_the_file_reaches_the_operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUMIX_CONFIG", raising=False)
    config = run_operator(monkeypatch, "--config", str(write(tmp_path, GOOD)))
    assert config.inventory.prices[("H100-80GB", "spot")] == 2.47
    assert config.inventory.gpu_type_labels[0] == "example.com/gpu-model"
    assert config.metrics_port == 9191


def test_metrics_are_off_unless_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUMIX_CONFIG", raising=False)
    defaults = run_operator(monkeypatch)
    assert defaults.metrics_port is None
    assert defaults.inventory == InventorySettings()
    assert run_operator(monkeypatch, "--metrics-port", "9300").metrics_port == 9300
    path = str(write(tmp_path, GOOD))
    # The flag overrides the file; 0 and 'none' switch the endpoint off.
    assert (
        run_operator(monkeypatch, "--config", path, "--metrics-port", "9300").metrics_port == 9300
    )
    assert (
        run_operator(monkeypatch, "--config", path, "--metrics-port", "none").metrics_port is None
    )
    assert run_operator(monkeypatch, "--config", path, "--metrics-port", "0").metrics_port is None


def test_a_bad_metrics_port_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for value in ("-1", "65536", "http"):
        with pytest.raises(SystemExit) as exited:
            main(["operator", "--metrics-port", value])
        assert exited.value.code == 2
        assert "--metrics-port" in capsys.readouterr().err


def test_the_router_section_sets_image_and_replicas_and_refuses_zero() -> None:
    parsed = parse_config({"router": {"image": "registry.local/gpumix:1", "replicas": 3}}, "c.yaml")
    assert (parsed.router.options().image, parsed.router.options().replicas) == (
        "registry.local/gpumix:1",
        3,
    )
    with pytest.raises(InputError, match=r"c.yaml: router.replicas"):
        parse_config({"router": {"replicas": 0}}, "c.yaml")


def test_the_plan_api_is_off_unless_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPUMIX_CONFIG", raising=False)
    assert run_operator(monkeypatch).api_port is None
    # A port in the file alone does not switch it on: api.enabled does.
    port_only = str(write(tmp_path, {"api": {"port": 8181}}))
    assert run_operator(monkeypatch, "--config", port_only).api_port is None
    enabled = str(write(tmp_path, {"api": {"enabled": True, "whatifTimeLimitSeconds": 3}}))
    config = run_operator(monkeypatch, "--config", enabled)
    assert (config.api_port, config.api_whatif_time_limit_seconds) == (8081, 3)
    # The flag wins over the file, and 0 or 'none' switches the API off.
    assert run_operator(monkeypatch, "--config", enabled, "--api-port", "9400").api_port == 9400
    assert run_operator(monkeypatch, "--config", enabled, "--api-port", "none").api_port is None
    assert run_operator(monkeypatch, "--api-port", "9400").api_port == 9400


def test_a_bad_api_section_is_one_line_naming_the_field(tmp_path: Path) -> None:
    assert "api.enabled" in load_error(tmp_path, {"api": {"enabled": "yes"}})
    assert "api.whatifTimeLimitSeconds" in load_error(
        tmp_path, {"api": {"whatifTimeLimitSeconds": 0}}
    )
