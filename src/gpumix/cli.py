"""The ``gpumix`` command.

Each verb lives in its own module under :mod:`gpumix.commands` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``. Verbs are imported lazily so that
``gpumix profile`` never pays for importing kopf or the Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gpumix import __version__
from gpumix.errors import InputError

# verb -> module under gpumix.commands
VERBS: dict[str, str] = {
    "profile": "profile",
    "plan": "plan",
    "whatif": "whatif",
    "operator": "operator",
    "dev-cluster": "devcluster",
    "sim": "sim",
    "router": "router",
}

EXIT_OK = 0
EXIT_INVALID_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpumix",
        description="Serve LLMs on mixed-GPU Kubernetes fleets at the lowest cost.",
    )
    parser.add_argument("--version", action="version", version=f"gpumix {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for module_name in VERBS.values():
        module = importlib.import_module(f"gpumix.commands.{module_name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except InputError as error:
        print(f"gpumix {args.verb}: {error.one_line()}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
