"""A real Kubernetes control plane on 127.0.0.1 with simulated GPU nodes.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the upstream binaries; kwok
plays the kubelets of the fleet file's nodes (heartbeats, pod readiness, pod deletion). Only
kwok is a simulator, and only of nodes: scheduling, garbage collection, RBAC and admission are
the real thing.

Python API used by the e2e suite::

    cluster = DevCluster(state_dir, load_fleet(path))
    kubeconfig = cluster.up()          # reuses a running cluster of the same state dir
    cluster.add_nodes("l4-spot", 2)    # new nodes appear (scale-up)
    cluster.delete_pool_nodes("l4-spot")  # spot capacity lost
    cluster.down()
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gpumix.devcluster import DevClusterError, prometheus
from gpumix.devcluster import certs as certs_module
from gpumix.devcluster.binaries import CLUSTER_COMPONENTS, Binaries
from gpumix.devcluster.fleet import (
    POOL_LABEL,
    SYSTEM_NODES,
    SYSTEM_POOL,
    Fleet,
    NodePool,
    free_pod_cidrs,
    load_fleet,
    node_manifest,
    system_node_manifest,
)
from gpumix.devcluster.processes import ProcessTable, free_port

# Start order; `down` stops in reverse so nothing loses its API server or store mid-shutdown.
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "prometheus",
    "pod-runner",
)
# Pods on nodes without a podCIDR (none of the fleet's) still get loopback IPs, never kwok's
# default 10.0.0.0/24; outside fleet.POD_NETWORK so the two never hand out the same address.
KWOK_FALLBACK_POD_CIDR = "127.63.0.1/16"
APISERVER_READY_SECONDS = 120.0
NODES_READY_SECONDS = 120.0
CLUSTER_NAME = "gpumix-dev"


def default_state_dir() -> Path:
    return Path.home() / ".cache" / "gpumix" / "dev-cluster"


def default_fleet_path() -> Path:
    """The packaged copy of examples/fleet-sim.yaml."""
    return Path(str(resources.files("gpumix.devcluster") / "fleet-sim.yaml"))


def kwok_stages_path() -> Path:
    """kwok's default node and pod stages (the binary has none built in)."""
    return Path(str(resources.files("gpumix.devcluster") / "kwok-stages.yaml"))


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    prometheus: int

    @classmethod
    def allocate(cls) -> Ports:
        ports: list[int] = []
        while len(ports) < 7:
            port = free_port()
            if port not in ports:
                ports.append(port)
        return cls(*ports)


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    pid: int | None
    healthy: bool
    detail: str


def _kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    def encoded(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": encoded(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": encoded(cert),
                    "client-key-data": encoded(key),
                },
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
    }


