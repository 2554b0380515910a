"""The simulator's HTTP API: vLLM's endpoints, response and error shapes, and metrics.

Every request goes to a simulator listening on 127.0.0.1 (port 0, picked by the OS).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpumix.devcluster.podrunner import start_vllm_simulator
from gpumix.operator.manifests import build_deployment
from gpumix.sim import SimConfigError, SimSettings, parse_vllm_args, start_simulator
from gpumix.sim.metrics import build_1_2_5_buckets
from gpumix.sim.server import SimulatorHandle
from test_manifests import H100_ENTRY, H100_ON_DEMAND, make_service

SETTINGS = SimSettings(
    model="meta-llama/Llama-3.1-8B-Instruct",
    served_model_names=("chat", "meta-llama/Llama-3.1-8B-Instruct"),
    gpu="L40S",
    max_model_len=8192,
)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    handle = await start_simulator(SETTINGS, "127.0.0.1", 0)
    yield handle
    await handle.stop()


async def post(handle: SimulatorHandle, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=handle.url, timeout=30) as client:
        return await client.post(path, json=body)


async def get(handle: SimulatorHandle, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=handle.url, timeout=30) as client:
        return await client.get(path)


async def sse_events(handle: SimulatorHandle, path: str, body: dict[str, Any]) -> list[str]:
    events = []
    async with (
        httpx.AsyncClient(base_url=handle.url, timeout=30) as client,
        client.stream("POST", path, json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
    return events


async def test_models_lists_every_served_name(sim: SimulatorHandle) -> None:
    body = (await get(sim, "/v1/models")).json()
    assert [m["id"] for m in body["data"]] == ["chat", "meta-llama/Llama-3.1-8B-Instruct"]
    assert body["data"][0]["max_model_len"] == 8192


async def test_completion_returns_max_tokens_of_text_and_usage(sim: SimulatorHandle) -> None:
    response = await post(
        sim, "/v1/completions", {"model": "chat", "prompt": "x" * 400, "max_tokens": 12}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["usage"] == {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112}
    assert len(body["choices"][0]["text"].split()) == 12
    assert body["choices"][0]["finish_reason"] == "length"


async def test_chat_without_max_tokens_stops_at_the_default(sim: SimulatorHandle) -> None:
    response = await post(
        sim,
        "/v1/chat/completions",
        {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    body = response.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == SETTINGS.default_max_tokens


async def test_streaming_chat_sends_one_delta_per_token_then_done(sim: SimulatorHandle) -> None:
    events = await sse_events(
        sim,
        "/v1/chat/completions",
        {
            "model": "chat",
            "messages": [{"role": "user", "content": "stream"}],
            "max_tokens": 5,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert sum(1 for text in contents if text) == 5
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5


async def test_streaming_completion_tokens_arrive_one_step_apart(sim: SimulatorHandle) -> None:
    events = await sse_events(
        sim, "/v1/completions", {"model": "chat", "prompt": "p", "max_tokens": 4, "stream": True}
    )
    texts = [json.loads(e)["choices"][0]["text"] for e in events[:-1]]
    assert [t for t in texts if t] == [" the", " fleet", " serves", " tokens"]


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/completions", {"model": "chat", "prompt": "word " * 40_000, "max_tokens": 8},
         400, "maximum context length is 8192"),
        ("/v1/completions", {"model": "chat", "prompt": "hi", "max_tokens": 8192},
         400, "8193 tokens (1 in the prompt, 8192 in the completion)"),
        ("/v1/completions", {"model": "gpt-4", "prompt": "hi"}, 404, "`gpt-4` does not exist"),
        ("/v1/completions", {"model": "chat", "prompt": ""}, 400, "prompt"),
        ("/v1/completions", {"model": "chat", "prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/chat/completions", {"model": "chat", "messages": []}, 400, "messages"),
    ],
)  # fmt: skip
async def test_bad_requests_get_vllm_s_error_object(
    sim: SimulatorHandle, path: str, body: dict[str, Any], status: int, words: str
) -> None:
    response = await post(sim, path, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert words in error["message"]
    assert error["code"] == status and error["type"]


async def test_metrics_parse_with_vllm_s_names_types_labels_and_buckets(
    sim: SimulatorHandle,
) -> None:
    for _ in range(3):
        ok = await post(
            sim, "/v1/completions", {"model": "chat", "prompt": "q" * 40, "max_tokens": 6}
        )
        assert ok.status_code == 200
    text = (await get(sim, "/metrics")).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    expected_types = {
        "vllm:num_requests_running": "gauge",
        "vllm:num_requests_waiting": "gauge",
        "vllm:kv_cache_usage_perc": "gauge",
        "vllm:request_success": "counter",
        "vllm:prompt_tokens": "counter",
        "vllm:generation_tokens": "counter",
        "vllm:request_prompt_tokens": "histogram",
        "vllm:request_generation_tokens": "histogram",
        "vllm:time_to_first_token_seconds": "histogram",
        "vllm:inter_token_latency_seconds": "histogram",
        "vllm:e2e_request_latency_seconds": "histogram",
    }
    for name, kind in expected_types.items():
        assert families[name].type == kind, name
        for sample in families[name].samples:
            assert sample.labels["model_name"] == "chat" and sample.labels["engine"] == "0"

    def value(name: str, **labels: str) -> float:
        family = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
        for sample in families[family].samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
        raise AssertionError(f"no sample {name} {labels}")

    assert value("vllm:request_success_total", finished_reason="length") == 3
    assert value("vllm:prompt_tokens_total") == 30
    assert value("vllm:generation_tokens_total") == 18
    assert value("vllm:e2e_request_latency_seconds_count") == 3
    assert value("vllm:inter_token_latency_seconds_count") == 15
    ttft_buckets = [
        s.labels["le"] for s in families["vllm:time_to_first_token_seconds"].samples
        if s.name.endswith("_bucket")
    ]  # fmt: skip
    assert ttft_buckets[:3] == ["0.001", "0.005", "0.01"] and ttft_buckets[-2:] == [
        "2560.0",
        "+Inf",
    ]
    prompt_buckets = [
        s.labels["le"] for s in families["vllm:request_prompt_tokens"].samples
        if s.name.endswith("_bucket")
    ]  # fmt: skip
    assert prompt_buckets[-2:] == ["5000.0", "+Inf"]
    assert "_created" not in text


def test_token_buckets_are_vllm_s_1_2_5_series() -> None:
    assert build_1_2_5_buckets(100) == [1, 2, 5, 10, 20, 50, 100]
    assert build_1_2_5_buckets(8192)[-1] == 5000


async def test_health_is_503_while_warming_up_then_200() -> None:
    handle = await start_simulator(
        SimSettings(served_model_names=("chat",), gpu="L4", max_model_len=4096, warmup_seconds=0.6),
        "127.0.0.1",
        0,
    )
    try:
        assert (await get(handle, "/health")).status_code == 503
        refused = await post(handle, "/v1/completions", {"prompt": "hi", "max_tokens": 1})
        assert refused.status_code == 503
        await asyncio.sleep(0.8)
        assert (await get(handle, "/health")).status_code == 200
    finally:
        await handle.stop()


async def test_a_client_that_disconnects_mid_stream_is_aborted_and_frees_its_slot(
    sim: SimulatorHandle,
) -> None:
    async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        body = {"model": "chat", "prompt": "p", "max_tokens": 2000, "stream": True}
        async with client.stream("POST", "/v1/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    break  # one token, then hang up
    engine = sim.app.engine
    for _ in range(100):
        if not engine.running and engine.metrics.request_success["abort"]._value.get() == 1:
            break
        await asyncio.sleep(0.05)
    assert not engine.running
    assert engine.metrics.request_success["abort"]._value.get() == 1


def test_a_configuration_vllm_would_refuse_is_refused() -> None:
    with pytest.raises(SimConfigError, match="do not fit"):
        asyncio.run(
            start_simulator(
                SimSettings(model="meta-llama/Llama-3.1-70B-Instruct", gpu="L4"), "127.0.0.1", 0
            )
        )
    with pytest.raises(SimConfigError, match="larger than the maximum number of tokens"):
        asyncio.run(start_simulator(SimSettings(gpu="A10G", max_model_len=131072), "127.0.0.1", 0))


def test_vllm_args_parse_and_unknown_flags_are_ignored() -> None:
    settings = parse_vllm_args(
        [
            "--model", "meta-llama/Llama-3.1-8B-Instruct",
            "--served-model-name", "chat", "meta-llama/Llama-3.1-8B-Instruct",
            "--tensor-parallel-size", "2", "--max-model-len", "4096",
            "--quantization", "fp8", "--port", "8001", "--enable-prefix-caching",
            "--gpu-memory-utilization", "0.9", "--max-num-seqs", "64",
        ]
    )  # fmt: skip
    assert settings.names == ("chat", "meta-llama/Llama-3.1-8B-Instruct")
    assert (settings.tensor_parallel_size, settings.max_model_len, settings.port) == (2, 4096, 8001)
    assert (settings.weight_format, settings.max_num_seqs) == ("fp8", 64)


async def test_the_pod_runner_serves_a_deployment_s_container_with_its_hardware() -> None:
    deployment = build_deployment(make_service(), H100_ENTRY, H100_ON_DEMAND)
    template = deployment["spec"]["template"]
    pod = {"metadata": template["metadata"], "spec": template["spec"]}
    handle = await start_vllm_simulator(pod, template["spec"]["containers"][0], "127.0.0.1", 0)
    assert isinstance(handle, SimulatorHandle)
    try:
        config = handle.app.engine.timing.config
        assert (config.gpu.name, config.tensor_parallel, str(config.weight_format)) == (
            "H100-80GB",
            4,
            "fp8",
        )
        models = (await get(handle, "/v1/models")).json()
        assert models["data"][0]["id"] == "chat"
    finally:
        await handle.stop()
