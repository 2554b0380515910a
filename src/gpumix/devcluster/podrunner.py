"""The pod runner: makes the dev cluster's kwok pods answer on their pod IPs.

kwok plays the kubelets, so a pod it runs is only a row in etcd. This process plays the
container runtime for gpumix's own pods: it watches pods labelled
``app.kubernetes.io/part-of=gpumix`` and, for each Running pod with an IP, serves on
``podIP:containerPort`` what that pod's container would run:

- ``app.kubernetes.io/name=vllm``: the vLLM simulator (:mod:`gpumix.sim`), configured from the
  container's own vLLM arguments and the pod's GPU labels (GPU type, tensor-parallel size,
  weight format), so each replica runs at the speed the performance model gives its hardware;
  A node labelled ``simulator.gpumix.io/slowdown-factor: "2"`` runs its simulators that many
  times slower than the model (a GPU that under-delivers, which calibration must notice);
- ``app.kubernetes.io/name=gpumix-router``: the real ``gpumix router``, bound to the pod IP, so
  a request to a router pod goes router → simulator pods as it would in a cluster.

Pod IPs are loopback addresses (every simulated node has a podCIDR in 127.64.0.0/10), so binding
to them needs no privileges and all traffic stays on this machine. Servers are keyed by pod UID,
not IP: kwok hands a freed IP to the next pod at once, and a new pod must never be answered by
its predecessor's server. A pod that is deleted (or stops Running) stops answering; a bind that
fails because the previous owner of the IP is still being stopped is retried.

Started by ``gpumix dev-cluster up`` as ``python -m gpumix.devcluster.podrunner --kubeconfig K``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("gpumix.podrunner")

PART_OF_SELECTOR = "app.kubernetes.io/part-of=gpumix"
NAME_LABEL = "app.kubernetes.io/name"
SERVICE_LABEL = "gpumix.io/service"
RETRY_SECONDS = 1.0
RELIST_SECONDS = 60.0
WATCH_TIMEOUT_SECONDS = 30


class Server(Protocol):
    async def stop(self) -> None: ...


# (pod, container, host, port) -> a started server
Starter = Callable[[dict[str, Any], dict[str, Any], str, int], Awaitable[Server]]


@dataclass(frozen=True)
class Workload:
    """What one pod should be serving: the identity a running server is compared against."""

    uid: str
    namespace: str
    name: str
    kind: str  # the pod's app.kubernetes.io/name
    ip: str
    port: int
    container: dict[str, Any]
    pod: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.uid, self.ip, self.port)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name} on {self.ip}:{self.port}"


def container_port(container: dict[str, Any]) -> int | None:
    """The container's first TCP port (the one its Service and probes name ``http``)."""
    ports = container.get("ports") or []
    named = [p for p in ports if p.get("name") == "http"] or ports
    for port in named:
        if port.get("protocol", "TCP") == "TCP" and port.get("containerPort"):
            return int(port["containerPort"])
    return None


