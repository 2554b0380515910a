"""The class-aware router makes the plan's assignment real (operator, router, simulators,
Prometheus, all real; kwok and the simulator stand in for GPUs and vLLM).

Clients send to the router pods' IPs (loopback addresses: the dev cluster has no kube-proxy, so
the entry Service's ClusterIP does not route), split evenly over them as a Service would. Every
load is bounded in count and time and targets 127.0.0.0/8 only.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpumix.devcluster.cluster import DevCluster
from gpumix.devcluster.loadgen import RequestClass, Result, require_loopback, run_load
from gpumix.devcluster.prometheus import SCRAPE_INTERVAL_SECONDS
from support import Kubectl, OperatorProcess, is_ready, wait_for

ROUTER_REQUESTS = "gpumix_router_requests"
SHARE_TOLERANCE = 0.03  # the bound: realised shares within 3 percentage points
CLASSES = [
    {"name": "chat", "inputTokens": 256, "outputTokens": 32, "share": 70},
    {"name": "rag", "inputTokens": 4096, "outputTokens": 32, "share": 30},
]
# 0.5 s: on the dev fleet the plan then serves chat on L4 and RAG on L4 pairs (TP2), so where
# a class goes decides whether it meets its TTFT (at 1 s one L4 type serves both classes,
# and routing could not matter)
TTFT_SECONDS, TPOT_SECONDS = 0.5, 0.1
SCRAPED_SECONDS = 2 * SCRAPE_INTERVAL_SECONDS + 2  # the last requests reach Prometheus
# What PlanWeighted must win by. Not an absolute attainment: the planner sizes TTFT by the mean
# M/D/1 wait, so at the plan's utilisation the p90 of the long class sits near its target.
ATTAINMENT_MARGIN = 0.15


def routed_service(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """Short outputs keep the simulators' token stream within what one Python process serves;
    two classes whose prompts differ 16x make the plan send them to different GPUs."""
    body: dict[str, Any] = {
        "model": {
            "name": "meta-llama/Llama-3.1-8B-Instruct",
            "maxModelLen": 8192,
            "weightFormats": ["bf16", "fp8"],
        },
        "workload": {"requestsPerSecond": "8", "headroomPercent": 20, "classes": CLASSES},
        "slo": {"ttftMilliseconds": int(TTFT_SECONDS * 1000), "tpotMilliseconds": 100},
        "placement": {"capacityTypes": ["on-demand", "spot"], "minReplicas": 2},
        **spec,
    }
    return {
        "apiVersion": "gpumix.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def router_urls(kubectl: Kubectl, namespace: str, service: str) -> list[str]:
    selector = f"app.kubernetes.io/name=gpumix-router,gpumix.io/service={service}"
    pods = kubectl.json("pods", "-n", namespace, "-l", selector)["items"]
    return [
        require_loopback(f"http://{pod['status']['podIP']}:8000")
        for pod in pods
        if pod["status"].get("phase") == "Running"
        and pod["status"].get("podIP")
        and not pod["metadata"].get("deletionTimestamp")
    ]


def healthy(urls: list[str]) -> bool:
    try:
        return all(httpx.get(f"{url}/health", timeout=2).status_code == 200 for url in urls)
    except httpx.TransportError:
        return False


def routed_counts(urls: list[str]) -> dict[tuple[str, str], float]:
    """(class, deployment) -> requests the routers answered with 200, summed over routers."""
    counts: dict[tuple[str, str], float] = {}
    for url in urls:
        text = httpx.get(f"{url}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            if family.name != ROUTER_REQUESTS:
                continue
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("code") == "200":
                    key = (sample.labels["class"], sample.labels["deployment"])
                    counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def planned(kubectl: Kubectl, namespace: str, service: str) -> dict[tuple[str, str], float]:
    status = kubectl.json("llmsvc", service, "-n", namespace)["status"]
    return {
        (class_name, entry["deployment"]): float(share)
        for entry in status["plan"]
        for class_name, share in entry["assignment"].items()
    }


def shares(counts: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    totals: dict[str, float] = {}
    for (class_name, _), count in counts.items():
        totals[class_name] = totals.get(class_name, 0.0) + count
    return {key: count / totals[key[0]] for key, count in counts.items()}


def load_classes(output_tokens: int | None = None) -> list[RequestClass]:
    return [
        RequestClass(
            c["name"], c["inputTokens"], output_tokens or c["outputTokens"], float(c["share"])
        )
        for c in CLASSES
    ]


def latency_summary(results: list[Result]) -> dict[str, str]:
    """Per class: p50/p95 TTFT and TPOT in ms, so a failed attainment says which target slipped."""

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else -1

    summary = {}
    for c in CLASSES:
        chosen = [r for r in results if r.class_name == c["name"] and r.status == 200]
        ttft = [r.ttft_seconds for r in chosen if r.ttft_seconds is not None]
        tpot = [t for r in chosen if (t := r.tpot_seconds) is not None]
        summary[c["name"]] = (
            f"n={len(chosen)} ttft p50/p95 {pct(ttft, 0.5):.0f}/{pct(ttft, 0.95):.0f} ms, "
            f"tpot p50/p95 {pct(tpot, 0.5):.0f}/{pct(tpot, 0.95):.0f} ms"
        )
    return summary


def simulator_p90(prometheus: str, namespace: str, start: float, end: float) -> dict[str, float]:
    """p90 TTFT and TPOT in seconds over [start, end], from the simulators' own histograms as
    Prometheus scraped them (the difference of the cumulative buckets at the two instants)."""
    p90 = {}
    for name, metric in (
        ("ttft", "vllm:time_to_first_token_seconds_bucket"),
        ("tpot", "vllm:request_time_per_output_token_seconds_bucket"),
    ):
        series = f'{metric}{{namespace="{namespace}"}}'
        promql = f"histogram_quantile(0.9, sum by (le) ({series} @ {end} - {series} @ {start}))"
        response = httpx.get(
            require_loopback(f"{prometheus}/api/v1/query"), params={"query": promql}, timeout=5
        )
        response.raise_for_status()
        rows = response.json()["data"]["result"]
        p90[name] = float(rows[0]["value"][1]) if rows else float("nan")
    return p90


def attainment(results: list[Result], class_name: str | None = None) -> float:
    chosen = [r for r in results if class_name is None or r.class_name == class_name]
    if not chosen:
        return 0.0
    return sum(r.meets(TTFT_SECONDS, TPOT_SECONDS) for r in chosen) / len(chosen)


@pytest.fixture
def routed(kubectl: Kubectl, operator: OperatorProcess, namespace: str) -> tuple[str, list[str]]:
    kubectl.apply(routed_service("mix", namespace))
    wait_for("LLMService mix Ready", lambda: is_ready(kubectl, namespace, "mix"))
    wait_for(
        "the entry Service to select the router",
        lambda: (
            kubectl.json("service", "mix", "-n", namespace)["spec"]["selector"].get(
                "app.kubernetes.io/name"
            )
            == "gpumix-router"
        ),
    )
    urls = wait_for("two router pods", lambda: (u := router_urls(kubectl, namespace, "mix"))
                    and len(u) == 2 and u)  # fmt: skip
    wait_for("the routers synced with the API", lambda: healthy(urls))
    return namespace, urls


def test_each_class_goes_where_the_plan_says_within_3_points(
    routed: tuple[str, list[str]], kubectl: Kubectl
) -> None:
    namespace, urls = routed
    plan = planned(kubectl, namespace, "mix")
    before = routed_counts(urls)
    results = asyncio.run(
        run_load(
            urls,
            load_classes(output_tokens=2),  # the route, not the generation, is measured here
            rate=40.0,
            duration=30.0,
            max_requests=900,
            model="mix",
            send_class_header=True,
        )
    )
    failed = Counter((r.status, r.target, r.class_name) for r in results if r.status != 200)
    assert not failed, f"every request served; failed (status, router, class): {dict(failed)}"
    after = routed_counts(urls)
    realised = shares({k: after[k] - before.get(k, 0.0) for k in after})
    print(f"\nplanned {plan}\nrealised {realised}")
    for key in set(plan) | set(realised):
        assert abs(realised.get(key, 0.0) - plan.get(key, 0.0)) <= SHARE_TOLERANCE, key


def test_plan_weighted_routing_meets_the_slo_better_than_round_robin(
    routed: tuple[str, list[str]], kubectl: Kubectl, dev_cluster: DevCluster
) -> None:
    namespace, urls = routed
    prometheus = dev_cluster.prometheus_url
    assert prometheus is not None
    plan = kubectl.json("llmsvc", "mix", "-n", namespace)["status"]["plan"]
    # the comparison means something only if the plan sends the classes to different places
    assert len({entry["deployment"] for entry in plan}) >= 2, plan
    outcome: dict[str, dict[str, float]] = {}
    p90: dict[str, dict[str, float]] = {}
    for mode in ("PlanWeighted", "RoundRobin"):
        kubectl.run(
            "patch", "llmsvc", "mix", "-n", namespace, "--type=merge",
            "-p", f'{{"spec": {{"routing": {{"mode": "{mode}"}}}}}}',
        )  # fmt: skip
        time.sleep(3)  # the routers' watch delivers the change
        time.sleep(SCRAPED_SECONDS)  # the previous load's last requests are scraped before start
        start = time.time()
        results = asyncio.run(
            run_load(urls, load_classes(), rate=8.0, duration=30.0, max_requests=300, model="mix")
        )
        time.sleep(SCRAPED_SECONDS)
        p90[mode] = simulator_p90(prometheus, namespace, start, time.time())
        outcome[mode] = {
            "all": attainment(results),
            **{c["name"]: attainment(results, c["name"]) for c in CLASSES},
        }
        print(f"\n{mode}: {latency_summary(results)}")
    print(f"\nSLO attainment (TTFT <= {TTFT_SECONDS}s, TPOT <= {TPOT_SECONDS}s): {outcome}")
    print(f"simulators' p90 from Prometheus (seconds): {p90}")
    plan_weighted, round_robin = outcome["PlanWeighted"], outcome["RoundRobin"]
    assert plan_weighted["all"] >= round_robin["all"] + ATTAINMENT_MARGIN, outcome
    # Relative, like the attainment: the planner sizes each batch so that TPOT meets its target
    # on average, so PlanWeighted's p90 sits just under it (91-97 ms of 100 in three runs).
    assert p90["PlanWeighted"]["tpot"] < p90["RoundRobin"]["tpot"], p90
    assert p90["PlanWeighted"]["ttft"] < p90["RoundRobin"]["ttft"], p90


def test_losing_a_spot_pool_mid_load(
    routed: tuple[str, list[str]], kubectl: Kubectl, dev_cluster: DevCluster
) -> None:
    namespace, urls = routed
    status = kubectl.json("llmsvc", "mix", "-n", namespace)["status"]
    spot_pools = sorted({e["pool"] for e in status["plan"] if e["capacityType"] == "spot"})
    if not spot_pools:
        pytest.skip(f"the plan uses no spot pool on this fleet: {status['plan']}")
    lost = spot_pools[0]
    lost_deployments = {e["deployment"] for e in status["plan"] if e["pool"] == lost}
    removed: list[str] = []
    # (seconds since start, routed 200s per (class, deployment)), sampled through the load
    samples: list[tuple[float, dict[tuple[str, str], float]]] = []
    replanned: list[float] = []  # when status first showed a plan without the lost pool

    def plan_avoids_lost_pool() -> bool:
        plan = kubectl.json("llmsvc", "mix", "-n", namespace)["status"]["plan"]
        return bool(plan) and all(entry["pool"] != lost for entry in plan)

    async def sample_routes(until: asyncio.Task[list[Result]]) -> None:
        while not until.done():
            counts = await asyncio.to_thread(routed_counts, urls)
            samples.append((time.monotonic() - started, counts))
            if removed and not replanned and await asyncio.to_thread(plan_avoids_lost_pool):
                replanned.append(time.monotonic())
            await asyncio.sleep(0.5)

    async def load_and_lose() -> tuple[list[Result], float]:
        load = asyncio.create_task(
            run_load(urls, load_classes(), rate=8.0, duration=40.0, max_requests=400, model="mix")
        )
        sampler = asyncio.create_task(sample_routes(load))
        await asyncio.sleep(10.0)
        lost_at = time.monotonic()
        removed.extend(await asyncio.to_thread(dev_cluster.delete_pool_nodes, lost))
        results = await load
        await sampler
        return results, lost_at

    started = time.monotonic()
    try:
        results, lost_at = asyncio.run(load_and_lose())
        wait_for("a plan without the lost pool", plan_avoids_lost_pool)
        replanned_after = (replanned[0] if replanned else time.monotonic()) - lost_at
        new_plan = planned(kubectl, namespace, "mix")
    finally:
        kubectl.run("delete", "llmsvc", "mix", "-n", namespace)
        assert len(dev_cluster.add_nodes(lost, len(removed))) == len(removed)
        dev_cluster.wait_nodes_ready()
    lost_offset = lost_at - started
    errors = [r for r in results if r.status != 200]
    late_errors = [r for r in errors if r.sent_at > lost_offset + 15.0]

    def to_lost(counts: dict[tuple[str, str], float]) -> float:
        return sum(n for (_, deployment), n in counts.items() if deployment in lost_deployments)

    # the last sample in which a request was still answered by the lost pool's pods
    last_to_lost = max(
        (t for (t, now), (_, before) in zip(samples[1:], samples, strict=False)
         if to_lost(now) > to_lost(before)),
        default=0.0,
    )  # fmt: skip
    # shares from the first sample after the new plan to the end, against the new plan
    after = next((counts for t, counts in samples if t >= lost_offset + replanned_after), None)
    deviation = None
    if after is not None:
        final = samples[-1][1]
        window = shares(
            {k: final[k] - after.get(k, 0.0) for k in final if final[k] > after.get(k, 0)}
        )
        deviation = max(
            abs(window.get(k, 0.0) - new_plan.get(k, 0.0)) for k in set(window) | set(new_plan)
        )
    print(
        f"\nlost {lost} at t={lost_offset:.1f}s: {len(errors)} of {len(results)} requests failed "
        f"({len(late_errors)} sent 15 s or more after the loss); the plan left the pool "
        f"within {replanned_after:.1f} s; the lost pool answered its last request "
        f"{max(0.0, last_to_lost - lost_offset):.1f} s after the loss; shares after the new plan "
        f"differ from it by at most "
        + (f"{deviation * 100:.1f} points" if deviation is not None else "n/a (load ended first)")
    )
    assert not late_errors, late_errors[:5]
    assert last_to_lost < lost_offset + 15.0, "the lost pool's deployments still got traffic"


def test_a_price_driven_migration_under_load_drops_no_request(
    routed: tuple[str, list[str]], kubectl: Kubectl
) -> None:
    """Make-before-break, as a client sees it: the pool in use gets 20x dearer mid-load, the
    service moves to other GPUs, and every request sent during the move is answered."""
    namespace, urls = routed
    status = kubectl.json("llmsvc", "mix", "-n", namespace)["status"]
    pools = sorted({entry["pool"] for entry in status["plan"]})
    old_deployments = {entry["deployment"] for entry in status["plan"]}
    pool_prices = {
        pool: kubectl.json("gpupool", pool)["status"]["pricePerGPUHour"] for pool in pools
    }

    def plan_moved() -> bool:
        plan = kubectl.json("llmsvc", "mix", "-n", namespace)["status"]["plan"]
        return bool(plan) and not {e["deployment"] for e in plan} & old_deployments

    def old_deployments_gone() -> bool:
        names = {d["metadata"]["name"] for d in kubectl.json("deploy", "-n", namespace)["items"]}
        return not names & old_deployments

    async def load_and_reprice() -> list[Result]:
        load = asyncio.create_task(
            run_load(urls, load_classes(), rate=8.0, duration=45.0, max_requests=450, model="mix")
        )
        await asyncio.sleep(5.0)
        for pool, price in pool_prices.items():
            dearer = f"{float(price) * 20:.2f}"
            await asyncio.to_thread(
                kubectl.run, "patch", "gpupool", pool, "--type=merge",
                "-p", f'{{"spec": {{"pricePerGPUHour": "{dearer}"}}}}',
            )  # fmt: skip
        return await load

    try:
        results = asyncio.run(load_and_reprice())
        moved = plan_moved()
        gone = old_deployments_gone()
    finally:
        for pool in pools:
            kubectl.run(
                "patch", "gpupool", pool, "--type=json",
                "-p", '[{"op": "remove", "path": "/spec/pricePerGPUHour"}]', check=False,
            )  # fmt: skip
        kubectl.run("delete", "llmsvc", "mix", "-n", namespace)
    failed = Counter((r.status, r.class_name) for r in results if r.status != 200)
    print(f"\nrepriced {pools}: moved={moved}, old gone={gone}, failed {dict(failed)}")
    assert moved and gone, "the price change moved the service off its pools within the load"
    assert not failed, f"every request served during the migration: {dict(failed)}"