class DevCluster:
    def __init__(
        self,
        state_dir: Path | None = None,
        fleet: Fleet | None = None,
        *,
        binaries: Binaries | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.state_dir = (state_dir or default_state_dir()).expanduser().resolve()
        self._fleet = fleet
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.binaries = binaries or Binaries(log=self.log)
        self.processes = ProcessTable(self.state_dir)
        self.certs = certs_module.CertPaths(self.state_dir / "pki")

    # ----- paths and state -------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def fleet(self) -> Fleet:
        if self._fleet is None:
            self._fleet = load_fleet(default_fleet_path())
        return self._fleet

    def _ports(self) -> Ports | None:
        try:
            return Ports(**json.loads(self._state_file.read_text())["ports"])
        except FileNotFoundError:
            return None
        except TypeError:  # a state file of an older gpumix: restart the cluster whole
            return None

    @property
    def prometheus_url(self) -> str | None:
        ports = self._ports()
        return f"http://127.0.0.1:{ports.prometheus}" if ports is not None else None

    # ----- lifecycle ---------------------------------------------------------------------------

    def up(self) -> Path:
        """Start the cluster (or reuse a running one), create the fleet's nodes, wait for Ready."""
        ports = self._ports()
        if ports is not None and self._all_running() and self._apiserver_ready(ports):
            self.log(f"reusing the running dev cluster in {self.state_dir}")
        else:
            started = time.monotonic()
            # A partly running cluster (a crashed component, a reboot) is restarted whole: its
            # ports and data would not survive a partial restart consistently.
            self._stop_all()
            paths = self.binaries.ensure(CLUSTER_COMPONENTS)
            ports = Ports.allocate()
            try:
                self._start(ports, {name: str(path) for name, path in paths.items()})
            except BaseException:
                # Leave nothing half-started behind; the logs stay for the post-mortem.
                self._stop_all()
                raise
            self.log(f"control plane ready in {time.monotonic() - started:.1f}s")
        self.ensure_nodes()
        self.wait_nodes_ready()
        self._wait_default_service_account()
        return self.kubeconfig

    def down(self) -> list[str]:
        """Stop the processes this state dir started; returns the names that were running."""
        stopped = self._stop_all()
        self._state_file.unlink(missing_ok=True)
        return stopped

    def _all_running(self) -> bool:
        return all(self.processes.running(name) is not None for name in COMPONENTS)

    def _stop_all(self) -> list[str]:
        return [name for name in reversed(COMPONENTS) if self.processes.stop(name)]

    def _start(self, ports: Ports, binaries: dict[str, str]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki = certs_module.ensure_certs(self.certs.directory)
        server = f"https://127.0.0.1:{ports.apiserver}"
        kubeconfigs = {}
        for identity in (
            certs_module.ADMIN,
            certs_module.CONTROLLER_MANAGER,
            certs_module.SCHEDULER,
        ):
            path = self.state_dir / f"{identity.file_stem}.kubeconfig"
            config = _kubeconfig(
                server,
                pki.ca_cert,
                pki.client_cert(identity),
                pki.client_key(identity),
                identity.common_name,
            )
            path.write_text(yaml.safe_dump(config))
            path.chmod(0o600)
            kubeconfigs[identity.file_stem] = path
        shutil.copyfile(kubeconfigs["admin"], self.kubeconfig)
        self.kubeconfig.chmod(0o600)
        self._state_file.write_text(json.dumps({"ports": asdict(ports)}, indent=2))

        # Each start is a fresh cluster: the old data belongs to a cluster whose nodes, leases
        # and service-account tokens no longer match anything that is running.
        etcd_data = self.state_dir / "etcd-data"
        shutil.rmtree(etcd_data, ignore_errors=True)
        shutil.rmtree(self.state_dir / "prometheus-data", ignore_errors=True)
        argvs = component_argvs(
            binaries, ports, pki, self.state_dir, kubeconfigs, etcd_data=etcd_data
        )
        argvs["prometheus"] = self._prometheus_argv(binaries["prometheus"], ports)
        argvs["pod-runner"] = [
            sys.executable,
            "-m",
            "gpumix.devcluster.podrunner",
            f"--kubeconfig={self.kubeconfig}",
        ]

        self.log(f"starting etcd on 127.0.0.1:{ports.etcd_client}")
        self.processes.start("etcd", argvs["etcd"])
        self._wait("etcd", lambda: self._http_ok(f"http://127.0.0.1:{ports.etcd_client}/health"))
        self.log(f"starting kube-apiserver on 127.0.0.1:{ports.apiserver}")
        self.processes.start("kube-apiserver", argvs["kube-apiserver"])
        self._wait("kube-apiserver", lambda: self._apiserver_ready(ports))
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            self.log(f"starting {name}")
            self.processes.start(name, argvs[name])
        self._wait(
            "kube-controller-manager",
            lambda: self._https_ok(ports.controller_manager, "/healthz"),
        )
        self._wait("kube-scheduler", lambda: self._https_ok(ports.scheduler, "/healthz"))
        self.log(f"starting prometheus on 127.0.0.1:{ports.prometheus}")
        self.processes.start("prometheus", argvs["prometheus"])
        self.log("starting the pod runner (simulators behind gpumix's pods)")
        self.processes.start("pod-runner", argvs["pod-runner"])
        self._wait(
            "prometheus", lambda: self._http_ok(f"http://127.0.0.1:{ports.prometheus}/-/ready")
        )

    def stop_prometheus(self) -> bool:
        """Stop Prometheus alone (a metrics outage); ``start_prometheus`` brings it back."""
        return self.processes.stop("prometheus")

    def start_prometheus(self) -> None:
        ports = self._ports()
        if ports is None:
            raise DevClusterError("the dev cluster is not running")
        if self.processes.running("prometheus") is None:
            binary = str(self.binaries.path("prometheus"))
            self.processes.start("prometheus", self._prometheus_argv(binary, ports))
        self._wait(
            "prometheus", lambda: self._http_ok(f"http://127.0.0.1:{ports.prometheus}/-/ready")
        )

    def restart(self, name: str, *, down_seconds: float = 0.0, kill: bool = False) -> None:
        """Stop one component and start it again with the same command line and data (a
        fault for tests: an etcd or kube-apiserver restart), then wait until it is healthy.
        ``kill`` sends SIGKILL at once instead of a graceful stop.

        An etcd or API-server outage also takes the controller manager and the scheduler down
        until it is over. That is what a kubeadm control plane does: they lose their leader
        lease within seconds, exit, and the kubelet starts them again once the API answers.
        Here they run without leader election and nothing restarts them; left running, they
        would sit in client-go's back-off afterwards (a ReplicaSet appeared 37-49 s after its
        Deployment when measured), and the node-lifecycle controller would judge the nodes by
        leases that could not be renewed during the outage and mark every pod NotReady.
        """
        ports = self._ports()
        record = self.processes.record(name)
        if ports is None or record is None:
            raise DevClusterError(f"the dev cluster is not running (no record of {name})")
        dependents = (
            ("kube-controller-manager", "kube-scheduler")
            if name in ("etcd", "kube-apiserver")
            else ()
        )
        argvs: dict[str, list[str]] = {}
        for dependent in dependents:
            dependent_record = self.processes.record(dependent)
            if dependent_record is not None:
                argvs[dependent] = dependent_record.argv
                self.processes.stop(dependent)
        if kill:
            running = self.processes.running(name)
            if running is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(running.pid, signal.SIGKILL)
        self.processes.stop(name)
        time.sleep(down_seconds)
        checks = self._health_checks(ports)
        self.log(f"restarting {name}")
        self.processes.start(name, record.argv)
        self._wait(name, checks.get(name, lambda: True))
        if dependents:
            self._wait("kube-apiserver", checks["kube-apiserver"])  # after etcd, it recovers too
        for dependent in dependents:
            if dependent in argvs:
                self.log(f"restarting {dependent}")
                self.processes.start(dependent, argvs[dependent])
                self._wait(dependent, checks[dependent])

    def _health_checks(self, ports: Ports) -> dict[str, Callable[[], bool]]:
        return {
            "etcd": lambda: self._http_ok(f"http://127.0.0.1:{ports.etcd_client}/health"),
            "kube-apiserver": lambda: self._apiserver_ready(ports),
            "kube-controller-manager": lambda: self._https_ok(ports.controller_manager, "/healthz"),
            "kube-scheduler": lambda: self._https_ok(ports.scheduler, "/healthz"),
            "kwok": lambda: self._http_ok(f"http://127.0.0.1:{ports.kwok}/healthz"),
            "prometheus": lambda: self._http_ok(f"http://127.0.0.1:{ports.prometheus}/-/ready"),
            "pod-runner": lambda: True,  # no port of its own: running is healthy
        }

    def _prometheus_argv(self, binary: str, ports: Ports) -> list[str]:
        config_file = self.state_dir / "prometheus.yml"
        config_file.write_text(prometheus.config_text(self.kubeconfig))
        return prometheus.argv(
            binary, config_file, self.state_dir / "prometheus-data", ports.prometheus
        )

    def _wait(self, name: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            reason = self.processes.exited_early(name)
            if reason is not None:
                raise DevClusterError(reason)
            time.sleep(0.25)
        log = self.processes.log_path(name)
        raise DevClusterError(f"{name} not healthy after {timeout:.0f}s (log: {log})")

    # ----- health ------------------------------------------------------------------------------

    @staticmethod
    def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            # Not listening yet, or unhealthy (HTTPError is a URLError): the caller retries.
            return False

    def _https_ok(self, port: int, path: str) -> bool:
        # The controller manager and scheduler serve with self-signed certificates made at
        # start-up; this is a loopback liveness probe, not an authenticated call.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return self._http_ok(f"https://127.0.0.1:{port}{path}", context)

    def _admin_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        admin = certs_module.ADMIN
        context.load_cert_chain(self.certs.client_cert(admin), self.certs.client_key(admin))
        return context

    def _apiserver_ready(self, ports: Ports) -> bool:
        if not self.certs.ca_cert.exists():
            return False
        return self._http_ok(f"https://127.0.0.1:{ports.apiserver}/readyz", self._admin_context())

    def health(self) -> list[ComponentHealth]:
        ports = self._ports()
        checks = self._health_checks(ports) if ports is not None else {}
        report = []
        for name in COMPONENTS:
            record = self.processes.running(name)
            if record is None:
                report.append(ComponentHealth(name, None, False, "not running"))
                continue
            healthy = checks[name]() if name in checks else False
            detail = "healthy" if healthy else f"unhealthy (log: {self.processes.log_path(name)})"
            report.append(ComponentHealth(name, record.pid, healthy, detail))
        return report

    # ----- nodes -------------------------------------------------------------------------------

    def core_api(self) -> Any:
        """A CoreV1Api for the admin user (kubernetes client imported here: it is slow)."""
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]
        return client.CoreV1Api(api_client)

    def _existing_indices(self, core: Any, pool: NodePool) -> set[int]:
        nodes = core.list_node(label_selector=f"{POOL_LABEL}={pool.name}").items
        prefix = f"{pool.name}-"
        return {
            int(node.metadata.name[len(prefix) :])
            for node in nodes
            if node.metadata.name.startswith(prefix) and node.metadata.name[len(prefix) :].isdigit()
        }

    @staticmethod
    def _free_pod_cidrs(core: Any) -> Iterator[str]:
        # kwok reuses a deleted node's pod IPs at once; a new node takes a /24 no live node has.
        used = [node.spec.pod_cidr for node in core.list_node().items if node.spec.pod_cidr]
        return iter(free_pod_cidrs(used))

    def ensure_nodes(self) -> None:
        """Create the fleet's nodes (and the CPU nodes beside them) that do not exist yet
        (never deletes any)."""
        core = self.core_api()
        cidrs = self._free_pod_cidrs(core)
        system = {node.metadata.name for node in core.list_node(
            label_selector=f"{POOL_LABEL}={SYSTEM_POOL}").items}  # fmt: skip
        for index in range(SYSTEM_NODES):
            if f"{SYSTEM_POOL}-{index}" not in system:
                core.create_node(system_node_manifest(index, next(cidrs)))
        for pool in self.fleet.pools:
            existing = self._existing_indices(core, pool)
            for index in range(pool.nodes):
                if index not in existing:
                    core.create_node(node_manifest(pool, index, next(cidrs)))

    def add_nodes(self, pool_name: str, count: int) -> list[str]:
        """Create ``count`` more nodes of a fleet pool; returns their names."""
        pool = self.fleet.pool(pool_name)
        core = self.core_api()
        existing = self._existing_indices(core, pool)
        cidrs = self._free_pod_cidrs(core)
        names: list[str] = []
        index = 0
        while len(names) < count:
            if index not in existing:
                manifest = node_manifest(pool, index, next(cidrs))
                core.create_node(manifest)
                names.append(manifest["metadata"]["name"])
            index += 1
        return names

    def delete_pool_nodes(self, pool_name: str) -> list[str]:
        """Delete every node of a pool (simulated spot loss); returns their names."""
        pool = self.fleet.pool(pool_name)
        core = self.core_api()
        nodes = core.list_node(label_selector=f"{POOL_LABEL}={pool.name}").items
        for node in nodes:
            core.delete_node(node.metadata.name)
        return [node.metadata.name for node in nodes]

    def nodes(self) -> list[dict[str, str]]:
        rows = []
        for node in self.core_api().list_node(label_selector=POOL_LABEL).items:
            labels = node.metadata.labels or {}
            ready = next(
                (c.status for c in (node.status.conditions or []) if c.type == "Ready"), "Unknown"
            )
            rows.append(
                {
                    "name": node.metadata.name,
                    "pool": labels.get(POOL_LABEL, ""),
                    "gpuProduct": labels.get("nvidia.com/gpu.product", ""),
                    "capacityType": labels.get("karpenter.sh/capacity-type", ""),
                    "gpus": (node.status.allocatable or {}).get("nvidia.com/gpu", "0"),
                    "ready": ready,
                }
            )
        return rows

    def wait_nodes_ready(self, timeout: float = NODES_READY_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        not_ready: list[str] = []
        while time.monotonic() < deadline:
            not_ready = [row["name"] for row in self.nodes() if row["ready"] != "True"]
            if not not_ready:
                return
            reason = self.processes.exited_early("kwok")
            if reason is not None:
                raise DevClusterError(reason)
            time.sleep(0.5)
        raise DevClusterError(
            f"nodes not Ready after {timeout:.0f}s: {', '.join(not_ready)} "
            f"(kwok log: {self.processes.log_path('kwok')})"
        )

    def _wait_default_service_account(self, timeout: float = 60.0) -> None:
        # Pods are rejected by the ServiceAccount admission plugin until the controller
        # manager has created `default` in the namespace; wait so the first apply works.
        from kubernetes.client.exceptions import ApiException

        core = self.core_api()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                core.read_namespaced_service_account("default", "default")
                return
            except ApiException as error:
                if error.status != 404:
                    raise
            time.sleep(0.25)
        raise DevClusterError(f"no default ServiceAccount after {timeout:.0f}s")


def component_argvs(
    binaries: dict[str, str],
    ports: Ports,
    pki: certs_module.CertPaths,
    state_dir: Path,
    kubeconfigs: dict[str, Path],
    *,
    etcd_data: Path,
) -> dict[str, list[str]]:
    """Command lines of the five processes (pure: paths and ports in, argv out)."""
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    client = f"http://127.0.0.1:{ports.etcd_client}"
    kcm = str(kubeconfigs["kube-controller-manager"])
    scheduler = str(kubeconfigs["kube-scheduler"])
    return {
        "etcd": [
            binaries["etcd"],
            f"--name={CLUSTER_NAME}",
            f"--data-dir={etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={CLUSTER_NAME}={peer}",
            # A throwaway test store: durability costs seconds per test run on slow disks.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        "kube-apiserver": [
            binaries["kube-apiserver"],
            "--advertise-address=127.0.0.1",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            f"--etcd-servers={client}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={certs_module.SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            f"--cert-dir={state_dir / 'apiserver-certs'}",
            "--profiling=false",
            # The `kubernetes` Service cannot have 127.0.0.1 as an endpoint (loopback addresses
            # are invalid there) and nothing in this cluster runs a pod network to use it.
            "--endpoint-reconciler-type=none",
            f"--requestheader-client-ca-file={pki.ca_cert}",
            f"--requestheader-allowed-names={certs_module.FRONT_PROXY.common_name}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.client_cert(certs_module.FRONT_PROXY)}",
            f"--proxy-client-key-file={pki.client_key(certs_module.FRONT_PROXY)}",
        ],
        "kube-controller-manager": [
            binaries["kube-controller-manager"],
            f"--kubeconfig={kcm}",
            f"--authentication-kubeconfig={kcm}",
            f"--authorization-kubeconfig={kcm}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.controller_manager}",
            f"--cert-dir={state_dir / 'controller-manager-certs'}",
            "--leader-elect=false",
            # Each controller acts as its own service account with the bootstrap RBAC roles,
            # as in kubeadm clusters, instead of sharing one all-powerful identity.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--cluster-name={CLUSTER_NAME}",
            "--profiling=false",
        ],
        "kube-scheduler": [
            binaries["kube-scheduler"],
            f"--kubeconfig={scheduler}",
            f"--authentication-kubeconfig={scheduler}",
            f"--authorization-kubeconfig={scheduler}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.scheduler}",
            "--leader-elect=false",
            "--profiling=false",
        ],
        "kwok": [
            binaries["kwok"],
            f"--config={kwok_stages_path()}",
            f"--kubeconfig={kubeconfigs['admin']}",
            # Only the fleet's nodes: a real kubelet joining this cluster stays its own.
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1",
            "--node-lease-duration-seconds=40",
            f"--cidr={KWOK_FALLBACK_POD_CIDR}",
            f"--server-address=127.0.0.1:{ports.kwok}",
        ],
    }