def desired_workload(pod: dict[str, Any], kinds: set[str]) -> Workload | None:
    """The server a pod (as a JSON-like dict) should have now, or None.

    Only Running pods with an IP, not being deleted, of a kind we can serve."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    kind = (metadata.get("labels") or {}).get(NAME_LABEL, "")
    if kind not in kinds or metadata.get("deletionTimestamp"):
        return None
    ip = status.get("podIP")
    if status.get("phase") != "Running" or not ip:
        return None
    containers = (pod.get("spec") or {}).get("containers") or []
    for container in containers:
        port = container_port(container)
        if port is not None:
            return Workload(
                uid=metadata["uid"],
                namespace=metadata.get("namespace", ""),
                name=metadata.get("name", ""),
                kind=kind,
                ip=ip,
                port=port,
                container=container,
                pod=pod,
            )
    return None


class PodRunner:
    """Keeps one server per servable pod; ``observe``/``forget`` are called with pod events."""

    def __init__(self, starters: dict[str, Starter]):
        self.starters = starters
        self.running: dict[str, tuple[Workload, Server]] = {}  # by pod UID
        self.desired: dict[str, Workload] = {}
        # Pods whose server cannot start for a reason a retry will not fix (bad arguments): not
        # retried until the pod changes, so one broken pod does not flood the log.
        self.broken: dict[str, tuple[str, str, int]] = {}
        self._lock = asyncio.Lock()
        self._retry: asyncio.Task[None] | None = None

    async def observe(self, pod: dict[str, Any]) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if not uid:
            return
        workload = desired_workload(pod, set(self.starters))
        if workload is None:
            self.desired.pop(uid, None)
        else:
            self.desired[uid] = workload
        await self.converge()

    async def forget(self, uid: str) -> None:
        self.desired.pop(uid, None)
        await self.converge()

    async def replace_all(self, pods: list[dict[str, Any]]) -> None:
        """A full list (after a relist): anything not in it is gone."""
        kinds = set(self.starters)
        self.desired = {}
        for pod in pods:
            workload = desired_workload(pod, kinds)
            if workload is not None:
                self.desired[workload.uid] = workload
        await self.converge()

    async def converge(self) -> None:
        async with self._lock:
            self.broken = {uid: key for uid, key in self.broken.items() if uid in self.desired}
            # Stops first: a new pod may have been given the IP an old one is releasing.
            for uid, (workload, server) in list(self.running.items()):
                wanted = self.desired.get(uid)
                if wanted is None or wanted.key != workload.key:
                    del self.running[uid]
                    log.info("stopping %s", workload)
                    with contextlib.suppress(Exception):
                        await server.stop()
            failed = False
            for uid, workload in self.desired.items():
                if uid in self.running or self.broken.get(uid) == workload.key:
                    continue
                try:
                    server = await self.starters[workload.kind](
                        workload.pod, workload.container, workload.ip, workload.port
                    )
                except OSError as error:
                    log.warning("cannot serve %s yet (%s); retrying", workload, error)
                    failed = True
                    continue
                except Exception:
                    log.exception("cannot serve %s", workload)
                    self.broken[uid] = workload.key
                    continue
                self.running[uid] = (workload, server)
                log.info("serving %s", workload)
        if failed and (self._retry is None or self._retry.done()):
            self._retry = asyncio.create_task(self._retry_later())

    async def _retry_later(self) -> None:
        await asyncio.sleep(RETRY_SECONDS)
        await self.converge()

    async def stop_all(self) -> None:
        self.desired = {}
        await self.converge()


# ----- starters ------------------------------------------------------------------------------


# A node label of the dev cluster only: the simulators on this node run this many times slower
# than gpumix.perf predicts (a GPU that under-delivers, for the calibration tests).
SLOWDOWN_LABEL = "simulator.gpumix.io/slowdown-factor"
NodeLabels = Callable[[str], Awaitable[dict[str, str]]]


def slowdown_of(node_labels: dict[str, str]) -> float | None:
    raw = node_labels.get(SLOWDOWN_LABEL)
    if raw is None:
        return None
    try:
        factor = float(raw)
    except ValueError:
        factor = 0.0
    if factor <= 0:
        log.warning("ignoring %s=%r: not a positive number", SLOWDOWN_LABEL, raw)
        return None
    return factor


def vllm_starter(node_labels: NodeLabels | None = None) -> Starter:
    """The vLLM simulator; with ``node_labels``, slowed down as its node's label says."""

    async def start(pod: dict[str, Any], container: dict[str, Any], host: str, port: int) -> Server:
        slowdown = None
        node = (pod.get("spec") or {}).get("nodeName")
        if node_labels is not None and node:
            try:
                slowdown = slowdown_of(await node_labels(node))
            except Exception as error:  # the API is away: serve at the model's speed
                log.warning("cannot read node %s (%s)", node, str(error).splitlines()[0])
        return await start_vllm_simulator(pod, container, host, port, slowdown=slowdown)

    return start


async def start_vllm_simulator(
    pod: dict[str, Any],
    container: dict[str, Any],
    host: str,
    port: int,
    *,
    slowdown: float | None = None,
) -> Server:
    """The vLLM simulator, with the container's vLLM flags and the pod's hardware labels."""
    import dataclasses

    from gpumix.sim import parse_vllm_args, start_simulator

    labels = (pod.get("metadata") or {}).get("labels") or {}
    settings = parse_vllm_args([str(arg) for arg in container.get("args") or []])
    overrides: dict[str, Any] = {}
    if "gpumix.io/gpu-type" in labels:
        overrides["gpu"] = labels["gpumix.io/gpu-type"]
    if "gpumix.io/tensor-parallel" in labels:
        overrides["tensor_parallel_size"] = int(labels["gpumix.io/tensor-parallel"])
    if "gpumix.io/weight-format" in labels:
        overrides["weight_format"] = labels["gpumix.io/weight-format"]
    if slowdown is not None:
        overrides["slowdown_factor"] = slowdown
    settings = dataclasses.replace(settings, **overrides)
    server: Server = await start_simulator(settings, host, port)
    return server


