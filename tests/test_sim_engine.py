"""The simulator's engine batches like vLLM and takes the time gpumix.perf gives each step."""

from __future__ import annotations

import pytest

from gpumix.perf import (
    LatencySLO,
    RequestShape,
    decode_step_seconds,
    predict,
    prefill_seconds,
)
from gpumix.perf.serving import ReplicaModel
from gpumix.perf.timing import StepWork, step_seconds
from gpumix.sim.timing import PromptChunk, StepTiming
from sim_support import (
    MODEL,
    config,
    engine,
    percentile,
    poisson_arrivals,
    replay,
    tpot,
    ttft,
)


@pytest.mark.parametrize("gpu", ["A10G", "L40S", "H100-80GB"])
@pytest.mark.parametrize("batch", [1, 8, 16])
async def test_decode_at_batch_b_takes_perf_s_decode_step_at_b(gpu: str, batch: int) -> None:
    serving = config(gpu)
    built, clock = engine(serving)
    sequences = await replay(built, clock, [0.0] * batch, prompt=512, output=64)
    # one step prefilled all prompts (batch x 512 <= 8192 tokens), so every request saw it
    prompts = StepWork(
        prefill_tokens=batch * 512, prefill_pairs=batch * 512 * 512 / 2, prompts_sampled=batch
    )
    expected_ttft = step_seconds(MODEL, serving, prompts)
    assert all(ttft(s) == pytest.approx(expected_ttft) for s in sequences)
    # then every step decoded the whole batch: the mean TPOT is perf's step at that batch
    mean_step = ReplicaModel(MODEL, serving, RequestShape(512, 64)).decode_step(batch)
    assert tpot(sequences[0]) == pytest.approx(mean_step, rel=0.01)
    assert all(s.generated == 64 and s.finish_reason == "length" for s in sequences)


async def test_tpot_grows_with_batch() -> None:
    serving = config("L4")
    tpots = []
    for batch in (1, 16, 64):
        built, clock = engine(serving)
        sequences = await replay(built, clock, [0.0] * batch, prompt=128, output=32)
        tpots.append(tpot(sequences[-1]))
    assert tpots[0] < tpots[1] < tpots[2]


async def test_requests_past_max_num_seqs_wait_in_the_queue() -> None:
    built, _clock = engine(config("A10G"), max_num_seqs=4)
    for _ in range(6):
        built.submit(256, 16, arrival=0.0)
    await built.step()
    assert (len(built.running), len(built.waiting)) == (4, 2)
    assert built.metrics.running._value.get() == 4
    assert built.metrics.waiting._value.get() == 2


async def test_the_fifth_request_starts_after_the_first_four_end() -> None:
    built, _clock = engine(config("A10G"), max_num_seqs=4)
    sequences = [built.submit(256, 16, arrival=0.0) for _ in range(5)]
    while built.running or built.waiting:
        await built.step()
    first_four_end = max(s.last_token_at or 0.0 for s in sequences[:4])
    assert sequences[4].scheduled_at is not None
    assert sequences[4].scheduled_at >= first_four_end
    assert ttft(sequences[4]) > ttft(sequences[0]) + 15 * tpot(sequences[0])


async def test_a_long_prompt_is_prefilled_in_chunks_of_the_token_budget() -> None:
    serving = config("H100-80GB")
    built, _clock = engine(serving, max_num_batched_tokens=2048)
    sequence = built.submit(8000, 4, arrival=0.0)
    steps = 0
    while sequence.first_token_at is None:
        await built.step()
        steps += 1
    assert steps == 4  # 2048 + 2048 + 2048 + 1856
    chunks = [PromptChunk(2048, 0, False), PromptChunk(2048, 2048, False)]
    chunks += [PromptChunk(2048, 4096, False), PromptChunk(1856, 6144, True)]
    timing = StepTiming(MODEL, serving)
    assert ttft(sequence) == pytest.approx(sum(timing.step_seconds(0, 0.0, [c]) for c in chunks))
    # later chunks attend to the chunks before them, so they take longer
    assert timing.step_seconds(0, 0.0, [chunks[2]]) > timing.step_seconds(0, 0.0, [chunks[0]])


