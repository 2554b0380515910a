"""The load generator: loopback only, bounded in count and time, Poisson with the class mix."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter

import pytest
from aiohttp import web

from gpumix.devcluster.loadgen import RequestClass, require_loopback, run_load


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5:8000", "http://192.168.1.2", "http://example.com", "http://[::1]:80"]
)
def test_targets_outside_loopback_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        require_loopback(url)


def test_loopback_targets_are_accepted() -> None:
    assert require_loopback("http://127.64.0.3:8000/") == "http://127.64.0.3:8000"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def streaming_backend(seen: list[dict[str, object]]) -> tuple[web.AppRunner, str]:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append({"body": body, "class": request.headers.get("x-gpumix-class")})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(int(body["max_tokens"])):
            chunk = {"choices": [{"delta": {"content": "x"}}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def test_load_is_bounded_by_count_and_follows_the_class_mix() -> None:
    classes = [RequestClass("chat", 100, 3, 70), RequestClass("rag", 2000, 2, 30)]

    async def scenario() -> None:
        seen: list[dict[str, object]] = []
        runner, url = await streaming_backend(seen)
        try:
            results = await run_load(
                [url],
                classes,
                rate=400,
                duration=30,
                max_requests=200,
                model="m",
                send_class_header=True,
            )
        finally:
            await runner.cleanup()
        assert len(results) == len(seen) == 200
        assert all(r.status == 200 and r.ttft_seconds is not None for r in results)
        shares = Counter(r.class_name for r in results)
        # 200 draws at 70 %: the binomial standard deviation is 6.5 requests; allow 4 of them.
        assert abs(shares["chat"] - 140) <= 26
        for request in seen:
            body = request["body"]
            assert isinstance(body, dict)
            expected = next(c for c in classes if c.name == request["class"])
            assert body["max_tokens"] == expected.output_tokens
            content = body["messages"][0]["content"]
            assert abs(len(content) / 4 - expected.input_tokens) <= 1

    asyncio.run(scenario())


def test_load_stops_at_its_duration() -> None:
    async def scenario() -> None:
        runner, url = await streaming_backend([])
        try:
            started = time.monotonic()
            results = await run_load(
                [url],
                [RequestClass("a", 10, 1, 1)],
                rate=50,
                duration=0.5,
                max_requests=10_000,
                model="m",
            )
            elapsed = time.monotonic() - started
        finally:
            await runner.cleanup()
        assert 5 <= len(results) <= 60  # about 25 arrivals in 0.5 s
        assert elapsed < 5

    asyncio.run(scenario())


async def test_load_against_the_simulator_counts_tokens_and_judges_the_slo() -> None:
    from gpumix.devcluster.loadgen import RequestClass, run_load
    from gpumix.sim import SimSettings, start_simulator

    handle = await start_simulator(
        SimSettings(served_model_names=("chat",), gpu="L4", max_model_len=4096), "127.0.0.1", 0
    )
    try:
        results = await run_load(
            [handle.url],
            [RequestClass("short", 64, 5, 1.0)],
            rate=20.0,
            duration=1.0,
            max_requests=6,
            model="chat",
        )
    finally:
        await handle.stop()
    assert results and all(r.status == 200 and r.output_tokens == 5 for r in results)
    assert all(r.tpot_seconds is not None and r.tpot_seconds > 0 for r in results)
    assert all(r.meets(ttft_seconds=10.0, tpot_seconds=10.0) for r in results)
    assert not any(r.meets(ttft_seconds=1e-6, tpot_seconds=10.0) for r in results)
    assert sorted(r.sent_at for r in results) == [r.sent_at for r in results]


def test_realised_shares_are_per_class_fractions_of_what_was_sent_in_between() -> None:
    from gpumix.devcluster.loadgen import realised_shares

    before = {("chat", "a"): 10.0, ("chat", "b"): 0.0, ("rag", "a"): 5.0}
    after = {("chat", "a"): 40.0, ("chat", "b"): 10.0, ("rag", "a"): 5.0, ("rag", "b"): 8.0}
    shares = realised_shares(before, after)
    assert shares == {
        ("chat", "a"): 0.75,
        ("chat", "b"): 0.25,
        ("rag", "a"): 0.0,
        ("rag", "b"): 1.0,
    }
