"""`gpumix dev-cluster up|down|status|build`: a local control plane with simulated GPU nodes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dev-cluster",
        help="run a local Kubernetes control plane with simulated GPU nodes (kwok)",
        description=(
            "Run etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on "
            "127.0.0.1, with GPU nodes from a simulated-fleet file, plus Prometheus and the pod "
            "runner that serves a vLLM simulator on every gpumix pod's (loopback) IP. "
            "Binaries are found on PATH "
            "or in KUBEBUILDER_ASSETS, else built from Go modules and cached in "
            "~/.cache/gpumix/bin."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def with_state_dir(action: argparse.ArgumentParser) -> None:
        action.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help="certificates, data, logs and pid files (default ~/.cache/gpumix/dev-cluster)",
        )

    up = actions.add_parser("up", help="start the cluster (or reuse a running one)")
    with_state_dir(up)
    up.add_argument(
        "--fleet",
        type=Path,
        default=None,
        help="simulated-fleet file (default: the packaged copy of examples/fleet-sim.yaml)",
    )
    up.set_defaults(run=run_up)

    down = actions.add_parser("down", help="stop the processes that `up` started")
    with_state_dir(down)
    down.set_defaults(run=run_down)

    status = actions.add_parser("status", help="component health and nodes")
    with_state_dir(status)
    status.set_defaults(run=run_status)

    build = actions.add_parser(
        "build",
        help="build and cache the binaries (kubernetes, etcd, kwok, prometheus, helm) in advance",
    )
    build.add_argument(
        "components",
        nargs="*",
        metavar="COMPONENT",
        help="kubernetes, etcd, kwok, prometheus, helm (default: all)",
    )
    build.set_defaults(run=run_build)


def _cluster(args: argparse.Namespace, *, fleet: Path | None = None) -> Any:
    # Imported here so `gpumix --help` does not load the cluster machinery.
    from gpumix.devcluster.cluster import DevCluster
    from gpumix.devcluster.fleet import load_fleet

    return DevCluster(args.state_dir, load_fleet(fleet) if fleet is not None else None)


def _report(error: Exception) -> int:
    print(f"gpumix dev-cluster: {error}", file=sys.stderr)
    return 1


def run_up(args: argparse.Namespace) -> int:
    from gpumix.devcluster import DevClusterError

    cluster = _cluster(args, fleet=args.fleet)
    try:
        kubeconfig = cluster.up()
    except DevClusterError as error:
        return _report(error)
    print(f"export KUBECONFIG={kubeconfig}")
    print(f"export GPUMIX_PROMETHEUS_URL={cluster.prometheus_url}")
    return 0


def run_down(args: argparse.Namespace) -> int:
    stopped = _cluster(args).down()
    print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def run_status(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    report = cluster.health()
    for component in report:
        pid = str(component.pid) if component.pid else "-"
        print(f"{component.name:<24} {pid:>8}  {component.detail}")
    if not all(component.healthy for component in report):
        return 1
    rows = cluster.nodes()
    print()
    headers = {
        "name": "NODE",
        "pool": "POOL",
        "gpuProduct": "GPU",
        "capacityType": "CAPACITY",
        "gpus": "GPUS",
        "ready": "READY",
    }
    widths = {
        key: max([len(title), *(len(row[key]) for row in rows)]) for key, title in headers.items()
    }
    for row in [headers, *rows]:
        print("  ".join(row[key].ljust(widths[key]) for key in headers).rstrip())
    print(f"\nexport KUBECONFIG={cluster.kubeconfig}")
    print(f"export GPUMIX_PROMETHEUS_URL={cluster.prometheus_url}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from gpumix.devcluster import DevClusterError
    from gpumix.devcluster.binaries import COMPONENTS, Binaries
    from gpumix.errors import InputError

    names = args.components or list(COMPONENTS)
    unknown = [name for name in names if name not in COMPONENTS]
    if unknown:
        raise InputError(
            f"unknown component {unknown[0]!r} (known: {', '.join(COMPONENTS)})",
            field="COMPONENT",
        )
    binaries = Binaries()
    for name in names:
        component = COMPONENTS[name]
        for binary in component.binaries:
            try:
                path = binaries.path(binary)
            except DevClusterError as error:
                return _report(error)
            print(f"{binary:<24} {path}")
    return 0
