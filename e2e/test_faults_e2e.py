"""Control-plane faults on the real dev cluster: the kube-apiserver and etcd go away and come
back, and the operator converges on a spec change made after the fault, while the service keeps
a Ready pod whenever the API server can be asked."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from gpumix.devcluster.cluster import DevCluster
from support import (
    PLAN_SECONDS,
    Kubectl,
    OperatorProcess,
    is_ready,
    llmservice,
    ready_pods_by_gpu,
    wait_for,
)

# The API server stays away longer than kwok's 40 s node lease, so the node-lifecycle
# controller marks the nodes and their pods NotReady, as it would on a real cluster.
FAULTS = {"kube-apiserver": 45.0, "etcd": 20.0}


class ReadyPodSampler:
    """Counts the service's Ready vLLM pods every half second in a thread; API errors (the
    server is down) are counted apart, since nobody can see a pod then."""

    def __init__(self, kubectl: Kubectl, namespace: str, service: str):
        self.kubectl, self.namespace, self.service = kubectl, namespace, service
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
                ready = sum(ready_pods_by_gpu(self.kubectl, self.namespace, self.service).values())
            except (AssertionError, ValueError):  # kubectl failed: the API server is down
                self.unreachable += 1
                continue
            self.samples.append((time.monotonic() - started, ready))


def converged(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    """Ready for the latest generation, with every planned replica Ready."""
    service = is_ready(kubectl, namespace, name)
    if service is None:
        return None
    replicas = sum(entry["replicas"] for entry in service["status"]["plan"])
    ready = sum(ready_pods_by_gpu(kubectl, namespace, name).values())
    return service if ready >= replicas else None


@pytest.mark.parametrize("component", FAULTS)
def test_a_spec_change_after_a_control_plane_restart_converges(
    dev_cluster: DevCluster,
    kubectl: Kubectl,
    operator: OperatorProcess,
    namespace: str,
    component: str,
) -> None:
    kubectl.apply(llmservice("resilient", namespace))
    before = wait_for("resilient Ready", lambda: is_ready(kubectl, namespace, "resilient"))
    replicas_before = sum(entry["replicas"] for entry in before["status"]["plan"])

    with ReadyPodSampler(kubectl, namespace, "resilient") as sampler:
        dev_cluster.restart(component, down_seconds=FAULTS[component])
        restarted = time.monotonic()
        # Four times the demand: the plan must buy more replicas, so convergence is visible.
        changed = llmservice("resilient", namespace)
        changed["spec"]["workload"]["requestsPerSecond"] = "16"
        wait_for(
            "the API server to take the change",
            lambda: "configured" in kubectl.apply(changed, check=False),
        )
        after = wait_for(
            f"resilient to converge on the new demand after a {component} restart",
            lambda: converged(kubectl, namespace, "resilient"),
            timeout=PLAN_SECONDS,
        )
        converged_seconds = time.monotonic() - restarted
    replicas_after = sum(entry["replicas"] for entry in after["status"]["plan"])
    lowest = min((ready for _, ready in sampler.samples), default=0)
    print(
        f"\n{component} down {FAULTS[component]:.0f}s; converged {converged_seconds:.1f}s after "
        f"it was back; replicas {replicas_before} -> {replicas_after}; fewest Ready pods seen "
        f"{lowest} over {len(sampler.samples)} samples ({sampler.unreachable} unreachable)"
    )
    assert replicas_after > replicas_before, "the new demand did not buy more replicas"
    assert sampler.samples, "the API server never answered during the test"
    assert lowest >= 1, f"the service had no Ready pod after the restart: {sampler.samples}"
    kubectl.run("delete", "llmsvc", "resilient", "-n", namespace)
