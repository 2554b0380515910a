"""The simulator's OpenAI-compatible HTTP server, in the shape of vLLM's.

Endpoints: ``/v1/completions`` and ``/v1/chat/completions`` (JSON, or SSE with ``stream``),
``/v1/models``, ``/health`` (503 while warming up, like a vLLM that is still loading), ``/version``
and ``/metrics``. Errors use vLLM's shape, ``{"error": {"message", "type", "param", "code"}}``.

Tokens: the simulator has no tokenizer, so a text prompt counts one token per four characters
(rounded up; the load generator writes prompts at the same rate), a list of token ids counts
its length, and chat messages count their text. Output is filler words, one per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gpumix.catalog import find_model, get_gpu
from gpumix.errors import InputError
from gpumix.perf import ServingConfig, WeightFormat
from gpumix.sim.engine import Clock, Engine, Sequence
from gpumix.sim.metrics import SimMetrics
from gpumix.sim.settings import SimSettings
from gpumix.sim.timing import StepTiming

log = logging.getLogger("gpumix.sim")

CHARS_PER_TOKEN = 4
# vLLM's default max_model_len is the model's context; without a config.json, cap it here.
DEFAULT_MAX_MODEL_LEN_CAP = 131_072
FILLER = ("the", "fleet", "serves", "tokens", "on", "mixed", "GPUs", "at", "low", "cost")
VERSION = "0.0.0+gpumix.sim"


class SimConfigError(RuntimeError):
    """The configuration real vLLM would refuse to start with (the message says why)."""


class RequestError(Exception):
    def __init__(
        self, status: int, message: str, kind: str = "BadRequestError", param: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


def error_response(status: int, message: str, kind: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return web.json_response(body, status=status)


def count_text_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def filler_text(index: int) -> str:
    return " " + FILLER[index % len(FILLER)]


@dataclass(frozen=True)
class Simulator:
    """The parts one simulated replica is made of (resolved and checked before serving)."""

    settings: SimSettings
    timing: StepTiming
    max_model_len: int


def resolve(settings: SimSettings) -> Simulator:
    """Model, GPU and limits for `settings`, or SimConfigError where vLLM would not start."""
    model = find_model(settings.model)
    if model is None:
        raise SimConfigError(
            f"model {settings.model!r} is not in gpumix's catalogue, so its speed is unknown"
        )
    try:
        gpu = get_gpu(settings.gpu)
        weight_format = WeightFormat(settings.weight_format)
    except (InputError, ValueError) as error:
        raise SimConfigError(str(error)) from error
    config = ServingConfig(gpu, settings.tensor_parallel_size, weight_format)
    timing = StepTiming(model, config, settings.slowdown_factor)
    capacity = timing.kv_capacity_tokens()
    max_model_len = settings.max_model_len or min(max(capacity, 1), DEFAULT_MAX_MODEL_LEN_CAP)
    problem = timing.startup_problem(max_model_len)
    if problem:
        raise SimConfigError(problem)
    return Simulator(settings, timing, max_model_len)


class SimulatorApp:
    """The aiohttp application around one engine."""

    def __init__(self, simulator: Simulator, clock: Clock | None = None):
        settings = simulator.settings
        self.settings = settings
        self.max_model_len = simulator.max_model_len
        self.metrics = SimMetrics(settings.names[0], simulator.max_model_len)
        self.engine = Engine(
            simulator.timing,
            self.metrics,
            max_num_seqs=settings.max_num_seqs,
            max_num_batched_tokens=settings.max_num_batched_tokens,
            kv_capacity_tokens=simulator.timing.kv_capacity_tokens(),
            clock=clock,
        )
        self.created = int(time.time())
        self.ready_at = 0.0
        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/health", self.health),
                web.get("/version", self.version),
                web.get("/metrics", self.metrics_page),
                web.get("/v1/models", self.models),
                web.post("/v1/completions", self.completions),
                web.post("/v1/chat/completions", self.chat_completions),
            ]
        )
        self.app.on_startup.append(self._start_engine)
        self.app.on_cleanup.append(self._stop_engine)
        self._engine_task: asyncio.Task[None] | None = None

    async def _start_engine(self, _app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        self.ready_at = loop.time() + self.settings.warmup_seconds
        self._engine_task = loop.create_task(self.engine.run(), name="gpumix-sim-engine")

    async def _stop_engine(self, _app: web.Application) -> None:
        if self._engine_task is not None:
            self._engine_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._engine_task

    @property
    def warming_up(self) -> bool:
        return asyncio.get_running_loop().time() < self.ready_at

    # ----- plain endpoints -------------------------------------------------------------------

    async def health(self, _request: web.Request) -> web.Response:
        if self.warming_up:
            return web.Response(status=503, text="loading model weights")
        return web.Response(status=200)

    async def version(self, _request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def metrics_page(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def models(self, _request: web.Request) -> web.Response:
        data = [
            {
                "id": name,
                "object": "model",
                "created": self.created,
                "owned_by": "vllm",
                "root": self.settings.model,
                "parent": None,
                "max_model_len": self.max_model_len,
            }
            for name in self.settings.names
        ]
        return web.json_response({"object": "list", "data": data})

    # ----- generation ------------------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        if self.warming_up:
            return error_response(503, "the model is still loading", "ServiceUnavailableError")
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise RequestError(400, "the request body must be a JSON object")
            model = self._check_model(body)
            prompt_tokens = self._chat_tokens(body) if chat else self._prompt_tokens(body)
            to_generate, reason, max_tokens = self._output_tokens(body, prompt_tokens, chat)
        except json.JSONDecodeError:
            return error_response(400, "the request body is not valid JSON", "BadRequestError")
        except RequestError as error:
            return error_response(error.status, error.message, error.kind, error.param)
        sequence = self.engine.submit(
            prompt_tokens, to_generate, finish_reason=reason, max_tokens_param=max_tokens
        )
        try:
            if body.get("stream"):
                return await self._stream(request, sequence, model, chat, body)
            return await self._complete(sequence, model, chat)
        finally:
            self.engine.abort(sequence)  # a no-op once finished; frees a disconnected client

    def _check_model(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if model is None:
            return self.settings.names[0]
        if model not in self.settings.names:
            raise RequestError(
                404, f"The model `{model}` does not exist.", "NotFoundError", "model"
            )
        return str(model)

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
            prompt = prompt[0]  # a batch of one
        if isinstance(prompt, str) and prompt:
            return count_text_tokens(prompt)
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            return len(prompt)
        raise RequestError(
            400,
            "prompt must be a non-empty string or list of token ids (one prompt)",
            param="prompt",
        )

    def _chat_tokens(self, body: dict[str, Any]) -> int:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "messages must be a non-empty list", param="messages")
        text = []
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                text.append(content)
            elif isinstance(content, list):
                text.extend(str(part.get("text", "")) for part in content if isinstance(part, dict))
            elif content is not None:
                raise RequestError(
                    400, "message content must be a string or a list of parts", param="messages"
                )
        return count_text_tokens("".join(text))

    def _output_tokens(
        self, body: dict[str, Any], prompt_tokens: int, chat: bool
    ) -> tuple[int, str, int | None]:
        if body.get("n", 1) != 1:
            raise RequestError(400, "the simulator serves n=1 only", param="n")
        key = (
            "max_completion_tokens"
            if chat and body.get("max_completion_tokens") is not None
            else "max_tokens"
        )
        max_tokens = body.get(key)
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise RequestError(
                400, f"{key} must be a positive integer, got {max_tokens!r}", param=key
            )
        room = self.max_model_len - prompt_tokens
        if max_tokens is None:
            if room < 1:
                raise self._too_long(prompt_tokens, 1, chat)
            default = min(self.settings.default_max_tokens, room)
            return default, "stop", None
        if prompt_tokens + max_tokens > self.max_model_len:
            raise self._too_long(prompt_tokens, max_tokens, chat)
        return max_tokens, "length", max_tokens

    def _too_long(self, prompt_tokens: int, max_tokens: int, chat: bool) -> RequestError:
        where = "messages" if chat else "prompt"
        return RequestError(
            400,
            f"This model's maximum context length is {self.max_model_len} tokens. However, you"
            f" requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the {where},"
            f" {max_tokens} in the completion). Please reduce the length of the {where} or"
            " completion.",
        )

    def _usage(self, sequence: Sequence) -> dict[str, int]:
        return {
            "prompt_tokens": sequence.prompt_tokens,
            "completion_tokens": sequence.generated,
            "total_tokens": sequence.prompt_tokens + sequence.generated,
        }

    async def _complete(self, sequence: Sequence, model: str, chat: bool) -> web.Response:
        text = "".join([filler_text(index) async for index in sequence.tokens()])
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": sequence.finish_reason,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": sequence.finish_reason,
            }
        return web.json_response(
            {
                "id": ("chatcmpl-" if chat else "cmpl-") + sequence.request_id,
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": self._usage(sequence),
            }
        )

    async def _stream(
        self, request: web.Request, sequence: Sequence, model: str, chat: bool, body: dict[str, Any]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        created = int(time.time())
        request_id = ("chatcmpl-" if chat else "cmpl-") + sequence.request_id
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choice: dict[str, Any] | None, usage: dict[str, int] | None = None) -> bytes:
            payload: dict[str, Any] = {
                "id": request_id,
                "object": kind,
                "created": created,
                "model": model,
                "choices": [choice] if choice is not None else [],
            }
            if usage is not None:
                payload["usage"] = usage
            return f"data: {json.dumps(payload)}\n\n".encode()

        def choice(text: str, finish_reason: str | None, first: bool = False) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = (
                    {"role": "assistant", "content": text} if first else {"content": text}
                )
                return {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}

        try:
            if chat:
                await response.write(chunk(choice("", None, first=True)))
            async for index in _tokens_with_end(sequence):
                if index is None:
                    await response.write(chunk(choice("", sequence.finish_reason)))
                else:
                    await response.write(chunk(choice(filler_text(index), None)))
            options = body.get("stream_options") or {}
            if isinstance(options, dict) and options.get("include_usage"):
                await response.write(chunk(None, self._usage(sequence)))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.engine.abort(sequence)
            raise
        return response


async def _tokens_with_end(sequence: Sequence) -> AsyncIterator[int | None]:
    """The token indices, then None once the sequence has finished."""
    async for index in sequence.tokens():
        yield index
    yield None


class SimulatorHandle:
    """A running simulator: its URL, and ``await stop()``."""

    def __init__(self, runner: web.AppRunner, app: SimulatorApp, host: str, port: int):
        self._runner = runner
        self.app = app
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_simulator(
    settings: SimSettings,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    clock: Clock | None = None,
) -> SimulatorHandle:
    """Resolve `settings`, then serve on host:port (port 0 picks a free one)."""
    simulator = resolve(settings)
    app = SimulatorApp(simulator, clock)
    # short shutdown: a deleted pod stops answering at once, as a killed container would
    runner = web.AppRunner(app.app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, settings.port if port is None else port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])  # the port the OS gave when asked for 0
    log.info(
        "simulating %s on %d x %s (%s) at %s:%s",
        settings.model,
        settings.tensor_parallel_size,
        settings.gpu,
        settings.weight_format,
        host,
        bound,
    )
    return SimulatorHandle(runner, app, host, bound)
