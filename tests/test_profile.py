"""`gpumix profile` as a user runs it."""

from __future__ import annotations

import json

import pytest

from gpumix.cli import main

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
ROW_KEYS = {"gpuType", "tensorParallel", "weightFormat", "fits", "maxConcurrentSequences",
            "prefillSeconds", "decodeStepSeconds", "decodeTokensPerSecond",
            "maxRequestsPerSecond", "reason"}  # fmt: skip


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert main(["profile", "--model", MODEL, "-o", "json", *args]) == 0
    rows: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return rows


def test_json_rows_carry_the_contract_keys(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "--gpu", "H100-80GB", "--gpu", "L4")
    assert {(r["gpuType"], r["tensorParallel"]) for r in rows} == {
        (gpu, tp) for gpu in ("H100-80GB", "L4") for tp in (1, 2, 4, 8)
    }
    assert all(set(row) >= ROW_KEYS for row in rows)
    assert all(row["weightFormat"] == "bf16" for row in rows)


def test_defaults_cover_every_gpu_within_one_node(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys)
    assert {row["gpuType"] for row in rows} >= {"H100-80GB", "T4", "RTX-4090"}
    assert not any(row["gpuType"] == "T4" and row["tensorParallel"] == 8 for row in rows)


def test_non_fitting_rows_say_why(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "--gpu", "T4", "--tp", "1")
    assert rows[0]["fits"] is False
    assert "GiB per GPU" in str(rows[0]["reason"])


def test_batch_flag_sets_the_decode_batch(capsys: pytest.CaptureFixture[str]) -> None:
    [row] = run_json(capsys, "--gpu", "L4", "--tp", "1", "--batch", "4")
    assert row["decodeBatch"] == 4


def test_table_fits_a_100_column_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--model", "Llama-3.1-70B-Instruct", "--weight-format", "bf16",
                 "--weight-format", "int4", "--weight-format", "fp8"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert any(line.startswith("H100-80GB  2  fp8") for line in lines)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "acme/unknown-model"], "unknown model 'acme/unknown-model'"),
        (["--model", MODEL, "--gpu", "H100-80G"], "did you mean H100-80GB"),
        (["--model", MODEL, "--gpu", "A100-80GB", "--weight-format", "fp8"], "A100-80GB"),
        (["--model", MODEL, "--weight-format", "fp4"], "unknown weight format 'fp4'"),
        (["--model", MODEL, "--tp", "0"], "--tp: must be positive"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert main(["profile", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert expected in captured.err and len(captured.err.strip().splitlines()) == 1
