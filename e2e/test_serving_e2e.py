"""Pods that answer: the simulator behind every kwok pod, scraped by the real Prometheus.

The operator plans and applies a service; the real scheduler and kwok run its pods; the pod
runner serves the vLLM simulator on each pod's IP (a loopback address); Prometheus (3.x, built
from Go modules) discovers the pods through the Kubernetes API and scrapes them. Every request
in this module goes to 127.0.0.0/8: pod IPs and Prometheus on 127.0.0.1, nothing else.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gpumix.devcluster.cluster import DevCluster
from support import Kubectl, OperatorProcess, is_ready, llmservice, vllm_selector, wait_for

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
SCRAPE_SECONDS = 45.0  # discovery + a 5 s scrape interval, with room for a busy machine


def on_loopback(url: str) -> str:
    """The URL itself, after checking it names a 127.0.0.0/8 address (the network rule)."""
    host = urlsplit(url).hostname or ""
    assert ipaddress.ip_address(host) in LOOPBACK, f"refusing to send traffic to {url}"
    return url


def running_pods(kubectl: Kubectl, namespace: str, service: str) -> list[dict[str, Any]]:
    pods = kubectl.json("pods", "-n", namespace, "-l", vllm_selector(service))["items"]
    return [
        pod
        for pod in pods
        if pod["status"].get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")
    ]


def pod_url(pod: dict[str, Any], path: str) -> str:
    port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    return on_loopback(f"http://{pod['status']['podIP']}:{port}{path}")


def targets(prometheus: str, namespace: str) -> list[dict[str, Any]]:
    response = httpx.get(on_loopback(f"{prometheus}/api/v1/targets?state=active"), timeout=5)
    response.raise_for_status()
    active = response.json()["data"]["activeTargets"]
    return [t for t in active if t["labels"].get("namespace") == namespace]


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(
        on_loopback(f"{prometheus}/api/v1/query"), params={"query": promql}, timeout=5
    )
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def served(
    kubectl: Kubectl, operator: OperatorProcess, namespace: str
) -> tuple[str, list[dict[str, Any]]]:
    kubectl.apply(llmservice("chat", namespace))
    wait_for("LLMService chat Ready", lambda: is_ready(kubectl, namespace, "chat"))
    pods = wait_for("pods with IPs", lambda: running_pods(kubectl, namespace, "chat"))
    return namespace, pods


def test_requests_to_pod_ips_are_served_with_vllm_responses(
    served: tuple[str, list[dict[str, Any]]],
) -> None:
    _, pods = served
    for pod in pods:
        assert ipaddress.ip_address(pod["status"]["podIP"]) in LOOPBACK
        wait_for(
            f"{pod['metadata']['name']} healthy", lambda pod=pod: answers(pod_url(pod, "/health"))
        )
        models = httpx.get(pod_url(pod, "/v1/models"), timeout=5).json()
        assert "chat" in {model["id"] for model in models["data"]}

        completion = httpx.post(
            pod_url(pod, "/v1/completions"),
            json={"model": "chat", "prompt": "Say hello to the fleet. " * 8, "max_tokens": 8},
            timeout=30,
        )
        assert completion.status_code == 200, completion.text
        body = completion.json()
        assert body["usage"]["completion_tokens"] == 8
        assert body["choices"][0]["text"]

        chunks = []
        with httpx.stream(
            "POST",
            pod_url(pod, "/v1/chat/completions"),
            json={
                "model": "chat",
                "messages": [{"role": "user", "content": "Stream me four tokens."}],
                "max_tokens": 4,
                "stream": True,
            },
            timeout=30,
        ) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    chunks.append(line.removeprefix("data: "))
        assert chunks[-1] == "[DONE]"
        deltas = [json.loads(chunk)["choices"][0]["delta"] for chunk in chunks[:-1]]
        assert sum(1 for delta in deltas if delta.get("content")) == 4

        too_long = httpx.post(
            pod_url(pod, "/v1/completions"),
            json={"model": "chat", "prompt": "word " * 40_000, "max_tokens": 8},
            timeout=30,
        )
        assert too_long.status_code == 400
        assert "error" in too_long.json()


def test_prometheus_discovers_scrapes_and_forgets_every_gpumix_pod(
    served: tuple[str, list[dict[str, Any]]], dev_cluster: DevCluster, kubectl: Kubectl
) -> None:
    namespace, pods = served
    prometheus = dev_cluster.prometheus_url
    assert prometheus is not None
    names = {pod["metadata"]["name"] for pod in pods}

    def all_up() -> bool:
        up = {t["labels"]["pod"] for t in targets(prometheus, namespace) if t["health"] == "up"}
        return names <= up

    wait_for("every pod scraped", all_up, timeout=SCRAPE_SECONDS)
    for target in targets(prometheus, namespace):
        assert ipaddress.ip_address(urlsplit(target["scrapeUrl"]).hostname or "") in LOOPBACK
        labels = target["labels"]
        if labels["pod"] not in names:
            assert labels.get("component") == "router", labels  # the router is scraped too
            continue
        # gpumix's pod labels become target labels, so PromQL can group by configuration.
        for label in ("service", "deployment", "pool", "gpu_type", "tensor_parallel"):
            assert labels.get(label), f"target lacks {label}: {labels}"

    for pod in pods:
        httpx.post(
            pod_url(pod, "/v1/completions"),
            json={"model": "chat", "prompt": "count me", "max_tokens": 2},
            timeout=30,
        ).raise_for_status()
    promql = f'sum by (pod) (vllm:request_success_total{{namespace="{namespace}"}})'

    def counted() -> bool:
        seen = {row["metric"]["pod"]: float(row["value"][1]) for row in query(prometheus, promql)}
        return all(seen.get(name, 0) >= 1 for name in names)

    wait_for("requests counted in Prometheus", counted, timeout=SCRAPE_SECONDS)

    gone = sorted(names)[0]
    kubectl.run("delete", "pod", "-n", namespace, gone, "--wait=true")
    wait_for(
        f"{gone} dropped from the targets",
        lambda: gone not in {t["labels"]["pod"] for t in targets(prometheus, namespace)},
        timeout=SCRAPE_SECONDS,
    )


def test_a_deleted_service_s_pods_stop_answering(
    served: tuple[str, list[dict[str, Any]]], kubectl: Kubectl
) -> None:
    namespace, pods = served
    urls = [pod_url(pod, "/health") for pod in pods]
    wait_for("pods answering", lambda: all(answers(url) for url in urls))
    kubectl.run("delete", "llmsvc", "chat", "-n", namespace)
    wait_for("no pods left", lambda: not running_pods(kubectl, namespace, "chat"))
    wait_for("pod IPs silent", lambda: not any(answers(url) for url in urls), timeout=30)
