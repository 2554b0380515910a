"""A bounded, open-loop load generator for the dev cluster (loopback targets only).

Requests arrive as a Poisson process at ``rate`` per second with the service's class mix; each is
a streaming chat completion whose prompt is sized to the class's input tokens (about four
characters per token, the simulator's and the router's estimate) and whose ``max_tokens`` is
the class's output tokens. It measures time to first token and end-to-end time per request, as
a client would see them.

Every load is bounded twice: by ``duration`` (no new request after it) and by ``max_requests``;
each request has a timeout. Targets must be 127.0.0.0/8 addresses (the dev cluster's pod IPs and
services), which :func:`require_loopback` enforces before anything is sent.

``python -m gpumix.devcluster.loadgen burst`` is the demo's burst: a few requests to one pod of
each of a service's configurations, then the per-configuration TTFT p90 and request count as
Prometheus answers them.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
CHARS_PER_TOKEN = 4
REQUEST_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class RequestClass:
    name: str
    input_tokens: int
    output_tokens: int
    share: float


@dataclass(frozen=True)
class Result:
    class_name: str
    target: str
    status: int  # 0: the connection failed
    ttft_seconds: float | None
    e2e_seconds: float
    output_tokens: int = 0  # content chunks received
    sent_at: float = 0.0  # seconds after the load started

    @property
    def tpot_seconds(self) -> float | None:
        """Mean time per output token after the first, as vLLM's TPOT."""
        if self.ttft_seconds is None or self.output_tokens < 2:
            return None
        return (self.e2e_seconds - self.ttft_seconds) / (self.output_tokens - 1)

    def meets(self, ttft_seconds: float, tpot_seconds: float) -> bool:
        """Served, within both latency targets (a failed request never meets them)."""
        tpot = self.tpot_seconds
        return (
            self.status == 200
            and self.ttft_seconds is not None
            and self.ttft_seconds <= ttft_seconds
            and (tpot is None or tpot <= tpot_seconds)
        )


def require_loopback(url: str) -> str:
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"load targets must be 127.0.0.0/8 addresses, got {url!r}") from None
    if address not in LOOPBACK:
        raise ValueError(f"load targets must be 127.0.0.0/8 addresses, got {url!r}")
    return url.rstrip("/")


def prompt_of(tokens: int) -> str:
    words = "the fleet serves tokens "  # 24 characters: about six tokens
    return (words * (tokens * CHARS_PER_TOKEN // len(words) + 1))[: tokens * CHARS_PER_TOKEN]


async def one_request(
    client: httpx.AsyncClient,
    target: str,
    request_class: RequestClass,
    model: str,
    send_class_header: bool,
    sent_at: float = 0.0,
) -> Result:
    started = time.monotonic()
    first: float | None = None
    tokens = 0
    headers = {"x-gpumix-class": request_class.name} if send_class_header else {}
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt_of(request_class.input_tokens)}],
        "max_tokens": request_class.output_tokens,
        "stream": True,
    }
    try:
        async with client.stream(
            "POST", f"{target}/v1/chat/completions", json=body, headers=headers
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and _has_content(line):
                    tokens += 1
                    if first is None:
                        first = time.monotonic() - started
            status = response.status_code
    except httpx.HTTPError:
        status = 0
    elapsed = time.monotonic() - started
    return Result(request_class.name, target, status, first, elapsed, tokens, sent_at)


def _has_content(line: str) -> bool:
    """An SSE chunk that carries generated text (not the role, finish or usage chunk)."""
    try:
        chunk = json.loads(line.removeprefix("data: "))
    except ValueError:
        return False
    choices = chunk.get("choices") or [] if isinstance(chunk, dict) else []
    return any((choice.get("delta") or {}).get("content") for choice in choices)


async def run_load(
    targets: Sequence[str],
    classes: Sequence[RequestClass],
    *,
    rate: float,
    duration: float,
    max_requests: int,
    model: str,
    send_class_header: bool = False,
    seed: int = 0,
) -> list[Result]:
    """Poisson arrivals at ``rate``/s for ``duration`` s (at most ``max_requests``), spread
    uniformly over ``targets``; returns one Result per request once all have finished."""
    checked = [require_loopback(target) for target in targets]
    if not checked or not classes or rate <= 0:
        return []
    rng = random.Random(seed)
    weights = [c.share for c in classes]
    tasks: list[asyncio.Task[Result]] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS, limits=limits) as client:
        started = time.monotonic()
        next_at = 0.0
        while len(tasks) < max_requests:
            next_at += rng.expovariate(rate)
            if next_at > duration:
                break
            await asyncio.sleep(max(0.0, started + next_at - time.monotonic()))
            request_class = rng.choices(classes, weights)[0]
            target = rng.choice(checked)
            tasks.append(
                asyncio.create_task(
                    one_request(client, target, request_class, model, send_class_header, next_at)
                )
            )
        return list(await asyncio.gather(*tasks))


