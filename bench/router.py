"""Router benchmark: `python -m bench.router` (or `make bench`) -> bench/results/router.md.

What the router adds to a request, measured the only way that isolates it: the same load sent
once straight to an upstream and once through `gpumix router` in front of it, and the
difference of the two latency distributions.

- The upstream speaks vLLM's completions API (the simulator's wire format: an SSE chunk per
  token, then ``[DONE]``) at a fixed cadence: first chunk at once, then one every
  ``--chunk-interval-ms``. Not `gpumix sim`: its step model charges every prefill a full read
  of the weights (issue 9), so at a few hundred concurrent streams its own queueing is seconds
  and swamps a difference of milliseconds. A fixed cadence leaves only the router to measure.
- The router runs in its own process pinned to core 0 (uvloop, as `gpumix router` runs it),
  with a fixed routing table naming the upstream: no Kubernetes API is involved.
- The upstream and this load generator share core 1, so the router has a core to itself.
- Closed loop: 50, 200 and 500 concurrent streams, each one streamed completion after another.
  Reported: time to first byte (per request) and the gap between streamed chunks (per chunk),
  p50 and p99, direct and routed; "added" is routed minus direct at the same percentile.
- Open loop: a Poisson ladder of short non-streamed requests; the highest rate whose p99
  added latency stays under 5 ms.

Every address is 127.0.0.1; every load is bounded in count and time. The results file keeps
everything from the ``<!-- notes -->`` line on (analysis written by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.report import machine, write_keeping_notes

ROUTER_CORE, LOAD_CORE = 0, 1
CONCURRENCIES = (50, 200, 500)
RATES = (10, 25, 50, 100, 200)  # requests/s, open loop
ADDED_P99_TARGET_MS = 5.0
MODEL = "bench"
RESULTS = Path(__file__).parent / "results" / "router.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(core: int) -> None:
    """Pin this process to ``core`` when the machine has it (a 1-core machine shares it)."""
    if hasattr(os, "sched_setaffinity") and core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the processes under test

CHUNK = {  # the shape of one vLLM streamed completion chunk (~200 bytes on the wire)
    "id": "cmpl-0123456789abcdef",
    "object": "text_completion",
    "created": 0,
    "model": MODEL,
    "choices": [{"index": 0, "text": " token", "logprobs": None, "finish_reason": None}],
}


def serve_upstream(port: int, chunk_interval_seconds: float) -> None:
    """The upstream process: completions at a fixed cadence (see the module docstring)."""
    from aiohttp import web

    chunk = b"data: " + json.dumps(CHUNK).encode() + b"\n\n"

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        tokens = int(body.get("max_tokens") or 16)
        if not body.get("stream"):
            return web.json_response({**CHUNK, "usage": {"completion_tokens": tokens}})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for index in range(tokens):
            if index:
                await asyncio.sleep(chunk_interval_seconds)
            await response.write(chunk)
        await response.write(b"data: [DONE]\n\n")
        return response

    pin(LOAD_CORE)
    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_floor(port: int, upstream: str) -> None:
    """A reference, not a router: the least a Python proxy can do (aiohttp server and client,
    no routing, no metrics, no fault handling). Its CPU cost is the floor for any Python data
    path, so the gap to it says what a leaner implementation could win."""
    import uvloop
    from aiohttp import web

    pin(ROUTER_CORE)

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def forward(request: web.Request) -> web.StreamResponse:
                body = await request.read()
                headers = {"content-type": "application/json"}
                async with session.post(upstream + request.path, data=body, headers=headers) as up:
                    response = web.StreamResponse(
                        status=up.status, headers={"content-type": up.content_type}
                    )
                    await response.prepare(request)
                    async for chunk in up.content.iter_any():
                        await response.write(chunk)
                    await response.write_eof()
                    return response

            app = web.Application()
            app.router.add_post("/v1/completions", forward)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            await asyncio.Event().wait()

    uvloop.run(main())


def serve_router(port: int, upstream: str) -> None:
    """The router process: `gpumix router`'s app and loop with a fixed one-pod table."""
    import uvloop

    from gpumix.router import RouterSettings, RouterState, RoutingTable, serve_router
    from gpumix.router.table import PlanEntry, RequestClass

    pin(ROUTER_CORE)
    table = RoutingTable(
        classes=(RequestClass("chat", 128, 64),),
        entries=(PlanEntry("sim", {"chat": 1.0}),),
        ready_pods={"sim": (upstream,)},
    )
    settings = RouterSettings(namespace="bench", service="bench")

    async def main() -> None:
        handle = await serve_router(
            settings, "127.0.0.1", port, state=RouterState(table, synced=True)
        )
        await handle.task

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


