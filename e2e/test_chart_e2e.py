"""The Helm chart against a real API server, and the operator running with the chart's RBAC.

What unit tests cannot show: that the API server accepts the chart's CRDs (structural schema,
CEL rules evaluated against defaults), that the examples pass server-side validation, and that
`gpumix operator` logged in as the chart's ServiceAccount plans and reconciles without a single
Forbidden — kopf's own calls included. Its own dev cluster (not the shared session one), because
Helm refuses to adopt CRDs that another test applied from crds/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpumix.devcluster.cluster import DevCluster

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "gpumix"
RELEASE_NAMESPACE = "gpumix-system"
WATCHED = "team-a"


def find_helm() -> str | None:
    """$GPUMIX_HELM, helm on PATH, or the newest build under ~/.cache/gpumix/bin/*/."""
    if os.environ.get("GPUMIX_HELM"):
        return os.environ["GPUMIX_HELM"]
    cached = sorted(Path.home().glob(".cache/gpumix/bin/*/helm"), key=lambda p: p.stat().st_mtime)
    return shutil.which("helm") or (str(cached[-1]) if cached else None)


HELM = find_helm()
pytestmark = pytest.mark.skipif(HELM is None, reason="helm binary not found (see test_chart.py)")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    dev = DevCluster(tmp_path_factory.mktemp("chart-cluster"))
    try:
        dev.up()
        yield dev
    finally:
        dev.down()


