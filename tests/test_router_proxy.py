"""The router's request path against real HTTP backends on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gpumix.router import PlanEntry, RequestClass, RoutingTable
from router_fakes import Backend, closed_port, json_backend, running_router, wait_for

CLASSES = (RequestClass("chat", 512, 256), RequestClass("rag", 4096, 256))
CHAT_BODY = {"model": "m", "prompt": "hello " * 10, "max_tokens": 200}
RAG_BODY = {"model": "m", "prompt": "x" * 4 * 4000, "max_tokens": 200}


def table(pods: dict[str, tuple[str, ...]], entries: tuple[PlanEntry, ...]) -> RoutingTable:
    return RoutingTable(classes=CLASSES, entries=entries, ready_pods=pods)


async def test_classes_go_where_the_plan_sends_them() -> None:
    async with json_backend("a").running() as a, json_backend("b").running() as b:
        plan = (PlanEntry("dep-a", {"chat": 1.0}), PlanEntry("dep-b", {"rag": 1.0}))
        async with (
            running_router(table({"dep-a": (a.address,), "dep-b": (b.address,)}, plan)) as r,
            r.client() as client,
        ):
            chat = await client.post("/v1/completions", json=CHAT_BODY)
            rag = await client.post("/v1/completions", json=RAG_BODY)
            forced = await client.post(
                "/v1/completions", json=CHAT_BODY, headers={"x-gpumix-class": "rag"}
            )
    assert chat.json() == {"served_by": "a"}
    assert rag.json() == {"served_by": "b"}
    assert forced.json() == {"served_by": "b"}
    # The backend got the client's body untouched.
    assert json.loads(a.requests[0][1]) == CHAT_BODY


async def test_unknown_class_header_is_a_400_naming_the_classes() -> None:
    async with json_backend("a").running() as a:
        plan = (PlanEntry("dep-a", {"chat": 1.0}),)
        async with running_router(table({"dep-a": (a.address,)}, plan)) as r, r.client() as client:
            response = await client.post(
                "/v1/completions", json=CHAT_BODY, headers={"x-gpumix-class": "batch"}
            )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "x-gpumix-class"
    assert "'batch'" in error["message"] and "chat, rag" in error["message"]
    assert a.requests == []


async def test_backend_error_status_and_body_reach_the_client() -> None:
    vllm_error = {"object": "error", "message": "maximum context length is 8192", "code": 400}

    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response(vllm_error, status=400, headers={"x-backend": "yes"})

    async with Backend(refuse).running() as backend:
        plan = (PlanEntry("dep-a", {"chat": 1.0, "rag": 1.0}),)
        async with (
            running_router(table({"dep-a": (backend.address,)}, plan)) as r,
            r.client() as client,
        ):
            response = await client.post("/v1/completions", json=CHAT_BODY)
            assert (
                r.sample(
                    "gpumix_router_requests_total",
                    {"class": "chat", "deployment": "dep-a", "code": "400"},
                )
                == 1
            )
    assert response.status_code == 400
    assert response.json() == vllm_error
    assert response.headers["x-backend"] == "yes"


async def test_stream_chunks_pass_through_unbuffered() -> None:
    release_second = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"text": "first"}\n\n')
        await asyncio.wait_for(release_second.wait(), 10)
        await response.write(b'data: {"text": "second"}\n\ndata: [DONE]\n\n')
        await response.write_eof()
        return response

    async with Backend(stream).running() as backend:
        plan = (PlanEntry("dep-a", {"chat": 1.0}),)
        async with (
            running_router(table({"dep-a": (backend.address,)}, plan)) as r,
            r.client() as client,
            client.stream("POST", "/v1/completions", json={**CHAT_BODY, "stream": True}) as s,
        ):
            chunks = s.aiter_raw()
            # The second chunk is not even written yet: the first must arrive on its own.
            first = await asyncio.wait_for(anext(chunks), 5)
            release_second.set()
            rest = b"".join([chunk async for chunk in chunks])
    assert s.status_code == 200
    assert s.headers["content-type"] == "text/event-stream"
    assert first == b'data: {"text": "first"}\n\n'
    assert rest == b'data: {"text": "second"}\n\ndata: [DONE]\n\n'


async def test_refused_connection_is_retried_once_on_another_configuration() -> None:
    dead = closed_port()
    async with json_backend("live").running() as live:
        plan = (PlanEntry("dep-dead", {"chat": 1.0}), PlanEntry("dep-live", {"rag": 1.0}))
        pods = {"dep-dead": (dead,), "dep-live": (live.address,)}
        async with running_router(table(pods, plan)) as r, r.client() as client:
            response = await client.post("/v1/completions", json=CHAT_BODY)
            retries = r.sample("gpumix_router_upstream_retries_total", {"deployment": "dep-dead"})
            in_flight = r.sample("gpumix_router_in_flight_requests", {"deployment": "dep-dead"})
    assert response.status_code == 200
    assert response.json() == {"served_by": "live"}
    assert retries == 1
    assert in_flight == 0


async def test_refused_connection_is_retried_on_the_same_configuration_first() -> None:
    dead = closed_port()
    async with json_backend("same").running() as same, json_backend("other").running() as other:
        plan = (PlanEntry("dep-a", {"chat": 1.0}), PlanEntry("dep-b", {"chat": 0.001}))
        pods = {"dep-a": (dead, same.address), "dep-b": (other.address,)}
        async with running_router(table(pods, plan), seed=3) as r, r.client() as client:
            responses = [await client.post("/v1/completions", json=CHAT_BODY) for _ in range(20)]
            retries = r.sample("gpumix_router_upstream_retries_total", {"deployment": "dep-a"})
    assert all(response.status_code == 200 for response in responses)
    assert retries >= 1  # the dead pod was drawn at least once (seeded) ...
    assert len(same.requests) >= retries  # ... and each retry stayed in its configuration


async def test_a_new_configuration_not_listening_yet_is_passed_over() -> None:
    # A migration's new Deployment: both its pods are Ready in the API but not listening yet.
    # One retry in the configuration is not enough; the third attempt goes to the old one.
    async with json_backend("old").running() as old:
        plan = (PlanEntry("dep-new", {"chat": 1.0}), PlanEntry("dep-old", {"chat": 0.0}))
        pods = {"dep-new": (closed_port(), closed_port()), "dep-old": (old.address,)}
        async with running_router(table(pods, plan)) as r, r.client() as client:
            response = await client.post("/v1/completions", json=CHAT_BODY)
            retries = r.sample("gpumix_router_upstream_retries_total", {"deployment": "dep-new"})
    assert response.status_code == 200 and response.json() == {"served_by": "old"}
    assert retries == 2


async def test_every_pod_refusing_is_a_502_after_three_attempts() -> None:
    plan = (PlanEntry("dep-a", {"chat": 1.0}),)
    pods = {"dep-a": tuple(closed_port() for _ in range(4))}
    async with running_router(table(pods, plan)) as r, r.client() as client:
        response = await client.post("/v1/completions", json=CHAT_BODY)
        retries = r.sample("gpumix_router_upstream_retries_total", {"deployment": "dep-a"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert retries == 2


async def test_no_retry_once_the_backend_has_sent_its_first_byte() -> None:
    async def break_off(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: partial\n\n")
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()  # a reset in the middle of the stream
        return response

    async with Backend(break_off).running() as a, Backend(break_off).running() as b:
        plan = (PlanEntry("dep-a", {"chat": 1.0}),)
        async with running_router(table({"dep-a": (a.address, b.address)}, plan)) as r:
            async with (
                r.client() as client,
                client.stream("POST", "/v1/completions", json=CHAT_BODY) as s,
            ):
                received = b""
                with pytest.raises(httpx.HTTPError):
                    async for chunk in s.aiter_raw():
                        received += chunk
            retries = r.sample("gpumix_router_upstream_retries_total", {"deployment": "dep-a"})
    assert s.status_code == 200
    assert received == b"data: partial\n\n"
    assert len(a.requests) + len(b.requests) == 1
    assert retries == 0


async def test_no_ready_pod_is_a_503_with_retry_after() -> None:
    plan = (PlanEntry("dep-a", {"chat": 1.0}),)
    async with running_router(table({}, plan)) as r, r.client() as client:
        response = await client.post("/v1/chat/completions", json={"messages": []})
        models = await client.get("/v1/models")
        # Demand all the same: autoscaling counts what arrives, not what is answered.
        assert r.sample("gpumix_router_requests_received_total", {"class": "chat"}) == 1
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "no_ready_pods"
    assert "team-a/chat" in response.json()["error"]["message"]
    assert models.status_code == 503


async def test_a_body_that_is_not_a_json_object_is_a_400() -> None:
    async with running_router(table({}, ())) as r, r.client() as client:
        response = await client.post("/v1/completions", content=b"{not json")
        # No class: a malformed request is not demand for any configuration.
        assert r.sample("gpumix_router_requests_received_total", {"class": ""}) == 0
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


async def _disconnect_is_seen_upstream(
    handler_started: asyncio.Event, backend: Backend, read_first: bool
) -> None:
    plan = (PlanEntry("dep-a", {"chat": 1.0}),)
    async with (
        running_router(table({"dep-a": (backend.address,)}, plan)) as r,
        r.client() as client,
    ):
        if read_first:
            async with client.stream("POST", "/v1/completions", json=CHAT_BODY) as s:
                await asyncio.wait_for(anext(s.aiter_raw()), 5)
            # Leaving the block closed the client's connection mid-answer.
        else:
            # No header has come back yet, so hang up by abandoning the request itself.
            pending = asyncio.create_task(client.post("/v1/completions", json=CHAT_BODY))
            await asyncio.wait_for(handler_started.wait(), 5)
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        assert await wait_for(
            lambda: (
                r.sample(
                    "gpumix_router_requests_total",
                    {"class": "chat", "deployment": "dep-a", "code": "499"},
                )
                == 1
            )
        )


async def test_client_hang_up_mid_stream_cancels_the_upstream_request() -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        started.set()
        try:
            for _ in range(500):  # bounded: 10 s at most
                await response.write(b"data: token\n\n")
                await asyncio.sleep(0.02)
        except (asyncio.CancelledError, ConnectionError):
            cancelled.set()
            raise
        return response

    async with Backend(endless).running() as backend:
        await _disconnect_is_seen_upstream(started, backend, read_first=True)
        assert await wait_for(cancelled.is_set, 5)


async def test_client_hang_up_before_the_first_byte_cancels_the_upstream_request() -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return web.json_response({})

    async with Backend(slow).running() as backend:
        await _disconnect_is_seen_upstream(started, backend, read_first=False)
        assert await wait_for(cancelled.is_set, 5)


async def test_metrics_parse_with_the_documented_names_and_labels() -> None:
    async with json_backend("a").running() as a:
        plan = (PlanEntry("dep-a", {"chat": 1.0, "rag": 1.0}),)
        async with running_router(table({"dep-a": (a.address,)}, plan)) as r, r.client() as client:
            await client.post("/v1/completions", json=CHAT_BODY)
            # Header says rag, the body looks like chat: one confusion-matrix entry.
            await client.post("/v1/completions", json=CHAT_BODY, headers={"x-gpumix-class": "rag"})
            page = await client.get("/metrics")
    assert page.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(page.text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families.values()
        for s in family.samples
    }
    requests = "gpumix_router_requests_total"
    assert samples[(requests, (("class", "chat"), ("code", "200"), ("deployment", "dep-a")))] == 1
    assert samples[(requests, (("class", "rag"), ("code", "200"), ("deployment", "dep-a")))] == 1
    estimate = "gpumix_router_class_estimate_total"
    assert samples[(estimate, (("estimated_class", "chat"), ("header_class", "rag")))] == 1
    for histogram in (
        "gpumix_router_request_duration_seconds",
        "gpumix_router_time_to_first_byte_seconds",
    ):
        assert families[histogram].type == "histogram"
        count = (f"{histogram}_count", (("class", "chat"), ("deployment", "dep-a")))
        assert samples[count] == 1
    gauge = ("gpumix_router_in_flight_requests", (("deployment", "dep-a"),))
    assert samples[gauge] == 0


async def test_health_waits_for_the_first_sync() -> None:
    async with running_router(table({}, ()), synced=False) as r, r.client() as client:
        before = await client.get("/health")
        r.state.synced = True
        after = await client.get("/health")
    assert before.status_code == 503
    assert after.status_code == 200