@contextlib.contextmanager
def process(argv: list[str], port: int) -> Iterator[int]:
    """Start ``argv``, wait until 127.0.0.1:``port`` accepts connections, stop it at the end."""
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if child.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{argv[1:4]} exited: {log.read().decode()[-2000:]}")
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"127.0.0.1:{port} never answered")
                time.sleep(0.1)
            yield child.pid
        finally:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


# --- load -----------------------------------------------------------------------------------


@dataclass
class Samples:
    first_byte: list[float] = field(default_factory=list)  # seconds, one per request
    chunk_gaps: list[float] = field(default_factory=list)  # seconds, one per streamed chunk
    latency: list[float] = field(default_factory=list)  # seconds, whole non-streamed request
    errors: int = 0

    def ms(self, values: list[float], q: float) -> float:
        return percentile(values, q) * 1000


def completion(max_tokens: int, stream: bool) -> bytes:
    prompt = "Summarise the router benchmark in one line. " * 4  # a short chat turn
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "stream": stream}
    return json.dumps(body).encode()


async def streamed(
    session: aiohttp.ClientSession, url: str, body: bytes, samples: Samples, measure: bool
) -> None:
    started = time.perf_counter()
    async with session.post(
        f"{url}/v1/completions", data=body, headers={"content-type": "application/json"}
    ) as response:
        if response.status != 200:
            samples.errors += 1
            await response.read()
            return
        last = None
        async for _chunk in response.content.iter_any():
            now = time.perf_counter()
            if measure:
                if last is None:
                    samples.first_byte.append(now - started)
                else:
                    samples.chunk_gaps.append(now - last)
            last = now


async def closed_loop(url: str, streams: int, seconds: float, max_tokens: int) -> Samples:
    """``streams`` clients, each sending one streamed completion after another for ``seconds``
    (the first ``seconds / 5`` warm up and are not measured)."""
    samples = Samples()
    body = completion(max_tokens, stream=True)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        begin = time.perf_counter()
        warm_until, end = begin + seconds / 5, begin + seconds

        async def client(index: int) -> None:
            await asyncio.sleep(index * 0.002)  # stagger the starts
            while time.perf_counter() < end:
                try:
                    await streamed(session, url, body, samples, time.perf_counter() > warm_until)
                except (TimeoutError, aiohttp.ClientError):
                    samples.errors += 1

        await asyncio.gather(*(client(i) for i in range(streams)))
    return samples


async def open_loop(url: str, rate: float, seconds: float) -> Samples:
    """Poisson arrivals of one-token non-streamed completions at ``rate`` for ``seconds``
    (the first ``seconds / 5`` warm connections up and are not measured)."""
    samples = Samples()
    body = completion(1, stream=False)
    rng = random.Random(11)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(measure: bool) -> None:
            started = time.perf_counter()
            try:
                async with session.post(
                    f"{url}/v1/completions",
                    data=body,
                    headers={"content-type": "application/json"},
                ) as response:
                    await response.read()
                    if response.status != 200:
                        samples.errors += 1
                        return
            except (TimeoutError, aiohttp.ClientError):
                samples.errors += 1
                return
            if measure:
                samples.latency.append(time.perf_counter() - started)

        tasks = []
        begin = time.perf_counter()
        at = begin
        for _ in range(int(rate * seconds)):  # bounded in count and time
            at += rng.expovariate(rate)
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(at - begin > seconds / 5)))
        await asyncio.gather(*tasks)
    return samples


# --- the report -----------------------------------------------------------------------------


@contextlib.contextmanager
def upstream_and_router(chunk_interval_ms: float) -> Iterator[tuple[str, str]]:
    """The upstream on the load core and a router on its own core in front of it: their URLs."""
    upstream_port, router_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    me = [sys.executable, "-m", "bench.router"]
    upstream = [*me, "--serve-upstream", str(upstream_port), str(chunk_interval_ms)]
    router = [*me, "--serve-router", str(router_port), upstream_url]
    with process(upstream, upstream_port), process(router, router_port):
        yield upstream_url, f"http://127.0.0.1:{router_port}"