def flag_values(args: list[str]) -> dict[str, str]:
    """``--flag value`` pairs of a command line (the last one wins, as with argparse)."""
    return {
        flag: value
        for flag, value in itertools.pairwise(args)
        if flag.startswith("--") and not value.startswith("--")
    }


def router_starter(kubeconfig: str) -> Starter:
    """The real ``gpumix router`` for a router pod, reading the API with `kubeconfig` (the dev
    cluster's admin identity: the pod runner plays the kubelet, which would mount the pod's
    ServiceAccount token; the Role that token carries is checked by the e2e tests instead)."""

    async def start_router(
        pod: dict[str, Any], container: dict[str, Any], host: str, port: int
    ) -> Server:
        from gpumix.router import RouterSettings, serve_router

        flags = flag_values([str(arg) for arg in container.get("args") or []])
        metadata = pod.get("metadata") or {}
        settings = RouterSettings(
            namespace=flags.get("--namespace", str(metadata.get("namespace", ""))),
            service=flags.get("--service", (metadata.get("labels") or {}).get(SERVICE_LABEL, "")),
            kubeconfig=kubeconfig,
        )
        server: Server = await serve_router(settings, host=host, port=port)
        return server

    return start_router


def node_label_reader(kubeconfig: str) -> NodeLabels:
    """Reads a node's labels through the API (blocking client, in a thread)."""
    core: Any = None

    def read(name: str) -> dict[str, str]:
        nonlocal core
        from kubernetes import client, config

        if core is None:
            api_client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            core = client.CoreV1Api(api_client)
        return dict(core.read_node(name).metadata.labels or {})

    async def labels(name: str) -> dict[str, str]:
        return await asyncio.to_thread(read, name)

    return labels


def starters(kubeconfig: str) -> dict[str, Starter]:
    """What each kind of gpumix pod runs, by its app.kubernetes.io/name."""
    return {
        "vllm": vllm_starter(node_label_reader(kubeconfig)),
        "gpumix-router": router_starter(kubeconfig),
    }


# ----- the watch -----------------------------------------------------------------------------


def _watch_pods(
    kubeconfig: str,
    loop: asyncio.AbstractEventLoop,
    runner: PodRunner,
    stopping: threading.Event,
) -> None:
    """List then watch gpumix's pods (blocking client, in a thread), feeding the runner."""
    from kubernetes import client, config, watch

    api_client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    core = client.CoreV1Api(api_client)

    def submit(coroutine: Awaitable[None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, loop).result()  # type: ignore[arg-type]

    while not stopping.is_set():
        try:
            listed = core.list_pod_for_all_namespaces(label_selector=PART_OF_SELECTOR)
            pods = [api_client.sanitize_for_serialization(pod) for pod in listed.items]
            submit(runner.replace_all(pods))
            version = listed.metadata.resource_version if listed.metadata else None
            relist_at = loop.time() + RELIST_SECONDS
            while not stopping.is_set() and loop.time() < relist_at:
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    core.list_pod_for_all_namespaces,
                    label_selector=PART_OF_SELECTOR,
                    resource_version=version,
                    timeout_seconds=WATCH_TIMEOUT_SECONDS,
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    raw = event["raw_object"]
                    version = (raw.get("metadata") or {}).get("resourceVersion", version)
                    if event["type"] == "DELETED":
                        submit(runner.forget(raw["metadata"]["uid"]))
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        submit(runner.observe(raw))
                    if stopping.is_set():
                        break
        except Exception as error:  # an API restart, an expired resourceVersion (410): relist
            if stopping.is_set():
                return
            log.warning("pod watch interrupted (%s); listing again", str(error).splitlines()[0])
            stopping.wait(RETRY_SECONDS)


async def run(kubeconfig: str) -> None:
    runner = PodRunner(starters(kubeconfig))
    loop = asyncio.get_running_loop()
    stopping = threading.Event()
    done = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    watcher = threading.Thread(
        target=_watch_pods, args=(kubeconfig, loop, runner, stopping), daemon=True
    )
    watcher.start()
    log.info("pod runner watching pods (%s)", PART_OF_SELECTOR)
    await done.wait()
    stopping.set()
    await runner.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpumix.devcluster.podrunner")
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    asyncio.run(run(args.kubeconfig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