# ----- the demo's burst ----------------------------------------------------------------------


def _kubectl_json(kubeconfig: str, *args: str) -> Any:
    import subprocess

    output = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", "get", *args, "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return json.loads(output)


def _one_pod_per_deployment(kubeconfig: str, namespace: str, service: str) -> dict[str, str]:
    pods = _kubectl_json(kubeconfig, "pods", "-n", namespace, "-l", f"gpumix.io/service={service}")
    chosen: dict[str, str] = {}
    for pod in pods["items"]:
        deployment = pod["metadata"]["labels"].get("gpumix.io/deployment")
        ip = pod["status"].get("podIP")
        if deployment and ip and pod["status"].get("phase") == "Running":
            port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
            chosen.setdefault(deployment, f"http://{ip}:{port}")
    return chosen


def _classes(kubeconfig: str, namespace: str, service: str) -> tuple[str, list[RequestClass]]:
    body = _kubectl_json(kubeconfig, "llmsvc", service, "-n", namespace)
    classes = body["spec"].get("workload", {}).get("classes") or [
        {"name": "default", "inputTokens": 512, "outputTokens": 256, "share": 1}
    ]
    return service, [
        RequestClass(c["name"], int(c["inputTokens"]), int(c["outputTokens"]), float(c["share"]))
        for c in classes
    ]


def _promql(prometheus: str, query: str) -> dict[str, float]:
    response = httpx.get(
        f"{require_loopback(prometheus)}/api/v1/query", params={"query": query}, timeout=10
    )
    response.raise_for_status()
    return {
        row["metric"].get("deployment", ""): float(row["value"][1])
        for row in response.json()["data"]["result"]
    }


def burst(args: argparse.Namespace) -> int:
    targets = _one_pod_per_deployment(args.kubeconfig, args.namespace, args.service)
    if not targets:
        print(f"no Running pods of {args.namespace}/{args.service}", file=sys.stderr)
        return 1
    model, classes = _classes(args.kubeconfig, args.namespace, args.service)
    print(
        f"{args.namespace}/{args.service}: {args.requests} requests to one pod of each of "
        f"{len(targets)} configurations (Poisson, {args.rate:g}/s per pod)"
    )

    async def all_configurations() -> list[Result]:
        loads = [
            run_load(
                [target],
                classes,
                rate=args.rate,
                duration=args.requests / args.rate * 3,
                max_requests=args.requests,
                model=model,
            )
            for target in targets.values()
        ]
        return [result for load in await asyncio.gather(*loads) for result in load]

    results = asyncio.run(all_configurations())
    failed = sum(1 for r in results if r.status != 200)
    print(f"  served {len(results) - failed}/{len(results)} requests")
    # Two scrapes after the burst, so the counters Prometheus holds include all of it.
    time.sleep(args.scrape_wait)
    selector = f'namespace="{args.namespace}",service="{args.service}"'
    ttft = _promql(
        args.prometheus,
        "histogram_quantile(0.9, sum by (deployment, le) "
        f"(increase(vllm:time_to_first_token_seconds_bucket{{{selector}}}[5m])))",
    )
    # the raw counter, not increase(): increase() extrapolates to the window's edges, so a
    # burst of 12 would read as 13 or 15
    count = _promql(
        args.prometheus, f"sum by (deployment) (vllm:request_success_total{{{selector}}})"
    )
    print(f"\n  Prometheus ({args.prometheus}): requests served since the pods started,")
    print("  TTFT p90 over the last 5 minutes (from vLLM's histogram buckets)")
    deployments = sorted(set(ttft) | set(count))
    width = max([40, *(len(d) for d in deployments)])  # names may carry a hash suffix
    print(f"  {'DEPLOYMENT':<{width}} {'SERVED':>8} {'TTFT p90':>10}")
    for deployment in deployments:
        p90 = ttft.get(deployment)
        shown = f"{p90 * 1000:.0f} ms" if p90 is not None and p90 == p90 else "-"
        print(f"  {deployment:<{width}} {count.get(deployment, 0):>8.0f} {shown:>10}")
    return 0 if failed == 0 else 1


# ----- the demo's load through the router ----------------------------------------------------

ROUTER_REQUESTS = "gpumix_router_requests_total"


def router_urls(kubeconfig: str, namespace: str, service: str) -> list[str]:
    """The service's Running router pods, as URLs on their (loopback) pod IPs."""
    selector = f"app.kubernetes.io/name=gpumix-router,gpumix.io/service={service}"
    pods = _kubectl_json(kubeconfig, "pods", "-n", namespace, "-l", selector)["items"]
    return [
        f"http://{pod['status']['podIP']}:{pod['spec']['containers'][0]['ports'][0]['containerPort']}"
        for pod in pods
        if pod["status"].get("phase") == "Running"
        and pod["status"].get("podIP")
        and not pod["metadata"].get("deletionTimestamp")
    ]