def streaming_table(args: argparse.Namespace) -> list[str]:
    rows, added = [], []
    with upstream_and_router(args.chunk_interval_ms) as (upstream_url, router_url):
        for streams in args.streams:
            results = {}
            for path, url in (("direct", upstream_url), ("router", router_url)):
                s = asyncio.run(closed_loop(url, streams, args.seconds, args.max_tokens))
                results[path] = s
                rows.append(
                    f"| {streams} | {path} | {len(s.first_byte)} "
                    f"| {len(s.chunk_gaps) / (args.seconds * 0.8):.0f} "
                    f"| {s.ms(s.first_byte, 0.5):.1f} | {s.ms(s.first_byte, 0.99):.1f} "
                    f"| {s.ms(s.chunk_gaps, 0.5):.1f} | {s.ms(s.chunk_gaps, 0.99):.1f} "
                    f"| {s.errors} |"
                )
                print(rows[-1], flush=True)
            d, r = results["direct"], results["router"]
            added.append(
                f"| {streams} | {r.ms(r.first_byte, 0.5) - d.ms(d.first_byte, 0.5):+.1f} "
                f"| {r.ms(r.first_byte, 0.99) - d.ms(d.first_byte, 0.99):+.1f} "
                f"| {r.ms(r.chunk_gaps, 0.5) - d.ms(d.chunk_gaps, 0.5):+.1f} "
                f"| {r.ms(r.chunk_gaps, 0.99) - d.ms(d.chunk_gaps, 0.99):+.1f} |"
            )
    return [
        f"## Closed loop: streamed completions of {args.max_tokens} chunks, "
        f"{args.chunk_interval_ms:g} ms apart",
        "",
        "| streams | path | requests | chunks/s | first chunk p50 | first chunk p99 "
        "| chunk gap p50 | chunk gap p99 | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Added by the router (ms):",
        "",
        "| streams | first chunk p50 | first chunk p99 | chunk gap p50 | chunk gap p99 |",
        "|---:|---:|---:|---:|---:|",
        *added,
    ]


