"""Operator scale benchmark: `python -m bench.operator` (or `make bench`) ->
bench/results/operator.md.

The real control plane of `gpumix dev-cluster` (etcd, kube-apiserver, controller manager,
scheduler, kwok), scaled up: the example fleet with every pool's node count multiplied, plus
enough CPU nodes for two router pods per service. `gpumix operator` runs as a process of its
own, as in a cluster. For each size (200 and 1000 LLMServices over 10 namespaces, Llama-3.1-8B,
1-2 req/s, two request classes):

- **Ready after the last apply:** seconds from the last create until every LLMService has
  Ready=True for its generation (all planned replicas Ready: kwok marks a pod Ready once it is
  scheduled, so this is the operator, the controllers and the scheduler, not a model load).
- **Re-plan after a spot loss:** every node of the spot pool most services run on is deleted;
  seconds until no service's status.plan names that pool, then until all are Ready again.
- **Operator memory:** resident set (VmRSS) at the end and its peak (VmHWM).
- **Planning passes:** the solver's own time per pass, from the operator's log.

The pod runner (simulators behind the pods) is stopped: serving is not what is measured here,
and thousands of in-process simulators would compete for the same two cores. Every address is
127.0.0.1. The results file keeps everything from the ``<!-- notes -->`` line on.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.report import machine, write_keeping_notes
from gpumix.devcluster.cluster import DevCluster, default_fleet_path
from gpumix.devcluster.fleet import (
    PODS_PER_NODE,
    SYSTEM_NODES,
    free_pod_cidrs,
    load_fleet,
    system_node_manifest,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "operator.md"
NAMESPACES = 10
STALL_SECONDS = 90.0  # no service became Ready for this long: the rest will not
ROUTER_PODS_PER_SERVICE = 2
PLANNED_LINE = re.compile(r"planned (\d+) services: (\w+), \$[\d.,]+/h in ([\d.]+) s")


@dataclass
class SizeResult:
    services: int
    gpu_nodes: int
    gpus: int
    apply_seconds: float
    ready_seconds: float | None
    ready90_seconds: float | None
    ready_count: int
    lost_pool: str
    services_on_lost_pool: int
    replan_seconds: float | None
    ready_again_seconds: float | None
    rss_mib: float
    peak_rss_mib: float
    solve_seconds: list[float]
    solve_statuses: list[str]


def scaled_fleet(factor: int) -> Any:
    fleet = load_fleet(default_fleet_path())
    return replace(fleet, pools=tuple(replace(p, nodes=p.nodes * factor) for p in fleet.pools))


def llmservice(index: int, rng: random.Random) -> dict[str, Any]:
    return {
        "apiVersion": "gpumix.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": f"svc-{index:04d}", "namespace": f"bench-{index % NAMESPACES}"},
        "spec": {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "maxModelLen": 8192},
            "workload": {
                "requestsPerSecond": str(rng.choice([1, 2])),
                "headroomPercent": 0,
                "classes": [
                    {"name": "chat", "inputTokens": 512, "outputTokens": 256, "share": 70},
                    {"name": "rag", "inputTokens": 2048, "outputTokens": 256, "share": 30},
                ],
            },
            "slo": {"ttftMilliseconds": 2000, "tpotMilliseconds": 100},
        },
    }


def memory_mib(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def ready(service: dict[str, Any]) -> bool:
    status = service.get("status") or {}
    if status.get("observedGeneration") != service["metadata"].get("generation"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


def wait_until(check: Any, timeout: float, poll: float = 1.0) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(poll)
    return None


def wait_for_ready(
    count: Any, target: int, timeout: float
) -> tuple[float | None, float | None, int]:
    """Seconds until ``count()`` reaches ``target`` (None if it stalls for STALL_SECONDS or the
    timeout passes), seconds until 90 % of it, and the last count."""
    started = changed = time.monotonic()
    last, ninety = -1, None
    while True:
        now_count = count()
        now = time.monotonic()
        if now_count != last:
            last, changed = now_count, now
        if ninety is None and now_count >= 0.9 * target:
            ninety = now - started
        if now_count >= target:
            return now - started, ninety, now_count
        if now - changed > STALL_SECONDS or now - started > timeout:
            return None, ninety, now_count
        time.sleep(2.0)


def run_size(
    services: int, factor: int, time_limit: float, seed: int, timeout: float
) -> SizeResult:
    from kubernetes import client, config

    fleet = scaled_fleet(factor)
    with tempfile.TemporaryDirectory(prefix="gpumix-bench-operator-") as state:
        cluster = DevCluster(Path(state), fleet)
        cluster.up()
        try:
            cluster.processes.stop("pod-runner")
            api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            core = client.CoreV1Api(api_client)
            custom = client.CustomObjectsApi(api_client)
            # CPU nodes for the routers: 110 pods each, as on a real node.
            used = [n.spec.pod_cidr for n in core.list_node().items if n.spec.pod_cidr]
            cidrs = iter(free_pod_cidrs(used))
            wanted = -(-services * ROUTER_PODS_PER_SERVICE // (PODS_PER_NODE - 10))
            for index in range(SYSTEM_NODES, max(SYSTEM_NODES, wanted)):
                core.create_node(system_node_manifest(index, next(cidrs)))
            cluster.wait_nodes_ready()
            kubectl = ["kubectl", f"--kubeconfig={cluster.kubeconfig}"]
            subprocess.run([*kubectl, "apply", "--server-side", "-f", str(REPO / "crds")],
                           check=True, capture_output=True)  # fmt: skip
            subprocess.run([*kubectl, "wait", "--for=condition=Established", "crd", "--all"],
                           check=True, capture_output=True)  # fmt: skip
            for index in range(NAMESPACES):
                core.create_namespace({"metadata": {"name": f"bench-{index}"}})

            log_path = Path(state) / "operator.log"
            env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
            with log_path.open("wb") as log:
                operator = subprocess.Popen(
                    [sys.executable, "-m", "gpumix.cli", "operator", "--liveness", "none",
                     "--time-limit", str(time_limit), "--migration-timeout", "60"],
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            try:
                time.sleep(5)
                rng = random.Random(seed)
                started = time.monotonic()
                for index in range(services):
                    body = llmservice(index, rng)
                    custom.create_namespaced_custom_object(
                        "gpumix.io", "v1alpha1", body["metadata"]["namespace"], "llmservices", body
                    )
                apply_seconds = time.monotonic() - started
                print(f"{services} services created in {apply_seconds:.1f}s", flush=True)

                def listing() -> list[dict[str, Any]]:
                    items: list[dict[str, Any]] = custom.list_cluster_custom_object(
                        "gpumix.io", "v1alpha1", "llmservices"
                    )["items"]
                    return items

                def ready_count() -> int:
                    count = sum(ready(s) for s in listing())
                    print(f"  {count}/{services} Ready", flush=True)
                    return count

                ready_seconds, ready90_seconds, final_count = wait_for_ready(
                    ready_count, services, timeout
                )

                spot_pools = Counter(
                    entry["pool"]
                    for service in listing()
                    for entry in (service.get("status") or {}).get("plan", [])
                    if entry.get("capacityType") == "spot"
                )
                lost_pool, on_lost = spot_pools.most_common(1)[0] if spot_pools else ("", 0)
                replan_seconds = ready_again = None
                if lost_pool:
                    lost_at = time.monotonic()
                    cluster.delete_pool_nodes(lost_pool)

                    def moved_off() -> bool:
                        return not any(
                            entry["pool"] == lost_pool
                            for service in listing()
                            for entry in (service.get("status") or {}).get("plan", [])
                        )

                    replan_seconds = wait_until(moved_off, timeout)
                    if replan_seconds is not None:
                        # Back to as many Ready as before the loss.
                        again, _, _ = wait_for_ready(ready_count, final_count, timeout)
                        ready_again = None if again is None else time.monotonic() - lost_at
                rss, peak = memory_mib(operator.pid)
            finally:
                operator.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    operator.wait(timeout=30)
                if operator.poll() is None:
                    operator.kill()
            passes = PLANNED_LINE.findall(log_path.read_text(errors="replace"))
        finally:
            cluster.down()
    gpu_nodes = sum(p.nodes for p in fleet.pools)
    return SizeResult(
        services=services,
        gpu_nodes=gpu_nodes,
        gpus=sum(p.nodes * p.gpus_per_node for p in fleet.pools),
        apply_seconds=apply_seconds,
        ready_seconds=ready_seconds,
        ready90_seconds=ready90_seconds,
        ready_count=final_count,
        lost_pool=lost_pool,
        services_on_lost_pool=on_lost,
        replan_seconds=replan_seconds,
        ready_again_seconds=ready_again,
        rss_mib=rss,
        peak_rss_mib=peak,
        solve_seconds=[float(seconds) for _, _, seconds in passes],
        solve_statuses=[status for _, status, _ in passes],
    )


def seconds(value: float | None) -> str:
    return "not within the timeout" if value is None else f"{value:.1f}"


def report(results: list[SizeResult], command: str, time_limit: float) -> list[str]:
    lines = [
        "# Operator scale benchmark",
        "",
        f"`{command}` on {machine()}, {time.strftime('%Y-%m-%d')}. Solver time limit "
        f"{time_limit:g} s per pass. Goals (issue 15): all Ready <= 60 s after the last apply, "
        "re-plan after a spot loss <= 10 s.",
        "",
        "| services | GPU nodes (GPUs) | create all (s) | 90 % / all Ready after last create (s) | "
        "lost pool (services on it) | off the lost pool (s) | all Ready again (s) | "
        "operator RSS / peak (MiB) | passes: solve s (median, max) |",
        "|---:|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for r in results:
        solves = sorted(r.solve_seconds)
        solve = (
            f"{len(solves)}: {solves[len(solves) // 2]:.1f}, {solves[-1]:.1f}" if solves else "0"
        )
        statuses = ", ".join(f"{s} x{n}" for s, n in Counter(r.solve_statuses).items())
        ready_cell = f"{seconds(r.ready90_seconds)} / {seconds(r.ready_seconds)}"
        if r.ready_seconds is None:
            ready_cell += f" ({r.ready_count}/{r.services} Ready, then no progress)"
        lines.append(
            f"| {r.services} | {r.gpu_nodes} ({r.gpus}) | {r.apply_seconds:.1f} | {ready_cell} | "
            f"{r.lost_pool or '-'} ({r.services_on_lost_pool}) | {seconds(r.replan_seconds)} | "
            f"{seconds(r.ready_again_seconds)} | {r.rss_mib:.0f} / {r.peak_rss_mib:.0f} | "
            f"{solve} ({statuses}) |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1000", help="services per run (default 200,1000)")
    parser.add_argument("--time-limit", type=float, default=30.0, help="solver seconds per pass")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for each stage (900)"
    )
    args = parser.parse_args()
    results = []
    for size in (int(part) for part in args.sizes.split(",")):
        # The example fleet has 60 GPUs; a service of 1-2 req/s takes one or two. At a
        # twentieth of a fleet per service every service fits, with room to re-plan.
        factor = max(1, -(-size // 20))
        print(f"--- {size} services on {factor}x the example fleet", flush=True)
        results.append(run_size(size, factor, args.time_limit, args.seed, args.timeout))
    command = "python -m bench.operator " + " ".join(sys.argv[1:])
    lines = report(results, command.strip(), args.time_limit)
    write_keeping_notes(RESULTS, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