def helm(cluster: DevCluster, *args: str) -> str:
    assert HELM is not None
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    for name in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{name}_HOME"] = f"/tmp/gpumix-helm/{name.lower()}"
    result = subprocess.run(
        [HELM, *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def service_account_kubeconfig(cluster: DevCluster, path: Path) -> Path:
    """The admin kubeconfig with its user replaced by a token of the chart's ServiceAccount."""
    core = cluster.core_api()
    token = core.create_namespaced_service_account_token(
        "gpumix", RELEASE_NAMESPACE, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": "gpumix-operator", "user": {"token": token}}]
    for context in kubeconfig["contexts"]:
        context["context"]["user"] = "gpumix-operator"
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


OPERATOR_USER = f"system:serviceaccount:{RELEASE_NAMESPACE}:gpumix"

# (verb, resource, namespace or None for cluster scope / all namespaces, subresource).
GRANTED = [
    ("list", "nodes", None, None),
    ("watch", "pods", None, None),
    ("list", "gpupools.gpumix.io", None, None),
    ("patch", "gpupools.gpumix.io", None, "status"),
    ("watch", "llmservices.gpumix.io", WATCHED, None),
    ("patch", "llmservices.gpumix.io", WATCHED, "status"),
    ("update", "llmservices.gpumix.io", WATCHED, "finalizers"),
    ("create", "deployments.apps", WATCHED, None),
    ("delete", "services", WATCHED, None),
    ("create", "events", WATCHED, None),
    # each LLMService's router: its identity, its list/watch Role and its disruption budget
    ("create", "serviceaccounts", WATCHED, None),
    ("create", "roles.rbac.authorization.k8s.io", WATCHED, None),
    ("create", "rolebindings.rbac.authorization.k8s.io", WATCHED, None),
    ("create", "poddisruptionbudgets.policy", WATCHED, None),
]
DENIED = [
    ("get", "secrets", None, None),
    ("list", "secrets", RELEASE_NAMESPACE, None),
    ("list", "configmaps", WATCHED, None),
    ("create", "deployments.apps", "default", None),  # not a watched namespace
    ("patch", "llmservices.gpumix.io", WATCHED, None),  # users own the spec
    ("create", "pods", WATCHED, None),
    ("patch", "nodes", None, None),
    ("delete", "nodes", None, None),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None, None),
    ("create", "roles.rbac.authorization.k8s.io", "default", None),  # not a watched namespace
    ("escalate", "roles.rbac.authorization.k8s.io", WATCHED, None),
    ("bind", "clusterroles.rbac.authorization.k8s.io", None, None),
    ("impersonate", "users", None, None),
    ("*", "*", None, None),
]


ROUTER_USER = f"system:serviceaccount:{WATCHED}:chat-router"
ROUTER_GRANTED = [("list", "pods"), ("watch", "pods"), ("watch", "llmservices.gpumix.io")]
ROUTER_DENIED = [
    ("get", "secrets"),
    ("list", "configmaps"),
    ("create", "pods"),
    ("patch", "llmservices.gpumix.io"),
    ("list", "services"),
]


def can_i(
    cluster: DevCluster,
    verb: str,
    resource: str,
    namespace: str | None,
    sub: str | None,
    user: str = OPERATOR_USER,
) -> str:
    command = ["kubectl", f"--kubeconfig={cluster.kubeconfig}", "auth", "can-i", verb, resource]
    command += ["--as", user]
    command += ["-n", namespace] if namespace else ["--all-namespaces"]
    if sub:
        command += [f"--subresource={sub}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    return result.stdout.strip()


def assert_least_privilege(cluster: DevCluster) -> None:
    """What `kubectl auth can-i` says about the chart's ServiceAccount: what it needs, and
    nothing a compromised operator could use to read credentials or spread."""
    answers = {case: can_i(cluster, *case) for case in GRANTED + DENIED}
    missing = [case for case in GRANTED if answers[case] != "yes"]
    excess = [case for case in DENIED if answers[case] != "no"]
    assert not missing, f"the chart's RBAC lacks {missing}"
    assert not excess, f"the chart's RBAC grants {excess}"
    listing = subprocess.run(
        [
            *("kubectl", f"--kubeconfig={cluster.kubeconfig}", "auth", "can-i", "--list"),
            *("--as", OPERATOR_USER, "-n", WATCHED),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    # Rows are "resources  non-resource-urls  resource-names  [verbs]". Rows for non-resource
    # URLs start blank: the API server's discovery rules grant "get" on /api/* and the like to
    # every user, which is fine.
    wildcards = [
        line
        for line in listing.splitlines()[1:]
        if line.strip()
        and not line[0].isspace()
        and ("*" in line.split()[0] or "*" in line[line.rindex("[") :])
    ]
    assert not wildcards, "wildcard rules:\n" + "\n".join(wildcards)


def test_chart_installs_and_the_operator_works_with_its_rbac(
    cluster: DevCluster, tmp_path: Path
) -> None:
    from kubernetes import client, config

    core = cluster.core_api()
    core.create_namespace({"metadata": {"name": WATCHED}})
    helm(
        cluster,
        "install",
        "gpumix",
        str(CHART),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--set",
        f"operator.watchNamespaces={{{WATCHED}}}",
    )
    assert_least_privilege(cluster)
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    custom = client.CustomObjectsApi(api_client)
    # The API server accepted the CRDs and serves them: the examples pass its validation.
    for document in yaml.safe_load_all((REPO / "examples" / "gpupools.yaml").read_text()):
        if document:
            custom.create_cluster_custom_object("gpumix.io", "v1alpha1", "gpupools", document)
    chat = yaml.safe_load((REPO / "examples" / "llmservice-chat.yaml").read_text())
    custom.create_namespaced_custom_object("gpumix.io", "v1alpha1", WATCHED, "llmservices", chat)

    kubeconfig = service_account_kubeconfig(cluster, tmp_path / "operator.kubeconfig")
    log_path = tmp_path / "operator.log"
    with log_path.open("w") as log:
        operator = subprocess.Popen(
            [
                *(sys.executable, "-m", "gpumix.cli", "operator", "--namespace", WATCHED),
                *("--liveness", "none", "--planner-interval", "5"),
            ],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            apps = client.AppsV1Api(api_client)

            def chat_is_reconciled() -> bool:
                deployments = apps.list_namespaced_deployment(
                    WATCHED, label_selector="gpumix.io/service=chat"
                ).items
                status = custom.get_namespaced_custom_object(
                    "gpumix.io", "v1alpha1", WATCHED, "llmservices", "chat"
                ).get("status", {})
                return bool(deployments) and bool(status.get("conditions"))

            wait_for("the operator to create chat's Deployments and status", chat_is_reconciled)
            time.sleep(6)  # one more planning pass: replaces and status patches too
            # The router's own identity reads pods and its LLMService, and nothing else.
            for verb, resource in ROUTER_GRANTED:
                assert can_i(cluster, verb, resource, WATCHED, None, ROUTER_USER) == "yes"
            for verb, resource in ROUTER_DENIED:
                assert can_i(cluster, verb, resource, WATCHED, None, ROUTER_USER) == "no"
        finally:
            operator.terminate()
            operator.wait(timeout=30)
    log_text = log_path.read_text()
    # The API server says "... is forbidden: User ... cannot patch resource ..." (status 403).
    # (Not a bare "403": log timestamps carry milliseconds such as "10:29:45,403".)
    denied = [
        line
        for line in log_text.splitlines()
        if re.search(r"forbidden|\(403\)|\bcode\W{0,3}403\b", line, re.I)
    ]
    assert not denied, "\n".join(denied[:10])

    helm(cluster, "uninstall", "gpumix", "--namespace", RELEASE_NAMESPACE)
    extensions = client.ApiextensionsV1Api(api_client)
    names = {crd.metadata.name for crd in extensions.list_custom_resource_definition().items}
    assert {"llmservices.gpumix.io", "gpupools.gpumix.io"} <= names, "crds.keep must keep them"
