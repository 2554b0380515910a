"""Backends and a router on 127.0.0.1 for the router tests (free ports, nothing else reached)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import httpx
from aiohttp import web

from gpumix.router import RouterSettings, RouterState, RoutingTable, serve_router
from gpumix.router.choose import Chooser
from gpumix.router.metrics import RouterMetrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def closed_port() -> str:
    """``127.0.0.1:port`` where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


class Backend:
    """An aiohttp server on a free 127.0.0.1 port; counts the requests it receives."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[tuple[str, bytes, Mapping[str, str]]] = []
        self.address = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, await request.read(), dict(request.headers)))
        return await self.handler(request)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Backend]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Cancel the handler when the client (the router) hangs up: how the tests see it.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.address = f"127.0.0.1:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()


def json_backend(name: str, status: int = 200) -> Backend:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"served_by": name}, status=status)

    return Backend(handler)


SETTINGS = RouterSettings(namespace="team-a", service="chat", retry_after_seconds=3)


class RunningRouter:
    def __init__(self, url: str, metrics: RouterMetrics, state: RouterState) -> None:
        self.url = url
        self.metrics = metrics
        self.state = state

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, trust_env=False, **kwargs)  # type: ignore[arg-type]

    def sample(self, name: str, labels: Mapping[str, str]) -> float:
        value = self.metrics.registry.get_sample_value(name, dict(labels))
        return 0.0 if value is None else value


@contextlib.asynccontextmanager
async def running_router(
    table: RoutingTable, *, synced: bool = True, seed: int = 7
) -> AsyncIterator[RunningRouter]:
    state = RouterState(table, synced=synced)
    metrics = RouterMetrics()
    handle = await serve_router(
        SETTINGS,
        "127.0.0.1",
        0,
        state=state,
        metrics=metrics,
        chooser=Chooser(random.Random(seed)),
    )
    try:
        yield RunningRouter(f"http://127.0.0.1:{handle.port}", metrics, state)
    finally:
        await handle.stop()


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
