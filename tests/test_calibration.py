"""Capacity factors from live latencies: a configuration slower than gpumix.perf predicts is
de-rated (bounded, smoothed, deaf to noise), the planner sees it in the candidates'
throughputs, and the status and events say so."""

from __future__ import annotations

from typing import Any

import pytest

from gpumix import catalog
from gpumix.autoscaling.calibration import (
    DEAD_BAND,
    MAX_FACTOR,
    MIN_FACTOR,
    MIN_REQUESTS,
    LiveLatency,
    predicted_tpot,
    update,
)
from gpumix.autoscaling.prometheus import LatencyReading, LatencyRow
from gpumix.operator import indexes
from gpumix.operator.calibration import CapacityCalibration
from gpumix.planning import service_demand
from gpumix.resources import LLMService
from gpumix.solver import Pool
from gpumix.solver.candidates import PoolHardware

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
L4 = catalog.get_gpu("L4")


def live(tpot: float, *, requests: float = 200, batch: float = 8) -> LiveLatency:
    return LiveLatency(
        requests=requests,
        mean_batch=batch,
        mean_tpot_seconds=tpot,
        mean_input_tokens=512,
        mean_output_tokens=64,
    )


def predicted(batch: float = 8) -> float:
    return predicted_tpot(catalog.resolve_model(MODEL), L4, 1, "bf16", live(1.0, batch=batch))


def test_the_prediction_grows_with_the_measured_batch() -> None:
    assert predicted(batch=64) > predicted(batch=8) > predicted(batch=1) > 0


def test_three_times_slower_than_predicted_is_a_factor_of_a_third() -> None:
    model_tpot = predicted()
    factor = update(None, model_tpot, live(3 * model_tpot))
    assert factor is not None
    assert factor.value == pytest.approx(1 / 3, abs=0.01)


def test_noise_inside_the_dead_band_keeps_the_model_as_it_is() -> None:
    model_tpot = predicted()
    factor = None
    for ratio in (1.1, 0.92, 1.08, 0.95, 1.12):
        factor = update(factor, model_tpot, live(model_tpot * ratio))
    assert factor is not None and factor.value == 1.0
    assert abs(factor.smoothed - 1.0) <= DEAD_BAND


def test_a_window_with_few_requests_changes_nothing() -> None:
    model_tpot = predicted()
    assert update(None, model_tpot, live(5 * model_tpot, requests=MIN_REQUESTS - 1)) is None
    kept = update(None, model_tpot, live(2 * model_tpot))
    assert update(kept, model_tpot, live(10 * model_tpot, requests=3)) is kept


def test_factors_are_bounded_whatever_the_metric_says() -> None:
    model_tpot = predicted()
    slow = update(None, model_tpot, live(1000 * model_tpot))
    fast = update(None, model_tpot, live(model_tpot / 1000))
    assert slow is not None and slow.value == MIN_FACTOR
    assert fast is not None and fast.value == MAX_FACTOR


def test_a_recovered_configuration_moves_back_halfway_per_window() -> None:
    model_tpot = predicted()
    slow = update(None, model_tpot, live(2 * model_tpot))
    assert slow is not None and slow.value == pytest.approx(0.5, abs=0.01)
    recovering = update(slow, model_tpot, live(model_tpot))
    assert recovering is not None and recovering.value == pytest.approx(0.75, abs=0.01)


# -- the operator's side ----------------------------------------------------------------------


def service_body(name: str = "chat") -> dict[str, Any]:
    return {
        "apiVersion": "gpumix.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": "team-a", "uid": f"uid-{name}", "generation": 1},
        "spec": {
            "model": {"name": MODEL, "maxModelLen": 4096},
            "workload": {"requestsPerSecond": "4"},
        },
    }


def hardware() -> list[PoolHardware]:
    return [
        PoolHardware(Pool("l4-spot", "L4", "spot", 0.44, 16, 8), L4),
        PoolHardware(
            Pool("l40s-on-demand", "L40S", "on-demand", 1.4, 16, 8), catalog.get_gpu("L40S")
        ),
    ]


def slow_l4_reading(ratio: float) -> LatencyReading:
    return LatencyReading(
        (LatencyRow(("team-a", "chat"), "L4", 1, "bf16", live(ratio * predicted())),)
    )


