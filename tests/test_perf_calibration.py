"""The model against published vLLM measurements (see docs/perf-model.md for the table)."""

from __future__ import annotations

import pytest

from gpumix.perf.calibration import (
    CALIBRATION_TOLERANCE,
    MEASUREMENTS,
    Measurement,
    markdown_table,
    relative_error,
)


@pytest.mark.parametrize("measurement", MEASUREMENTS, ids=lambda m: f"{m.gpu}-C{m.concurrency}")
def test_prediction_is_within_tolerance_of_the_published_figure(measurement: Measurement) -> None:
    # 25 %: single-run blog figures across vLLM 0.21-0.23 with partly unstated prompt lengths
    assert abs(relative_error(measurement)) <= CALIBRATION_TOLERANCE


def test_every_measurement_names_its_source() -> None:
    assert all(m.source for m in MEASUREMENTS)


def test_docs_show_the_current_calibration_table() -> None:
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "perf-model.md"
    assert markdown_table() in doc.read_text(encoding="utf-8"), (
        "docs/perf-model.md is stale: run python -m gpumix.perf.calibration and paste the table"
    )
