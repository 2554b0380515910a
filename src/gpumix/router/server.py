"""The router's ASGI app and its uvicorn server, run in the caller's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Protocol

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from gpumix.router.choose import Chooser
from gpumix.router.metrics import RouterMetrics
from gpumix.router.proxy import Proxy
from gpumix.router.settings import RouterSettings
from gpumix.router.table import RouterState

log = logging.getLogger(__name__)

# Connections to backends stay open for reuse this long: a busy router reconnects rarely.
KEEPALIVE_SECONDS = 30.0


def upstream_client(settings: RouterSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        # No read timeout: a long generation is silent until its first token, and the client
        # decides how long it waits (its hang-up closes the upstream request).
        timeout=httpx.Timeout(None, connect=settings.connect_timeout_seconds),
        limits=httpx.Limits(
            max_connections=None, max_keepalive_connections=None, keepalive_expiry=KEEPALIVE_SECONDS
        ),
        # Never through an HTTP(S)_PROXY from the environment: pods are reached directly.
        trust_env=False,
        follow_redirects=False,
    )


def create_app(
    state: RouterState,
    settings: RouterSettings,
    *,
    metrics: RouterMetrics | None = None,
    chooser: Chooser | None = None,
) -> FastAPI:
    """The router's app for ``state``; its httpx client lives as long as the app's lifespan."""
    metrics = metrics if metrics is not None else RouterMetrics()
    chooser = chooser if chooser is not None else Chooser()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with upstream_client(settings) as client:
            app.state.proxy = Proxy(state, settings, client, metrics, chooser)
            yield

    app = FastAPI(
        title=f"gpumix router for {settings.namespace}/{settings.service}",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    def proxy() -> Proxy:
        return app.state.proxy  # type: ignore[no-any-return]

    # Routes take the raw Request: no body model, so nothing is parsed twice or validated
    # here that the backend validates anyway.

    async def completions(request: Request) -> Response:
        return await proxy().completions(request)

    async def chat_completions(request: Request) -> Response:
        return await proxy().chat_completions(request)

    async def models(request: Request) -> Response:
        return await proxy().models(request)

    async def health(request: Request) -> Response:
        return await proxy().health(request)

    async def metrics_page(request: Request) -> Response:
        return await proxy().metrics_page(request)

    app.add_api_route("/v1/completions", completions, methods=["POST"])
    app.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"])
    app.add_api_route("/v1/models", models, methods=["GET"])
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/metrics", metrics_page, methods=["GET"])
    return app


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class RouterHandle:
    """A running router: its bound port, and ``stop()``."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    watcher: Stoppable | None  # when the router watches the API itself

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        for server in self.server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("the router is not listening")

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await self.task
        finally:
            if self.watcher is not None:
                self.watcher.stop()


def _listening_socket(host: str, port: int) -> socket.socket:
    # Bound here, not by uvicorn: uvicorn answers a bind failure with sys.exit(), which would
    # end the process that hosts this router; here it is an OSError the caller can handle.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exit_:  # uvicorn's answer to a failed startup: not the host's exit
        raise RuntimeError(f"the router's server stopped at startup (exit {exit_.code})") from None
    finally:
        sock.close()


async def serve_router(
    settings: RouterSettings,
    host: str,
    port: int,
    *,
    state: RouterState | None = None,
    metrics: RouterMetrics | None = None,
    chooser: Chooser | None = None,
) -> RouterHandle:
    """Start a router in the running event loop and return once it accepts connections.

    Without ``state``, a :class:`~gpumix.router.watcher.Watcher` learns pods and the plan from
    the Kubernetes API (``settings.kubeconfig``, else in-cluster, else ``$KUBECONFIG``).
    """
    watcher = None
    if state is None:
        from gpumix.router.watcher import Watcher  # the Kubernetes client only when needed

        state = RouterState()
        watcher = Watcher(settings, state)
        watcher.start()
    app = create_app(state, settings, metrics=metrics, chooser=chooser)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,  # the request path must stay cheap; metrics count every request
        server_header=False,  # the backend's Server and Date headers are passed on instead
        date_header=False,
        proxy_headers=False,  # the client address is not used; skip the per-request middleware
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = _EmbeddedServer(config)
    try:
        sock = _listening_socket(host, port)
    except BaseException:
        if watcher is not None:
            watcher.stop()
        raise
    task = asyncio.create_task(_serve(server, sock), name=f"router {settings.service}")
    while not server.started:
        if task.done():
            if watcher is not None:
                watcher.stop()
            task.result()  # raises what stopped the server (e.g. address in use)
            raise RuntimeError("the router stopped before it started")
        await asyncio.sleep(0.01)
    return RouterHandle(server, task, watcher)
