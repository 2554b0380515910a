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

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpumix.devcluster.cluster import DevCluster


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
