"""Helpers shared by the end-to-end tests: kubectl, waiting, manifests, the operator process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gpumix.devcluster.processes import free_port

REPO = Path(__file__).resolve().parents[1]
PLAN_SECONDS = 90.0  # debounce + solve + apply + kwok readiness, with headroom for a busy CI box


# ----- helpers ----------------------------------------------------------------------------------


def wait_for(what: str, check: Callable[[], Any], timeout: float = PLAN_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class Kubectl:
    def __init__(self, kubeconfig: Path):
        self.kubeconfig = kubeconfig

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout + result.stderr

    def apply(self, manifest: dict[str, Any], check: bool = True) -> str:
        return self.run("apply", "-f", "-", stdin=yaml.safe_dump(manifest), check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self.run("get", *args, "-o", "json"))


def llmservice(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "maxModelLen": 8192},
        "workload": {
            "requestsPerSecond": "4",
            "headroomPercent": 0,
            "classes": [
                {"name": "chat", "inputTokens": 512, "outputTokens": 256, "share": 70},
                {"name": "rag", "inputTokens": 2048, "outputTokens": 256, "share": 30},
            ],
        },
        "slo": {"ttftMilliseconds": 2000, "tpotMilliseconds": 100},
    }
    base.update(spec)
    return {
        "apiVersion": "gpumix.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": base,
    }


def condition(service: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in service.get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return {}


def vllm_selector(service: str) -> str:
    """The service's vLLM pods and Deployments (its router's carry app.kubernetes.io/name=
    gpumix-router)."""
    return f"gpumix.io/service={service},app.kubernetes.io/name=vllm"


def managed_deployments(kubectl: Kubectl, namespace: str, service: str) -> list[dict[str, Any]]:
    """The service's vLLM Deployments: one per configuration of its plan."""
    listing = kubectl.json("deployments", "-n", namespace, "-l", vllm_selector(service))
    return list(listing["items"])


def ready_pods_by_gpu(kubectl: Kubectl, namespace: str, service: str) -> dict[str, int]:
    """GPU product of the node each Ready pod of the service runs on -> pod count."""
    pods = kubectl.json("pods", "-n", namespace, "-l", vllm_selector(service))["items"]
    nodes = {n["metadata"]["name"]: n for n in kubectl.json("nodes")["items"]}
    counts: dict[str, int] = {}
    for pod in pods:
        ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
        node_name = pod["spec"].get("nodeName")
        if ready and node_name in nodes and not pod["metadata"].get("deletionTimestamp"):
            product = nodes[node_name]["metadata"]["labels"]["nvidia.com/gpu.product"]
            counts[product] = counts.get(product, 0) + 1
    return counts


def gpu_types_planned(service: dict[str, Any]) -> set[str]:
    return {entry["gpuType"] for entry in service.get("status", {}).get("plan", [])}


def is_ready(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    service = kubectl.json("llmsvc", name, "-n", namespace)
    generation = service["metadata"]["generation"]
    ready = condition(service, "Ready")
    if ready.get("status") == "True" and service["status"].get("observedGeneration") == generation:
        return dict(service)
    return None


class OperatorProcess:
    """`gpumix operator` as a child process with its log in a file."""

    def __init__(self, kubeconfig: Path, log_path: Path, prometheus_url: str | None = None):
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        # The dev cluster's Prometheus, read every 5 s (one scrape interval) for the
        # autoscaling services. Calibration is off but in its own test: on this 2-core machine
        # every simulator runs in one Python process with the routers, and under load it is
        # slower than the model it simulates, which calibration would (rightly) act on in the
        # middle of tests that check a plan's shares.
        self.config_path = log_path.with_name("operator-config.yaml")
        self.prometheus_url = prometheus_url
        self.write_config(calibration=False)
        self.metrics_port = free_port()
        # kopf reads port 0 as "no port given" and binds 80, which two runs on one machine
        # would share; a probed free port keeps every operator's health endpoint its own.
        self.liveness_port = free_port()
        # The plan API is on in every e2e run: it is read-only, so it must change nothing.
        self.api_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self, *, calibration: bool) -> None:
        config: dict[str, Any] = {"calibration": {"enabled": calibration}}
        if self.prometheus_url:
            config["prometheus"] = {"url": self.prometheus_url, "intervalSeconds": 5}
        self.config_path.write_text(json.dumps(config))

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gpumix.cli",
                    "operator",
                    "--config",
                    str(self.config_path),
                    "--liveness",
                    f"http://127.0.0.1:{self.liveness_port}/healthz",
                    "--planner-interval",
                    "20",
                    "--migration-timeout",
                    "60",
                    "--metrics-port",
                    str(self.metrics_port),
                    "--api-port",
                    str(self.api_port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # A bad flag or a crash at startup fails the suite at once, not after every test's wait.
        time.sleep(3)
        if self.process.poll() is not None:
            raise RuntimeError(f"gpumix operator exited at startup:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers run, as when a node dies or the OOM killer strikes."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class ReadyPodSampler:
    """Counts the service's Ready vLLM pods every half second in a thread (``count`` narrows
    which ones); API errors (the server is down) are counted apart, since nobody can see a
    pod then."""

    def __init__(
        self,
        kubectl: Kubectl,
        namespace: str,
        service: str,
        count: Callable[[Kubectl, str, str], int] | None = None,
    ):
        self.kubectl, self.namespace, self.service = kubectl, namespace, service
        self.count = count or (lambda k, ns, name: sum(ready_pods_by_gpu(k, ns, name).values()))
        self.samples: list[tuple[float, int]] = []
        self.unreachable = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReadyPodSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=70)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(0.5):
            try:
                ready = self.count(self.kubectl, self.namespace, self.service)
            except (AssertionError, ValueError):  # kubectl failed: the API server is down
                self.unreachable += 1
                continue
            self.samples.append((time.monotonic() - started, ready))