def rate_ladder(args: argparse.Namespace) -> list[str]:
    """Each rate ``args.repeats`` times, direct and routed alternating. Percentiles are over the
    pooled samples of all runs (one 10 s run at 10 req/s has ~80 samples: its p99 is its
    worst one); the spread of the per-run figures is shown beside them."""
    rows, held, failed = [], None, False
    with upstream_and_router(args.chunk_interval_ms) as (upstream_url, router_url):
        for rate in args.rates:
            direct, routed, per_run = Samples(), Samples(), []
            for _ in range(args.repeats):
                d = asyncio.run(open_loop(upstream_url, rate, args.seconds))
                r = asyncio.run(open_loop(router_url, rate, args.seconds))
                per_run.append(r.ms(r.latency, 0.99) - d.ms(d.latency, 0.99))
                direct.latency += d.latency
                routed.latency += r.latency
                routed.errors += r.errors
            added_p50 = routed.ms(routed.latency, 0.5) - direct.ms(direct.latency, 0.5)
            added_p99 = routed.ms(routed.latency, 0.99) - direct.ms(direct.latency, 0.99)
            ok = added_p99 < ADDED_P99_TARGET_MS and not routed.errors
            failed = failed or not ok
            if not failed:
                held = rate  # the highest rate of an unbroken run of passes from the lowest
            rows.append(
                f"| {rate} | {len(routed.latency)} | {direct.ms(direct.latency, 0.5):.1f} "
                f"| {direct.ms(direct.latency, 0.99):.1f} | {routed.ms(routed.latency, 0.5):.1f} "
                f"| {routed.ms(routed.latency, 0.99):.1f} | {added_p50:+.1f} | {added_p99:+.1f} "
                f"| {min(per_run):+.1f} … {max(per_run):+.1f} | {routed.errors} "
                f"| {'yes' if ok else 'no'} |"
            )
            print(rows[-1], flush=True)
    return [
        f"## Open loop: non-streamed completions, Poisson arrivals, {args.repeats} runs of "
        f"{args.seconds:g} s per rate, pooled",
        "",
        "| rate (req/s) | routed n | direct p50 | direct p99 | routed p50 | routed p99 "
        "| added p50 | added p99 | added p99 per run | routed errors "
        f"| added p99 < {ADDED_P99_TARGET_MS:g} ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
        *rows,
        "",
        f"Highest rate held with p99 added latency under {ADDED_P99_TARGET_MS:g} ms (it and "
        "every lower rate): "
        + (f"**{held} requests/s**." if held else "**none of the rates tried**."),
    ]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_table(args: argparse.Namespace) -> list[str]:
    """CPU time the proxy process spends per request and per streamed chunk, under a load
    it holds (read from /proc, so it does not depend on latency noise)."""
    rows = []
    for name, mode in (("gpumix router", "--serve-router"), ("aiohttp floor", "--serve-floor")):
        upstream_port, proxy_port = free_port(), free_port()
        upstream_url, proxy_url = (
            f"http://127.0.0.1:{upstream_port}",
            f"http://127.0.0.1:{proxy_port}",
        )
        me = [sys.executable, "-m", "bench.router"]
        upstream = [*me, "--serve-upstream", str(upstream_port), str(args.chunk_interval_ms)]
        proxy = [*me, mode, str(proxy_port), upstream_url]
        with process(upstream, upstream_port), process(proxy, proxy_port) as pid:
            before = cpu_seconds(pid)
            requests = asyncio.run(open_loop(proxy_url, 20, args.seconds))
            middle = cpu_seconds(pid)
            streams = asyncio.run(closed_loop(proxy_url, 20, args.seconds, args.max_tokens))
            after = cpu_seconds(pid)
        # the warm-up fifth of each load is not in the samples but is in the CPU time
        sent = len(requests.latency) * 1.25
        chunks = (len(streams.chunk_gaps) + len(streams.first_byte)) * 1.25
        rows.append(
            f"| {name} | {(middle - before) * 1000 / sent:.2f} "
            f"| {(after - middle) * 1000 / chunks:.3f} |"
        )
        print(rows[-1], flush=True)
    return [
        "## CPU per request and per streamed chunk (the proxy process, from /proc)",
        "",
        f"20 req/s of non-streamed completions, then 20 streams of {args.max_tokens} chunks, "
        f"{args.seconds:g} s each. The aiohttp floor is a 25-line pass-through (`serve_floor` "
        "in bench/router.py): no routing, metrics or retries.",
        "",
        "| proxy | CPU ms per request | CPU ms per chunk |",
        "|---|---:|---:|",
        *rows,
    ]


def run(args: argparse.Namespace) -> list[str]:
    pin(LOAD_CORE)
    command = "python -m bench.router " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
        if not k.startswith("serve_")
    )
    return [
        "# Router benchmark",
        "",
        f"`{command}` on {machine()}; {time.strftime('%Y-%m-%d')}.",
        "",
        f"The router runs alone on core {ROUTER_CORE} (uvloop, FastAPI, httpx); the fixed-cadence "
        f"upstream and the load generator share core {LOAD_CORE}. Added = routed minus direct "
        "at the same percentile under the same load. Times in ms.",
        "",
        *streaming_table(args),
        "",
        *rate_ladder(args),
        "",
        *cpu_table(args),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="*", default=list(CONCURRENCIES))
    parser.add_argument("--rates", type=int, nargs="*", default=list(RATES))
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured point")
    parser.add_argument("--repeats", type=int, default=3, help="runs per open-loop rate")
    parser.add_argument("--max-tokens", type=int, default=32, help="per streamed request")
    parser.add_argument(
        "--chunk-interval-ms", type=float, default=40.0, help="upstream time between chunks"
    )
    parser.add_argument(
        "--serve-floor", nargs=2, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS
    )
    parser.add_argument("--serve-upstream", nargs=2, metavar=("PORT", "MS"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--serve-router", nargs=2, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_upstream:
        port, interval_ms = args.serve_upstream
        serve_upstream(int(port), float(interval_ms) / 1000)
        return
    if args.serve_floor:
        port, upstream = args.serve_floor
        serve_floor(int(port), upstream)
        return
    if args.serve_router:
        port, upstream = args.serve_router
        serve_router(int(port), upstream.removeprefix("http://"))
        return
    write_keeping_notes(RESULTS, run(args))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
