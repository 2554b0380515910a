"""`gpumix whatif`: ask the operator's plan API what a change to the fleet would do.

The change file is the body of ``POST /api/v1/whatif`` in YAML (or JSON), e.g.::

    removedPools: [h100-spot]                 # as if the spot pool went away
    prices:
      - {gpuType: L4, changePercent: -30}     # L4 30 % cheaper
    availability:
      - {pool: a100-on-demand, availableGPUs: 4}
    services:
      - {namespace: team-a, name: chat, requestsPerSecond: "40"}
    manifests: []                             # extra LLMService manifests, to price them

It is checked here with the API's own model before anything is sent. Exit codes, as for
``gpumix plan``: 0 every service has a plan, 3 some service would have none (the diff is still
printed, with reasons), 2 invalid input (one line naming the file and the field), 1 the API
could not answer (unreachable, busy, timed out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gpumix.errors import InputError

EXIT_PLANNED = 0
EXIT_UNAVAILABLE = 1
EXIT_INFEASIBLE = 3
WHATIF_PATH = "/api/v1/whatif"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "whatif",
        help="show what a change to the fleet would do to the running plans",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--api",
        required=True,
        metavar="URL",
        help="the operator's plan API, e.g. http://localhost:8081 (kubectl port-forward)",
    )
    parser.add_argument("-f", "--filename", required=True, metavar="CHANGE", help="change file")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for the answer (default 60)",
    )
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    parser.set_defaults(run=run)


def load_change(path: str) -> dict[str, Any]:
    """The change file, validated as the API will validate it; InputError naming the field."""
    import yaml
    from pydantic import ValidationError

    # The models only (pydantic): the CLI does not load FastAPI.
    from gpumix.api.models import WhatIfRequest
    from gpumix.resources.loader import field_path

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"cannot read: {error.strerror}", source=path) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise InputError(f"{line}{problem}", source=path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("must be a mapping (the body of POST /api/v1/whatif)", source=path)
    try:
        WhatIfRequest.model_validate(data)
    except ValidationError as error:
        detail = error.errors(include_url=False)[0]
        message = str(detail["msg"]).removeprefix("Value error, ")
        raise InputError(message, source=path, field=field_path(detail["loc"])) from None
    return data


def run(args: argparse.Namespace) -> int:
    import sys

    import httpx

    change = load_change(args.filename)
    url = args.api.rstrip("/") + WHATIF_PATH
    try:
        response = httpx.post(url, json=change, timeout=args.timeout)
    except httpx.HTTPError as error:
        print(f"gpumix whatif: {url}: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if response.status_code != 200:
        problem = _problem(response)
        if response.status_code == 422:
            # The live fleet lacks what the file names (a pool, a service, a class).
            first = (problem.get("errors") or [{}])[0]
            raise InputError(
                str(first.get("message") or problem.get("detail") or "refused"),
                source=args.filename,
                field=first.get("field"),
            )
        detail = problem.get("detail") or response.text.strip() or response.reason_phrase
        print(f"gpumix whatif: {url}: {response.status_code} {detail}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    answer = response.json()
    if args.output == "json":
        print(json.dumps(answer, indent=2))
    else:
        print(render_table(answer))
    feasible = all(service["feasible"] for service in answer["services"])
    return EXIT_PLANNED if feasible else EXIT_INFEASIBLE


def _problem(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.2f}/h"


def _signed(value: float | None) -> str:
    return "" if value is None else f" ({'+' if value >= 0 else '-'}${abs(value):.2f}/h)"


def render_table(answer: dict[str, Any]) -> str:
    gap = answer.get("gap")
    lines = [
        f"what-if {answer['status']} in {answer['solveSeconds']:.2f} s "
        f"(limit {answer['timeLimitSeconds']:g} s)"
        + (f", gap {100 * gap:.2f} %" if gap else "")
        + f": {_money(answer['runningCostPerHour'])} → {_money(answer['totalCostPerHour'])}"
        + _signed(answer["costDeltaPerHour"])
    ]
    for service in answer["services"]:
        marks = " [new]" if service["new"] else ""
        if service["becomesInfeasible"]:
            marks += " [becomes infeasible]"
        lines.append("")
        lines.append(
            f"{service['namespace']}/{service['name']}{marks}  {service['status']}  "
            f"{_money(service['runningCostPerHour'])} → {_money(service['costPerHour'])}"
            + _signed(service["costDeltaPerHour"])
        )
        if service["changes"]:
            lines.append(
                f"  {'POOL':<18}{'GPU':<12}{'CAPACITY':<11}{'TP':>3} {'FORMAT':<7}"
                f"{'RUNNING':>8}{'PLANNED':>8}{'DELTA':>7}"
            )
            for change in service["changes"]:
                lines.append(
                    f"  {change['pool']:<18}{change['gpuType']:<12}{change['capacityType']:<11}"
                    f"{change['tensorParallel']:>3} {change['weightFormat']:<7}"
                    f"{change['runningReplicas']:>8}{change['plannedReplicas']:>8}"
                    f"{change['delta']:>+7}"
                )
        elif service["feasible"]:
            lines.append("  no replicas move")
        if not service["feasible"]:
            for code, reason in zip(service["reasonCodes"], service["reasons"], strict=False):
                lines.append(f"  ! {code}: {reason}")
    return "\n".join(lines)