def planned_shares(kubeconfig: str, namespace: str, service: str) -> dict[tuple[str, str], float]:
    """(class, deployment) -> the share of the class the plan sends to that deployment."""
    body = _kubectl_json(kubeconfig, "llmsvc", service, "-n", namespace)
    return {
        (class_name, entry["deployment"]): float(share)
        for entry in (body.get("status") or {}).get("plan") or []
        for class_name, share in (entry.get("assignment") or {}).items()
    }


def routed_counts(prometheus: str, namespace: str, service: str) -> dict[tuple[str, str], float]:
    """(class, deployment) -> requests the service's routers answered 200, as Prometheus has
    them."""
    query = (
        f'sum by (class, deployment) ({ROUTER_REQUESTS}{{namespace="{namespace}",'
        f'service="{service}",code="200"}})'
    )
    response = httpx.get(
        f"{require_loopback(prometheus)}/api/v1/query", params={"query": query}, timeout=10
    )
    response.raise_for_status()
    return {
        (row["metric"].get("class", ""), row["metric"].get("deployment", "")): float(
            row["value"][1]
        )
        for row in response.json()["data"]["result"]
    }


def realised_shares(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    """Per class, the fraction of the requests between two counts that went to each
    deployment."""
    sent = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    per_class: dict[str, float] = {}
    for (class_name, _), count in sent.items():
        per_class[class_name] = per_class.get(class_name, 0.0) + count
    return {key: count / per_class[key[0]] for key, count in sent.items() if per_class[key[0]] > 0}


def route(args: argparse.Namespace) -> int:
    routers = router_urls(args.kubeconfig, args.namespace, args.service)
    if not routers:
        print(f"no Running router pods of {args.namespace}/{args.service}", file=sys.stderr)
        return 1
    model, classes = _classes(args.kubeconfig, args.namespace, args.service)
    print(
        f"{args.namespace}/{args.service}: {args.requests} requests through its "
        f"{len(routers)} routers (Poisson, {args.rate:g}/s, the service's class mix; the "
        "router estimates each class from the prompt)"
    )
    before = routed_counts(args.prometheus, args.namespace, args.service)
    results = asyncio.run(
        run_load(
            routers,
            classes,
            rate=args.rate,
            duration=args.requests / args.rate * 3,
            max_requests=args.requests,
            model=model,
        )
    )
    failed = sum(1 for r in results if r.status != 200)
    print(f"  served {len(results) - failed}/{len(results)} requests")
    time.sleep(args.scrape_wait)
    realised = realised_shares(before, routed_counts(args.prometheus, args.namespace, args.service))
    planned = planned_shares(args.kubeconfig, args.namespace, args.service)
    keys = [
        key
        for key in sorted(set(planned) | set(realised))
        if planned.get(key, 0.0) or realised.get(key, 0.0)
    ]
    width = max([40, *(len(key[1]) for key in keys)])
    print(f"\n  {'CLASS':<10} {'DEPLOYMENT':<{width}} {'PLAN':>6} {'ROUTED':>7}")
    for key in keys:
        print(
            f"  {key[0]:<10} {key[1]:<{width}} {planned.get(key, 0.0):>6.0%} "
            f"{realised.get(key, 0.0):>7.0%}"
        )
    return 0 if failed == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpumix.devcluster.loadgen")
    actions = parser.add_subparsers(dest="action", required=True)
    burst_parser = actions.add_parser("burst", help="a short burst to one pod per configuration")
    burst_parser.add_argument("--kubeconfig", required=True)
    burst_parser.add_argument("--prometheus", required=True, help="Prometheus URL (loopback)")
    burst_parser.add_argument("--namespace", required=True)
    burst_parser.add_argument("--service", required=True)
    burst_parser.add_argument("--requests", type=int, default=12, help="per configuration")
    burst_parser.add_argument("--rate", type=float, default=4.0, help="requests/s per pod")
    burst_parser.add_argument("--scrape-wait", type=float, default=11.0)
    burst_parser.set_defaults(run=burst)
    route_parser = actions.add_parser("route", help="the class mix through the routers")
    route_parser.add_argument("--kubeconfig", required=True)
    route_parser.add_argument("--prometheus", required=True, help="Prometheus URL (loopback)")
    route_parser.add_argument("--namespace", required=True)
    route_parser.add_argument("--service", required=True)
    route_parser.add_argument("--requests", type=int, default=200)
    route_parser.add_argument("--rate", type=float, default=10.0, help="requests/s in all")
    route_parser.add_argument("--scrape-wait", type=float, default=11.0)
    route_parser.set_defaults(run=route)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
