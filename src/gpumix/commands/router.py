"""`gpumix router`: the class-aware OpenAI-compatible proxy in front of one LLMService."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

# flag name (without dashes) -> help; every flag also reads GPUMIX_ROUTER_<NAME>.
FLAGS: dict[str, tuple[str, str]] = {
    "namespace": ("NAMESPACE", "namespace of the LLMService and its pods (required)"),
    "service": ("NAME", "the LLMService to route for (required)"),
    "host": ("HOST", "address to listen on (default 0.0.0.0)"),
    "port": ("PORT", "port to listen on (default 8000)"),
    "kubeconfig": ("PATH", "kubeconfig file (default: in-cluster credentials, else $KUBECONFIG)"),
    "connect-timeout": (
        "SECONDS",
        "give up connecting to a pod after this long and retry on another (default 2)",
    ),
    "retry-after": ("SECONDS", "Retry-After of the 503 sent when no pod is Ready (default 1)"),
    "backend-port": ("PORT", "port of pods that declare no container port (default 8000)"),
}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "router",
        help="run the class-aware OpenAI-compatible router of one LLMService",
        description="Proxy /v1/completions, /v1/chat/completions and /v1/models to the "
        "LLMService's vLLM pods: each request's class (x-gpumix-class header, else estimated) "
        "picks a configuration by the plan's assignment, then its least busy Ready pod. "
        "Every flag can also be set as GPUMIX_ROUTER_<FLAG> (e.g. GPUMIX_ROUTER_PORT).",
    )
    for name, (metavar, help_text) in FLAGS.items():
        # Strings here, checked by resolve_settings: a bad value is one line naming the flag
        # or the variable, the same whichever way it came.
        parser.add_argument(f"--{name}", default=None, metavar=metavar, help=help_text)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gpumix.router.settings import resolve_settings

    flags = {name: getattr(args, name.replace("-", "_")) for name in FLAGS}
    settings, listen = resolve_settings(flags, os.environ)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:  # the router works on asyncio's own loop too, just slower
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve_until_signalled(settings, listen.host, listen.port))
    return 0


async def _serve_until_signalled(settings: Any, host: str, port: int) -> None:
    from gpumix.router.server import serve_router

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    handle = await serve_router(settings, host, port)
    logging.getLogger("gpumix.router").info(
        "routing for %s/%s on %s:%d", settings.namespace, settings.service, host, handle.port
    )
    await stop.wait()
    await handle.stop()
