"""`gpumix operator`: run the kopf operator (fleet inventory, joint planner, reconciler)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from gpumix.errors import InputError

DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
CONFIG_ENV = "GPUMIX_CONFIG"
MAX_PORT = 65535


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _port(text: str) -> int:
    """A TCP port; 0 or 'none' (returned as 0) switches the endpoint off."""
    if text.strip().lower() == "none":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_PORT}, got {text}")
    return value


def config_path(flag: str | None, environ: Mapping[str, str]) -> str | None:
    """--config, else $GPUMIX_CONFIG (what the Helm chart sets), else no file."""
    return flag or environ.get(CONFIG_ENV) or None


def api_port_of(flag: int | None, enabled: bool, file_port: int) -> int | None:
    """--api-port wins (0: off); else the file's api.port, only when api.enabled."""
    if flag is not None:
        return flag or None
    return file_port if enabled else None


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="run the Kubernetes operator",
        description="Watch LLMServices, GPUPools, Nodes and Pods; plan every LLMService "
        "jointly on the live GPU inventory and reconcile vLLM Deployments.",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NAMESPACE",
        help="watch LLMServices (and pods) only in this namespace; repeatable "
        "(default: all namespaces)",
    )
    parser.add_argument(
        "--liveness",
        default=DEFAULT_LIVENESS,
        metavar="URL",
        help=f"liveness endpoint (default {DEFAULT_LIVENESS}); 'none' disables it",
    )
    parser.add_argument(
        "--peering",
        default=None,
        metavar="NAME",
        help="coordinate replicas through this kopf peering object (default: standalone)",
    )
    parser.add_argument(
        "--planner-interval",
        type=_positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="re-plan at least this often (default 60)",
    )
    parser.add_argument(
        "--debounce",
        type=_positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="batch changes that arrive within this time into one planning pass (default 1)",
    )
    parser.add_argument(
        "--time-limit",
        "--solver-time-limit",
        dest="time_limit",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="solver time limit per planning pass (default 30)",
    )
    parser.add_argument(
        "--backend",
        choices=["highs", "cbc"],
        default="highs",
        help="MILP solver backend (default highs)",
    )
    parser.add_argument(
        "--migration-timeout",
        type=_positive_seconds,
        default=600.0,
        metavar="SECONDS",
        help="remove replaced Deployments after this long even if the new ones are not "
        "ready (default 600)",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help=f"configuration file: default prices (pricing.defaults), discovery label keys "
        f"(discovery.gpuTypeLabels, discovery.capacityTypeLabels) and metrics.port "
        f"(default ${CONFIG_ENV} if set, else none)",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://0.0.0.0:PORT/metrics; 0 or 'none' disables "
        "(default: the configuration file's metrics.port, else disabled)",
    )
    parser.add_argument(
        "--api-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve the read-only plan/what-if API at http://0.0.0.0:PORT/api/v1/; 0 or "
        "'none' disables (default: the configuration file's api.port when api.enabled, "
        "else disabled)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `gpumix plan` and `gpumix profile` must not pay for kopf and the client.
    from gpumix.operator.config_file import ConfigFile, load_config_file
    from gpumix.operator.main import run as run_operator
    from gpumix.operator.settings import OperatorConfig
    from gpumix.solver import Backend

    liveness = None if str(args.liveness).lower() == "none" else args.liveness
    for namespace in args.namespace:
        if not namespace:
            raise InputError("must not be empty", field="--namespace")
    # Read once, before anything starts: a bad file stops here with exit code 2.
    path = config_path(args.config, os.environ)
    file_config = load_config_file(path) if path else ConfigFile()
    metrics_port = args.metrics_port if args.metrics_port is not None else file_config.metrics.port
    api_port = api_port_of(args.api_port, file_config.api.enabled, file_config.api.port)
    operator_config = OperatorConfig(
        namespaces=tuple(dict.fromkeys(args.namespace)),
        liveness_endpoint=liveness,
        peering=args.peering,
        planner_interval_seconds=args.planner_interval,
        debounce_seconds=args.debounce,
        solver_time_limit_seconds=args.time_limit,
        solver_backend=Backend(args.backend),
        migration_timeout_seconds=args.migration_timeout,
        verbose=args.verbose,
        inventory=file_config.inventory_settings(),
        router=file_config.router.options(),
        metrics_port=metrics_port or None,
        api_port=api_port,
        api_whatif_time_limit_seconds=file_config.api.whatif_time_limit_seconds,
        prometheus_url=file_config.prometheus.url,
        prometheus_interval_seconds=file_config.prometheus.interval_seconds,
        prometheus_timeout_seconds=file_config.prometheus.timeout_seconds,
        calibration_enabled=file_config.calibration.enabled,
    )
    run_operator(operator_config)
    return 0
