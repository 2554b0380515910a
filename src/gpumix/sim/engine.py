"""A continuous-batching engine in the shape of vLLM V1's scheduler, timed by `gpumix.perf`.

Every step the scheduler builds one batch under a token budget (``--max-num-batched-tokens``):
first one token for each running sequence that is decoding, then the next chunk of any
running prompt, then new sequences from the waiting queue (first come, first served) while
there is a free slot (``--max-num-seqs``), token budget and KV cache. The step then takes
``StepTiming.step_seconds`` of (simulated) GPU time, after which every decoding sequence has
one more token and every prompt whose last chunk ran has its first token (vLLM samples it at
the end of the prefill). So TTFT includes queueing and prefill, and TPOT grows with batch.

KV cache: a sequence reserves ``prompt + tokens to generate`` when admitted, so the engine
never preempts (vLLM allocates blocks as it goes and preempts when they run out; reserving up
front admits slightly fewer long sequences, which errs on the side of the SLO). The reported
``kv_cache_usage_perc`` is the tokens actually held, as vLLM reports blocks in use.

Time: the engine sleeps on a ``Clock``. The real one is the event loop's; tests use a virtual
clock that jumps, so a minute of simulated load runs in milliseconds and exactly.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from gpumix.sim.metrics import SimMetrics
from gpumix.sim.timing import PromptChunk, StepTiming

BACK_TO_BACK_SECONDS = 0.005


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The event loop's monotonic clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(eq=False)
class Sequence:
    """One request inside the engine, and the stream of its tokens to the HTTP handler."""

    request_id: str
    prompt_tokens: int
    tokens_to_generate: int
    finish_reason_at_end: str  # "length" when max_tokens ran out, "stop" for a simulated EOS
    max_tokens_param: int | None
    arrival: float
    prefilled: int = 0
    generated: int = 0
    scheduled_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finish_reason: str | None = None
    _events: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)

    @property
    def reserved_kv_tokens(self) -> int:
        return self.prompt_tokens + self.tokens_to_generate

    @property
    def held_kv_tokens(self) -> int:
        return self.prefilled + self.generated

    @property
    def decoding(self) -> bool:
        return self.prefilled >= self.prompt_tokens

    async def tokens(self) -> AsyncIterator[int]:
        """Yields the index of each new token as the engine produces it, until finished."""
        while True:
            index = await self._events.get()
            if index is None:
                return
            yield index


class Engine:
    def __init__(
        self,
        timing: StepTiming,
        metrics: SimMetrics,
        *,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        kv_capacity_tokens: int,
        clock: Clock | None = None,
    ):
        self.timing = timing
        self.metrics = metrics
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.kv_capacity_tokens = kv_capacity_tokens
        self.clock: Clock = clock or LoopClock()
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.steps = 0
        self._step_end: float | None = None
        self._wake = asyncio.Event()
        self._ids = itertools.count()

    # ----- requests --------------------------------------------------------------------------

    def submit(
        self,
        prompt_tokens: int,
        tokens_to_generate: int,
        *,
        finish_reason: str = "length",
        max_tokens_param: int | None = None,
        arrival: float | None = None,
    ) -> Sequence:
        if prompt_tokens < 1 or tokens_to_generate < 1:
            raise ValueError("a sequence needs at least one prompt and one output token")
        if prompt_tokens + tokens_to_generate > self.kv_capacity_tokens:
            raise ValueError("the sequence is larger than the whole KV cache")
        sequence = Sequence(
            request_id=f"{next(self._ids):08x}",
            prompt_tokens=prompt_tokens,
            tokens_to_generate=tokens_to_generate,
            finish_reason_at_end=finish_reason,
            max_tokens_param=max_tokens_param,
            arrival=self.clock.now() if arrival is None else arrival,
        )
        self.waiting.append(sequence)
        self._publish_gauges()
        self._wake.set()
        return sequence

    def abort(self, sequence: Sequence) -> None:
        """The client went away: free its slot and KV at once."""
        if sequence.finish_reason is not None:
            return
        if sequence in self.running:
            self.running.remove(sequence)
        elif sequence in self.waiting:
            self.waiting.remove(sequence)
        self._finish(sequence, "abort", self.clock.now())
        self._publish_gauges()

    # ----- the step loop ---------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
            await self.step()

    async def step(self) -> None:
        """Schedule one batch, spend its GPU time, hand out its tokens."""
        decodes, chunks = self._schedule()
        if not decodes and not chunks:
            # nothing fits now (every waiting sequence needs more KV than is free, which
            # only happens while running sequences hold it): wait for the next arrival
            self._wake.clear()
            await self._wake.wait()
            return
        context = sum(s.prompt_tokens + s.generated for s in decodes) / max(1, len(decodes))
        prompt_chunks = [
            PromptChunk(chunk, s.prefilled, s.prefilled + chunk >= s.prompt_tokens)
            for s, chunk in chunks.items()
        ]
        seconds = self.timing.step_seconds(len(decodes), context, prompt_chunks)
        self.metrics.iteration_tokens.observe(len(decodes) + sum(chunks.values()))
        start = self.clock.now()
        if self._step_end is not None and start - self._step_end < BACK_TO_BACK_SECONDS:
            # back-to-back steps are timed from the previous step's end, so the event loop's
            # wake-up latency does not accumulate into the simulated GPU time
            start = self._step_end
        self._step_end = start + seconds
        await self.clock.sleep(max(0.0, self._step_end - self.clock.now()))
        self.steps += 1
        now = self.clock.now()
        for sequence in decodes:
            if sequence.finish_reason is None:  # not aborted during the step
                self._emit_token(sequence, now)
        for sequence, chunk in chunks.items():
            if sequence.finish_reason is not None:
                continue
            sequence.prefilled += chunk
            self.metrics.prompt_tokens.inc(chunk)
            if sequence.decoding:
                self._emit_token(sequence, now)
        self._publish_gauges()

    def _schedule(self) -> tuple[list[Sequence], dict[Sequence, int]]:
        budget = self.max_num_batched_tokens
        decodes = [s for s in self.running if s.decoding][:budget]
        budget -= len(decodes)
        chunks: dict[Sequence, int] = {}
        for sequence in self.running:
            if not sequence.decoding and budget > 0:
                chunks[sequence] = min(sequence.prompt_tokens - sequence.prefilled, budget)
                budget -= chunks[sequence]
        reserved = sum(s.reserved_kv_tokens for s in self.running)
        now = self.clock.now()
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            candidate = self.waiting[0]
            if reserved + candidate.reserved_kv_tokens > self.kv_capacity_tokens:
                break  # first come, first served: no overtaking by smaller requests
            self.waiting.popleft()
            self.running.append(candidate)
            candidate.scheduled_at = now
            reserved += candidate.reserved_kv_tokens
            chunks[candidate] = min(candidate.prompt_tokens, budget)
            budget -= chunks[candidate]
        return decodes, chunks

    def _emit_token(self, sequence: Sequence, now: float) -> None:
        index = sequence.generated
        sequence.generated += 1
        self.metrics.generation_tokens.inc()
        if sequence.first_token_at is None:
            sequence.first_token_at = now
            self.metrics.time_to_first_token.observe(now - sequence.arrival)
        elif sequence.last_token_at is not None:
            self.metrics.inter_token_latency.observe(now - sequence.last_token_at)
        sequence.last_token_at = now
        sequence._events.put_nowait(index)
        if sequence.generated >= sequence.tokens_to_generate:
            self.running.remove(sequence)
            self._finish(sequence, sequence.finish_reason_at_end, now)

    def _finish(self, sequence: Sequence, reason: str, now: float) -> None:
        sequence.finish_reason = reason
        sequence._events.put_nowait(None)
        metrics = self.metrics
        metrics.request_success[reason].inc()
        metrics.e2e_latency.observe(now - sequence.arrival)
        scheduled = sequence.scheduled_at if sequence.scheduled_at is not None else now
        first = sequence.first_token_at if sequence.first_token_at is not None else now
        metrics.queue_time.observe(scheduled - sequence.arrival)
        metrics.inference_time.observe(now - scheduled)
        metrics.prefill_time.observe(first - scheduled)
        metrics.decode_time.observe(now - first)
        if sequence.generated > 1:
            metrics.time_per_output_token.observe((now - first) / (sequence.generated - 1))
        metrics.request_prompt_tokens.observe(sequence.prompt_tokens)
        metrics.request_generation_tokens.observe(sequence.generated)
        if sequence.max_tokens_param is not None:
            metrics.request_max_tokens.observe(sequence.max_tokens_param)

    def _publish_gauges(self) -> None:
        self.metrics.running.set(len(self.running))
        self.metrics.waiting.set(len(self.waiting))
        held = sum(s.held_kv_tokens for s in self.running)
        self.metrics.kv_cache_usage.set(held / self.kv_capacity_tokens)
