"""End-to-end fixtures: one real dev cluster (etcd, kube-apiserver, controller manager,
scheduler, kwok) per test session.

The cluster lives in a temporary state directory, not the user's ~/.cache/gpumix/dev-cluster,
so running the suite never touches (or stops) a dev cluster someone is using. The first run on
a machine builds the binaries (minutes); `gpumix dev-cluster build` does that ahead of time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gpumix.devcluster.cluster import DevCluster


@pytest.fixture(scope="session")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """A running cluster with the example fleet: ``.kubeconfig``, ``.add_nodes(pool, n)``,
    ``.delete_pool_nodes(pool)``, ``.core_api()``."""
    cluster = DevCluster(tmp_path_factory.mktemp("dev-cluster"))
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
