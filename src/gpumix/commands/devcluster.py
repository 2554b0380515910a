"""`gpumix devcluster`: placeholder until its issue lands (each verb owns this module)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("dev-cluster", help="not yet available")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("gpumix dev-cluster: not yet available")
