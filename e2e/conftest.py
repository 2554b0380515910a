"""End-to-end fixtures: one real dev cluster (etcd, kube-apiserver, controller manager,
scheduler, kwok) per test session.

By default the cluster lives in a temporary state directory, not the user's
~/.cache/gpumix/dev-cluster, so running the suite never touches (or stops) a dev cluster someone
is using, and it is torn down at the end. Set GPUMIX_E2E_STATE_DIR to run against the cluster of
that state directory instead (started if needed, left running) for a fast edit-test loop.

The first run on a machine builds the binaries (minutes); `gpumix dev-cluster build` does that
ahead of time.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpumix.devcluster.cluster import DevCluster
from support import REPO, Kubectl, OperatorProcess


@pytest.fixture(scope="session")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """A running cluster with the example fleet: ``.kubeconfig``, ``.add_nodes(pool, n)``,
    ``.delete_pool_nodes(pool)``, ``.wait_nodes_ready()``, ``.nodes()``, ``.core_api()``."""
    kept = os.environ.get("GPUMIX_E2E_STATE_DIR")
    if kept:
        cluster = DevCluster(Path(kept))
        cluster.up()
        yield cluster
        return
    cluster = DevCluster(tmp_path_factory.mktemp("dev-cluster"))
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def kubectl(dev_cluster: DevCluster) -> Kubectl:
    tool = Kubectl(dev_cluster.kubeconfig)
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        tool.run("apply", "--server-side", "-f", str(crd))
    tool.run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    # Pools named like the simulated node pools, so planned pools and nodes can be compared.
    tool.run("apply", "-f", str(REPO / "examples" / "gpupools.yaml"))
    return tool


@pytest.fixture(scope="session")
def operator(
    dev_cluster: DevCluster, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        dev_cluster.kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        prometheus_url=dev_cluster.prometheus_url,
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
        print(f"\n--- operator log tail ({process.log_path}) ---\n{process.log_tail()}")


def namespace_name(test_name: str) -> str:
    """A DNS label from the test's name; a parametrised test's id is hashed in, so each case
    gets its own namespace."""
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.removeprefix("test_").replace("_", "-").lower())
    if "[" not in test_name:
        return base[:40].strip("-")
    digest = hashlib.sha256(test_name.encode()).hexdigest()[:6]
    return f"{base[:33].strip('-')}-{digest}"


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "e2e-" + namespace_name(request.node.name)
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)