async def test_kv_cache_bounds_the_batch_and_is_reported() -> None:
    built, _clock = engine(config("A10G"), kv_capacity_tokens=4 * 1024)
    for _ in range(8):
        built.submit(768, 256, arrival=0.0)  # 1024 tokens each: four fit
    await built.step()
    assert len(built.running) == 4
    usage = built.metrics.kv_cache_usage._value.get()
    assert usage == pytest.approx((4 * 768 + 4) / (4 * 1024))  # prompts and first tokens held


async def test_an_aborted_request_frees_its_slot_at_once() -> None:
    built, _clock = engine(config("A10G"), max_num_seqs=1)
    first = built.submit(128, 100, arrival=0.0)
    second = built.submit(128, 4, arrival=0.0)
    await built.step()
    built.abort(first)
    assert first.finish_reason == "abort"
    await built.step()
    assert second in built.running
    assert built.metrics.request_success["abort"]._value.get() == 1


@pytest.mark.parametrize(
    ("gpu", "prompt", "output", "ttft_target"),
    [
        ("A10G", 512, 256, 2.0),
        ("L4", 512, 256, 2.0),
        ("H100-80GB", 512, 256, 2.0),
        # short outputs: several prompts land in one step, so the steps turn compute-bound
        # (a model averaging the prompt work over steps sold this L4 60 % too much)
        ("L4", 256, 32, 1.0),
        ("L40S", 4096, 256, 2.0),
    ],
)
async def test_a_replica_meets_its_slo_below_planned_capacity_and_misses_it_past_it(
    gpu: str, prompt: int, output: int, ttft_target: float
) -> None:
    """Open-loop Poisson load at 0.7x and 1.5x of the capacity the planner buys: below it the
    mean TPOT and the p90 TTFT meet the targets, past it TTFT does not."""
    serving = config(gpu)
    shape, slo = RequestShape(prompt, output), LatencySLO(ttft_target, tpot_seconds=0.1)
    capacity = predict(MODEL, serving, shape, slo, 8192).max_requests_per_second
    assert capacity > 0
    results = {}
    for factor in (0.7, 1.5):
        built, clock = engine(serving)
        arrivals = poisson_arrivals(factor * capacity, 600)
        sequences = (await replay(built, clock, arrivals, prompt, output))[150:]  # warm-up
        results[factor] = (
            percentile([ttft(s) for s in sequences], 0.9),
            sum(tpot(s) for s in sequences) / len(sequences),
        )
    ttft_light, tpot_light = results[0.7]
    ttft_heavy, _ = results[1.5]
    assert ttft_light <= slo.ttft_seconds
    assert tpot_light <= slo.tpot_seconds
    assert ttft_heavy > slo.ttft_seconds


def test_a_step_of_decodes_and_a_prompt_reads_the_weights_once_times_the_slowdown() -> None:
    serving = config("L40S")
    timing = StepTiming(MODEL, serving, slowdown_factor=2.0)
    mixed = StepWork(decode_sequences=8, decode_context=600.0, prefill_tokens=300,
                     prefill_pairs=300 * 150, prompts_sampled=1)  # fmt: skip
    assert timing.step_seconds(8, 600.0, [PromptChunk(300)]) == pytest.approx(
        2 * step_seconds(MODEL, serving, mixed)
    )
    apart = decode_step_seconds(MODEL, serving, 8, 600.0) + prefill_seconds(MODEL, serving, 300)
    assert timing.step_seconds(8, 600.0, [PromptChunk(300)]) < 2 * apart
    assert timing.step_seconds(0, 0.0, []) == 0.0
