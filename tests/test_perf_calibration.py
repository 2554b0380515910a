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


def test_h200_points_are_within_the_limits() -> None:
    """Over every H200 point the RMS error is at most 5 %, and no decode step is off by more
    than 10 %: the decode steps at batch 256 were 26 % too fast under the single roofline."""
    from gpumix.perf import h200

    points = h200.points()
    assert len(points) == 45  # every row of the data file
    assert h200.rms_error(points) <= h200.RMS_ERROR_LIMIT
    decode = [point for point in points if point.kind == "decode"]
    assert len(decode) == 12
    assert all(abs(point.error) <= h200.DECODE_ERROR_LIMIT for point in decode)


def test_docs_show_the_current_h200_table() -> None:
    from pathlib import Path

    from gpumix.perf import h200

    doc = Path(__file__).resolve().parents[1] / "docs" / "perf-model.md"
    assert h200.markdown_table(h200.points()) in doc.read_text(encoding="utf-8"), (
        "docs/perf-model.md is stale: run make calibrate and paste the H200 table"
    )
