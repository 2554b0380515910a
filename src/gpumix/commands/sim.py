"""`gpumix sim`: the dev cluster's stand-in for vLLM, runnable by hand.

Takes vLLM's own flags (``--served-model-name``, ``--tensor-parallel-size``, ``--quantization``,
``--max-model-len``, ``--max-num-seqs``, ``--max-num-batched-tokens``, ``--port``; other vLLM
flags are accepted and ignored) plus ``--gpu TYPE`` (a catalogue GPU; default H100-80GB),
``--warmup-seconds`` (``/health`` answers 503 until then) and ``--slowdown-factor``. Serves
vLLM's OpenAI API, errors and metrics, with step times from ``gpumix.perf`` for that hardware.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from gpumix.errors import InputError
from gpumix.sim.settings import add_vllm_arguments, settings_from_arguments


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="serve a simulated vLLM replica (vLLM's API and metrics, timed by gpumix.perf)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    add_vllm_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gpumix.sim import SimConfigError, start_simulator

    settings = settings_from_arguments(args)

    async def serve() -> None:
        try:
            handle = await start_simulator(settings, args.host, settings.port)
        except SimConfigError as error:
            raise InputError(str(error), field="vLLM arguments") from error
        print(f"simulated vLLM serving {', '.join(settings.names)} on {handle.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await handle.stop()

    try:
        asyncio.run(serve())
    except OSError as error:
        print(f"gpumix sim: cannot listen on {args.host}:{settings.port}: {error}", file=sys.stderr)
        return 1
    return 0
