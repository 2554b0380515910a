"""A virtual clock and a driver that replays arrivals through the simulator's engine."""

from __future__ import annotations

import random

from gpumix.catalog import get_gpu, get_model
from gpumix.perf import ServingConfig, WeightFormat
from gpumix.sim.engine import Engine, Sequence
from gpumix.sim.metrics import SimMetrics
from gpumix.sim.timing import StepTiming

MODEL = get_model("meta-llama/Llama-3.1-8B-Instruct")


class VirtualClock:
    """Time that only moves when the engine spends GPU time (or the driver jumps it)."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def config(gpu: str, tp: int = 1, weight_format: str = "bf16") -> ServingConfig:
    return ServingConfig(get_gpu(gpu), tp, WeightFormat(weight_format))


def engine(
    serving: ServingConfig,
    *,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int = 8192,
    kv_capacity_tokens: int | None = None,
) -> tuple[Engine, VirtualClock]:
    clock = VirtualClock()
    timing = StepTiming(MODEL, serving)
    built = Engine(
        timing,
        SimMetrics("m", 8192),
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        kv_capacity_tokens=kv_capacity_tokens or timing.kv_capacity_tokens(),
        clock=clock,
    )
    return built, clock


def poisson_arrivals(rate: float, count: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    times, t = [], 0.0
    for _ in range(count):
        t += rng.expovariate(rate)
        times.append(t)
    return times


async def replay(
    built: Engine, clock: VirtualClock, arrivals: list[float], prompt: int, output: int
) -> list[Sequence]:
    """Submit each request at its arrival time and step the engine until all are done."""
    pending = list(arrivals)
    sequences: list[Sequence] = []
    while pending or built.running or built.waiting:
        while pending and pending[0] <= clock.now():
            sequences.append(built.submit(prompt, output, arrival=pending.pop(0)))
        if not built.running and not built.waiting:
            clock.t = pending[0]  # idle: jump to the next arrival
            continue
        await built.step()
    return sequences


def ttft(sequence: Sequence) -> float:
    assert sequence.first_token_at is not None
    return sequence.first_token_at - sequence.arrival


def tpot(sequence: Sequence) -> float:
    assert sequence.first_token_at is not None and sequence.last_token_at is not None
    return (sequence.last_token_at - sequence.first_token_at) / (sequence.generated - 1)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
