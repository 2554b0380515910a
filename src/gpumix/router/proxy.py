"""The request path: classify, choose a pod, forward, stream the answer back unbuffered.

- The client sees the backend's status code, headers and body as they come: the body is passed
  on chunk by chunk as raw bytes (``aiter_raw``), for streams and plain answers alike.
- A connection refused, timed out or reset before the backend's first byte is retried on
  another pod, up to two times: first in the same configuration if it has another pod, then
  anywhere the class may go. After the first byte nothing is retried: the client may already
  hold part of the answer.
- A client that hangs up, while the router waits for the backend or while it streams, closes
  the upstream request, so the backend stops generating for nobody.
- Errors of the router's own are OpenAI-style: ``{"error": {"message", "type", "param",
  "code"}}``: 400 for a body that is not a JSON object or an unknown ``x-gpumix-class``, 502
  when no pod accepted the connection, 503 with ``Retry-After`` when no pod is Ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from gpumix.router.choose import Chooser, Pick
from gpumix.router.classify import CLASS_HEADER, RequestSize, chat_size, completion_size
from gpumix.router.classify import nearest_class as nearest_class_of
from gpumix.router.metrics import RouterMetrics
from gpumix.router.settings import RouterSettings
from gpumix.router.table import RouterState

log = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499  # nginx's code for "the client hung up first"

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones httpx and uvicorn compute themselves.
_REQUEST_HEADERS_DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
_RESPONSE_HEADERS_DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-connection",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# A request is sent to at most this many pods: a migration's new configuration can show Ready
# pods that are not listening yet (an endpoint list is never quite current), so one retry in
# the same configuration is not always enough.
UPSTREAM_ATTEMPTS = 3
# Failures that happen before the backend sent anything: safe to try another pod.
RETRIABLE = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)


def openai_error(
    status: int,
    message: str,
    *,
    kind: str,
    code: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class ClientGone(Exception):
    """The client hung up before the backend answered."""


class DisconnectWatch:
    """Waits for the client's ``http.disconnect`` in a task of its own.

    Started once the request body is read, so every later ASGI message is a disconnect (or the
    server's notice that the response is complete).
    """

    def __init__(self, receive: Receive) -> None:
        self.task: asyncio.Future[None] = asyncio.ensure_future(self._wait(receive))

    @staticmethod
    async def _wait(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    def stop(self) -> None:
        self.task.cancel()


class Proxy:
    """The OpenAI paths of one LLMService's router."""

    def __init__(
        self,
        state: RouterState,
        settings: RouterSettings,
        client: httpx.AsyncClient,
        metrics: RouterMetrics,
        chooser: Chooser,
    ) -> None:
        self.state = state
        self.settings = settings
        self.client = client
        self.metrics = metrics
        self.chooser = chooser
        self.in_flight: dict[str, int] = {}

    # -- routes -----------------------------------------------------------------------------

    async def completions(self, request: Request) -> Response:
        return await self._forward_inference(request, "/v1/completions", completion_size)

    async def chat_completions(self, request: Request) -> Response:
        return await self._forward_inference(request, "/v1/chat/completions", chat_size)

    async def models(self, request: Request) -> Response:
        # Every pod serves the same model names: ask any Ready one (the least busy).
        pick = self.chooser.pick(self.state.table, "", self.in_flight)
        if pick is None:
            return self._no_ready_pods(None, time.perf_counter())
        return await self._forward(request, "/v1/models", b"", pick, None, time.perf_counter())

    async def health(self, request: Request) -> Response:
        ready_pods = len(self.state.table.all_pods)
        if not self.state.synced:
            return JSONResponse({"status": "starting", "readyPods": ready_pods}, status_code=503)
        return JSONResponse({"status": "ok", "readyPods": ready_pods})

    async def metrics_page(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # -- the request path -------------------------------------------------------------------

    async def _forward_inference(
        self, request: Request, path: str, size_of: Callable[[Mapping[str, Any]], RequestSize]
    ) -> Response:
        arrived = time.perf_counter()
        body = await request.body()
        try:
            payload = json.loads(body)
        except ValueError:  # also UnicodeDecodeError
            payload = None
        if not isinstance(payload, dict):
            self.metrics.observe_request("", "", 400, 0.0)
            return openai_error(
                400, "the request body must be a JSON object", kind="invalid_request_error",
                code="invalid_json",
            )  # fmt: skip
        table = self.state.table
        estimated = nearest_class_of(size_of(payload), table.classes).name
        header_class = request.headers.get(CLASS_HEADER)
        if header_class is None:
            class_name = estimated
        elif table.class_named(header_class) is None:
            self.metrics.observe_request("", "", 400, 0.0)
            known = ", ".join(c.name for c in table.classes)
            return openai_error(
                400,
                f"unknown request class {header_class!r} in {CLASS_HEADER}; this service's "
                f"classes are: {known}",
                kind="invalid_request_error",
                param=CLASS_HEADER,
                code="unknown_class",
            )
        else:
            class_name = header_class
            self.metrics.estimated(header_class, estimated)
        # Counted on arrival: the demand autoscaling plans for is what arrives, not what
        # finishes (an overloaded replica finishes in bursts, inflating a rate of answers).
        self.metrics.received(class_name)
        pick = self.chooser.pick(table, class_name, self.in_flight)
        if pick is None:
            return self._no_ready_pods(class_name, arrived)
        return await self._forward(request, path, body, pick, class_name, arrived)

    async def _forward(
        self,
        request: Request,
        path: str,
        body: bytes,
        pick: Pick,
        class_name: str | None,
        arrived: float,
    ) -> Response:
        headers = [
            (name, value)
            for name, value in request.headers.raw
            if name.lower() not in _REQUEST_HEADERS_DROPPED
        ]
        query = request.url.query
        target = f"{path}?{query}" if query else path
        watch = DisconnectWatch(request.receive)
        try:
            upstream, pick = await self._open(
                request.method, target, headers, body, pick, class_name or "", watch
            )
        except ClientGone:
            watch.stop()
            self._record(class_name, pick.deployment, CLIENT_CLOSED_REQUEST, arrived)
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except RETRIABLE as error:
            watch.stop()
            log.warning("no pod accepted %s %s: %r", request.method, path, error)
            self._record(class_name, pick.deployment, 502, arrived)
            return openai_error(
                502,
                "no backend pod accepted the connection; try again",
                kind="server_error",
                code="upstream_unavailable",
            )
        except BaseException:
            watch.stop()
            raise
        return UpstreamResponse(self, upstream, pick, class_name, arrived, watch)

    async def _open(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        pick: Pick,
        class_name: str,
        watch: DisconnectWatch,
    ) -> tuple[httpx.Response, Pick]:
        """The backend's response headers, from ``pick`` or from up to
        ``UPSTREAM_ATTEMPTS - 1`` other pods."""
        failed: list[Pick] = []
        while True:
            try:
                return await self._attempt(method, target, headers, body, pick, watch), pick
            except RETRIABLE:
                failed.append(pick)
                # The table as it is now: the watcher may have seen the pod go already.
                retry = self.chooser.retry(self.state.table, class_name, self.in_flight, failed)
                if retry is None or len(failed) >= UPSTREAM_ATTEMPTS:
                    raise
                self.metrics.retried(pick.deployment)
                log.info("pod %s refused or reset; retrying on %s", pick.pod, retry.pod)
                pick = retry

    async def _attempt(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        pick: Pick,
        watch: DisconnectWatch,
    ) -> httpx.Response:
        self.acquire(pick)
        try:
            request = self.client.build_request(
                method, f"http://{pick.pod}{target}", headers=headers, content=body
            )
            return await self._send_unless_gone(request, watch)
        except BaseException:
            self.release(pick)
            raise

    async def _send_unless_gone(
        self, request: httpx.Request, watch: DisconnectWatch
    ) -> httpx.Response:
        send = asyncio.ensure_future(self.client.send(request, stream=True))
        done, _ = await asyncio.wait((send, watch.task), return_when=asyncio.FIRST_COMPLETED)
        if send in done:
            return send.result()
        send.cancel()  # closes the half-open upstream connection
        await asyncio.wait((send,))
        if not send.cancelled() and send.exception() is None:
            await send.result().aclose()
        raise ClientGone

    def _no_ready_pods(self, class_name: str | None, arrived: float) -> Response:
        self._record(class_name, "", 503, arrived)
        retry_after = str(self.settings.retry_after_seconds)
        return openai_error(
            503,
            f"no Ready pod serves LLMService {self.settings.namespace}/{self.settings.service} "
            f"yet; retry after {retry_after} s",
            kind="server_error",
            code="no_ready_pods",
            headers={"Retry-After": retry_after},
        )

    # -- bookkeeping ------------------------------------------------------------------------

    def acquire(self, pick: Pick) -> None:
        self.in_flight[pick.pod] = self.in_flight.get(pick.pod, 0) + 1
        self.metrics.in_flight_changed(pick.deployment, 1)

    def release(self, pick: Pick) -> None:
        remaining = self.in_flight.get(pick.pod, 1) - 1
        if remaining > 0:
            self.in_flight[pick.pod] = remaining
        else:
            self.in_flight.pop(pick.pod, None)
        self.metrics.in_flight_changed(pick.deployment, -1)

    def _record(self, class_name: str | None, deployment: str, code: int, arrived: float) -> None:
        if class_name is not None:
            self.metrics.observe_request(
                class_name, deployment, code, time.perf_counter() - arrived
            )


class UpstreamResponse(Response):
    """The backend's answer, passed on as it arrives; closes the upstream stream at the end,
    when the client hangs up, or when the backend breaks off."""

    def __init__(
        self,
        proxy: Proxy,
        upstream: httpx.Response,
        pick: Pick,
        class_name: str | None,
        arrived: float,
        watch: DisconnectWatch,
    ) -> None:
        self.proxy = proxy
        self.upstream = upstream
        self.pick = pick
        self.class_name = class_name
        self.arrived = arrived
        self.watch = watch
        self.status_code = upstream.status_code
        self.background = None
        self.raw_headers = [
            (name, value)
            for name, value in upstream.headers.raw
            if name.lower() not in _RESPONSE_HEADERS_DROPPED
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        code = self.status_code
        pump = asyncio.ensure_future(self._pump(send))
        try:
            done, _ = await asyncio.wait(
                (pump, self.watch.task), return_when=asyncio.FIRST_COMPLETED
            )
            if pump in done:
                try:
                    pump.result()
                except OSError:  # the ASGI server found the client gone while writing
                    code = CLIENT_CLOSED_REQUEST
            else:
                code = CLIENT_CLOSED_REQUEST
                pump.cancel()
                await asyncio.wait((pump,))
        finally:
            self.watch.stop()
            await self.upstream.aclose()
            self.proxy.release(self.pick)
            self.proxy._record(self.class_name, self.pick.deployment, code, self.arrived)

    async def _pump(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        first = True
        async for chunk in self.upstream.aiter_raw():
            if first:
                self._first_byte()
                first = False
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if first:
            self._first_byte()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _first_byte(self) -> None:
        if self.class_name is not None:
            self.proxy.metrics.observe_first_byte(
                self.class_name, self.pick.deployment, time.perf_counter() - self.arrived
            )