def test_a_slow_pool_gets_a_factor_a_status_row_and_one_cause() -> None:
    calibration = CapacityCalibration(None)
    records = [indexes.service_record(service_body())]
    assert calibration.apply(slow_l4_reading(3.0), records, hardware())
    assert calibration.factors_for(MODEL) == {("L4", 1, "bf16"): pytest.approx(0.33, abs=0.01)}
    [row] = calibration.status_for(MODEL)
    assert (row.gpu_type, row.tensor_parallel, row.weight_format) == ("L4", 1, "bf16")
    assert float(row.measured_tpot_milliseconds) == pytest.approx(
        3 * float(row.predicted_tpot_milliseconds), rel=0.01
    )
    cause = calibration.take_causes()[MODEL]
    assert cause.startswith("calibration: L4 TP1 bf16 capacity ×1.00 → ×0.33")
    assert calibration.take_causes() == {}
    # Another model on the same GPUs is not affected.
    assert calibration.factors_for("Qwen/Qwen2.5-7B-Instruct") == {}


def test_a_configuration_as_fast_as_modelled_moves_nothing() -> None:
    calibration = CapacityCalibration(None)
    records = [indexes.service_record(service_body())]
    assert not calibration.apply(slow_l4_reading(1.05), records, hardware())
    assert calibration.factors_for(MODEL) == {}
    assert calibration.take_causes() == {}


def test_rows_of_unknown_services_or_gpus_are_ignored() -> None:
    calibration = CapacityCalibration(None)
    records = [indexes.service_record(service_body("other"))]
    assert not calibration.apply(slow_l4_reading(3.0), records, hardware())
    unknown_gpu = LatencyReading((LatencyRow(("team-a", "chat"), "B200", 1, "bf16", live(1.0)),))
    records = [indexes.service_record(service_body())]
    assert not calibration.apply(unknown_gpu, records, hardware())


def test_the_planner_sees_de_rated_throughputs_of_that_configuration_only() -> None:
    resource = LLMService.model_validate(service_body())
    plain = service_demand(resource, hardware())
    derated = service_demand(resource, hardware(), capacity_factors={("L4", 1, "bf16"): 0.25})

    def throughput(demand: Any, pool: str, tp: int) -> float | None:
        for candidate in demand.candidates:
            if (candidate.pool, candidate.tensor_parallel, candidate.weight_format) == (
                pool,
                tp,
                "bf16",
            ):
                return float(candidate.throughput_rps["default"])
        return None

    before = throughput(plain, "l4-spot", 1)
    after = throughput(derated, "l4-spot", 1)
    assert before is not None and after == pytest.approx(before / 4)
    # Other configurations keep their modelled throughput.
    assert throughput(derated, "l40s-on-demand", 1) == throughput(plain, "l40s-on-demand", 1)


def test_a_window_that_admitted_more_than_it_finished_is_a_transient_not_a_slow_gpu() -> None:
    model_tpot = predicted()
    finished_per_second = 200 / 300  # live()'s 200 requests over the 5 m window, one replica
    steady_window = live(3 * model_tpot)
    queueing = LiveLatency(
        requests=steady_window.requests,
        mean_batch=steady_window.mean_batch,
        mean_tpot_seconds=steady_window.mean_tpot_seconds,
        mean_input_tokens=512,
        mean_output_tokens=64,
        prompt_tokens_per_second=2 * finished_per_second * 512,  # a queue building up
    )
    assert update(None, model_tpot, queueing) is None
    balanced = LiveLatency(
        requests=200,
        mean_batch=8,
        mean_tpot_seconds=3 * model_tpot,
        mean_input_tokens=512,
        mean_output_tokens=64,
        prompt_tokens_per_second=finished_per_second * 512,
    )
    factor = update(None, model_tpot, balanced)
    assert factor is not None and factor.value == pytest.approx(1 / 3, abs=0.01)


def test_a_restarted_operator_resumes_the_factors_its_predecessor_wrote() -> None:
    before = CapacityCalibration(None)
    records = [indexes.service_record(service_body())]
    before.apply(slow_l4_reading(3.0), records, hardware())
    [row] = before.status_for(MODEL)
    body = service_body()
    body["status"] = {"calibration": [row.model_dump(mode="json", by_alias=True)]}
    after = CapacityCalibration(None)
    after.resume([indexes.service_record(body)])
    assert after.factors_for(MODEL) == before.factors_for(MODEL)


def test_the_dead_band_is_relative_to_the_factor_in_use() -> None:
    model_tpot = predicted()
    slow = update(None, model_tpot, live(3 * model_tpot))  # x0.33
    assert slow is not None
    # Recovering towards x0.5 is +50 % capacity: it moves the factor, though an absolute band
    # of 0.2 would call 0.33 -> 0.42 noise.
    better = slow
    for _ in range(4):
        better = update(better, model_tpot, live(2 * model_tpot))
    assert better is not None and better.value > 0.4
