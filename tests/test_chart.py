"""The Helm chart: lints, renders, installs the same CRDs as crds/, and grants least privilege.

The helm binary is looked up in $GPUMIX_HELM, on PATH, then under ~/.cache/gpumix/bin/*/ (where
the dev-cluster tooling builds it from Go modules). Tests that need it are skipped, with that
reason, only when it is absent; the drift test between the models and the chart always runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpumix.resources.crd import all_crds
from gpumix.resources.crd_chart import render_chart_template

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "gpumix"
CHART_CRDS = CHART / "templates" / "crds"
RELEASE_NAMESPACE = "gpumix-system"
# helm built with a bare `go install` (no release ldflags) assumes Kubernetes v1.20, older than
# the chart's kubeVersion; state the version the chart is rendered for.
KUBE_VERSION = "1.34.0"


def find_helm() -> str | None:
    explicit = os.environ.get("GPUMIX_HELM")
    if explicit:
        return explicit
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    cached = sorted(Path.home().glob(".cache/gpumix/bin/*/helm"), key=lambda p: p.stat().st_mtime)
    return str(cached[-1]) if cached else None


HELM = find_helm()
needs_helm = pytest.mark.skipif(
    HELM is None,
    reason="helm binary not found (set GPUMIX_HELM, put helm on PATH, or build it: "
    "GOBIN=~/.cache/gpumix/bin/helm-v3.22.0 go install helm.sh/helm/v3/cmd/helm@v3.22.0)",
)


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    # An empty, private helm home: no repositories or plugins of the developer leak in.
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/gpumix-helm/cache"}
    env["HELM_CONFIG_HOME"] = "/tmp/gpumix-helm/config"
    env["HELM_DATA_HOME"] = "/tmp/gpumix-helm/data"
    result = subprocess.run(
        [HELM, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def render(
    *set_args: str, values: dict[str, Any] | None = None, tmp: Path | None = None
) -> list[dict[str, Any]]:
    args = ["template", "gpumix", str(CHART), "--namespace", RELEASE_NAMESPACE]
    args += ["--kube-version", KUBE_VERSION]
    for item in set_args:
        args += ["--set", item]
    if values is not None:
        assert tmp is not None
        path = tmp / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["--values", str(path)]
    output = run_helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [obj for obj in of_kind(objects, kind) if name in (None, obj["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, got {len(matches)}"
    return matches[0]


# ---------------------------------------------------------------------------------------------
# Always: the chart's CRD templates are generated from the models


def test_chart_crd_templates_match_the_models() -> None:
    crds = all_crds()
    assert sorted(p.name for p in CHART_CRDS.glob("*.yaml")) == sorted(crds)
    for file_name, crd in crds.items():
        assert (CHART_CRDS / file_name).read_text() == render_chart_template(crd), (
            f"charts/gpumix/templates/crds/{file_name} drifted from gpumix.resources: "
            "run `python -m gpumix.resources.crd_chart`"
        )


def test_every_value_is_documented() -> None:
    documented = set(re.findall(r"^\s*## @param (\S+)", (CHART / "values.yaml").read_text(), re.M))

    def leaves(node: Any, prefix: str = "") -> Iterator[str]:
        # A documented map or list counts as one value (e.g. resources, pricing.defaults).
        if prefix in documented or not isinstance(node, dict) or not node:
            yield prefix
            return
        for key, child in node.items():
            yield from leaves(child, f"{prefix}.{key}" if prefix else key)

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    undocumented = [path for path in leaves(values) if path not in documented]
    assert not undocumented, f"values without a `## @param` comment: {undocumented}"
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(values) <= set(schema["properties"]), "every top-level value is in the schema"


# ---------------------------------------------------------------------------------------------
# With helm


@needs_helm
def test_helm_lint_passes() -> None:
    result = run_helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


@needs_helm
def test_default_render_has_the_operator_and_its_rbac() -> None:
    objects = render()
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "ServiceAccount",
        ]
    )
    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "ghcr.io/gpumix/gpumix:0.1.0"
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    assert container["args"][0] == "--liveness=http://0.0.0.0:8080/healthz"
    assert not [arg for arg in container["args"] if arg.startswith("--namespace")], (
        "no --namespace means every namespace"
    )
    assert "--planner-interval=60" in container["args"]
    assert "--time-limit=30" in container["args"]
    assert "--verbose" not in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}


@needs_helm
@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "operator": {
                "watchNamespaces": ["team-a", "team-b"],
                "logLevel": "debug",
                "plannerIntervalSeconds": 120,
                "plannerTimeLimitSeconds": 12.5,
                "solverBackend": "cbc",
                "extraArgs": ["--debounce", "2"],
            }
        },
    ],
)
def test_operator_args_are_accepted_by_gpumix_operator(
    tmp_path: Path, values: dict[str, Any]
) -> None:
    # The chart and the CLI are written separately: parse what the chart renders with the real
    # `gpumix operator` parser, so a renamed flag fails here instead of crash-looping the pod.
    from gpumix.cli import build_parser

    deployment = one(render(values=values, tmp=tmp_path), "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = build_parser().parse_args(["operator", *args])
    operator = values.get("operator", {})
    assert parsed.namespace == operator.get("watchNamespaces", [])
    assert parsed.planner_interval == operator.get("plannerIntervalSeconds", 60)
    assert parsed.time_limit == operator.get("plannerTimeLimitSeconds", 30)
    assert parsed.backend == operator.get("solverBackend", "highs")
    assert parsed.verbose is (operator.get("logLevel") == "debug")
    assert parsed.liveness == "http://0.0.0.0:8080/healthz"


@needs_helm
def test_operator_pod_meets_the_restricted_pod_security_standard() -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # Read-only root: /tmp must be writable for PuLP/CBC.
    [tmp] = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    [volume] = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume


@needs_helm
def test_rbac_has_no_wildcards_and_no_secrets() -> None:
    objects = render()
    roles = of_kind(objects, "ClusterRole") + of_kind(objects, "Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"wildcard {field} in {role['metadata']}"
            assert not {"secrets", "configmaps"} & set(rule["resources"])
            assert "nonResourceURLs" not in rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])


def granted(objects: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for role in of_kind(objects, "ClusterRole"):
        for rule in role["rules"]:
            if group in rule["apiGroups"] and resource in rule["resources"]:
                verbs |= set(rule["verbs"])
    return verbs


OPERATOR_SOURCES = REPO / "src" / "gpumix" / "operator"
CLIENT_VERBS = {
    "list": "list",
    "read": "get",
    "create": "create",
    "replace": "update",
    "patch": "patch",
    "delete": "delete",
}
# Kube's attributes holding the client's API objects -> their API group.
API_GROUP_OF_ATTRIBUTE = {
    "core": "",
    "apps": "apps",
    "rbac": "rbac.authorization.k8s.io",
    "policy": "policy",
}
# kopf decorators that make it write to the object (finalizers, progress annotations).
KOPF_WRITING_HANDLERS = {"on.create", "on.update", "on.delete", "on.resume", "on.field"}
KOPF_WRITING_HANDLERS |= {"timer", "daemon"}
# kopf's own machinery, not visible as handlers: namespace patterns and CRD scanning.
KOPF_INFRASTRUCTURE = {
    ("", "namespaces"): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
}


def operator_api_usage() -> dict[tuple[str, str], set[str]]:
    """(API group, resource) -> verbs, read from the operator's Kubernetes calls and kopf
    registrations, so that the chart's RBAC cannot silently fall behind the code."""
    texts = {path.name: path.read_text() for path in OPERATOR_SOURCES.glob("*.py")}
    constants = dict(re.findall(r'^([A-Z_]+) = "([a-z0-9.]*)"$', "\n".join(texts.values()), re.M))
    usage: dict[tuple[str, str], set[str]] = {}
    for text in texts.values():
        for call in re.finditer(
            r"self\.(core|apps|custom)\.(\w+?)_(?:namespaced|cluster)_(\w+)\(", text
        ):
            api, action, target = call.groups()
            subresource = ""
            if target.endswith("_status"):
                target, subresource = target.removesuffix("_status"), "/status"
            if target == "custom_object":
                group = "gpumix.io"
                arguments = text[call.end() : call.end() + 300]
                plural = next(
                    constants.get(token, token)
                    for token in re.findall(r'[A-Z_]{4,}|"[a-z]+s"', arguments)
                    if constants.get(token, token).strip('"').endswith("s")
                ).strip('"')
            else:
                group = "apps" if api == "apps" else ""
                plural = f"{target}s"
            usage.setdefault((group, plural + subresource), set()).add(CLIENT_VERBS[action])
        # Children are read and written through one table (kube.CHILD_KINDS): every kind in it
        # gets every verb the generic calls name (getattr(api, f"<verb>_namespaced_{suffix}")).
        table = re.search(r"^CHILD_KINDS = \{(.*?)^\}", text, re.M | re.S)
        if table:
            generic = set(re.findall(r'f"(\w+?)_namespaced_\{suffix\}"', text))
            for attribute, target in re.findall(r'\("(\w+)", "(\w+)"\)', table.group(1)):
                group = API_GROUP_OF_ATTRIBUTE[attribute]
                verbs = usage.setdefault((group, f"{target.replace('_', '')}s"), set())
                verbs |= {CLIENT_VERBS[action] for action in generic}
                if "list" in generic:
                    verbs.add("list")
        for decorator in re.finditer(
            r"@kopf\.(index|on\.\w+|timer|daemon)\(\s*([^,]+?),\s*([^,]+?),\s*\"([a-z]+)\"",
            text,
        ):
            kind, group_expr, _, plural = decorator.groups()
            group = constants.get(group_expr, group_expr.strip('"'))
            verbs = usage.setdefault((group, plural), set())
            verbs |= {"list", "watch"}
            if kind in KOPF_WRITING_HANDLERS:
                verbs.add("patch")
    if re.search(r'"blockOwnerDeletion": True', texts.get("manifests.py", "")):
        # Setting blockOwnerDeletion on a child needs update on the owner's finalizers where
        # the OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift, hardened
        # clusters); without it every create of a child is refused with 403.
        usage[("gpumix.io", "llmservices/finalizers")] = {"update"}
    return usage


def test_the_operator_api_usage_is_found() -> None:
    # Guards the scanner below: if it found nothing, the RBAC comparison would prove nothing.
    usage = operator_api_usage()
    assert usage[("apps", "deployments")] >= {"create", "delete", "list", "watch", "update"}
    assert usage[("rbac.authorization.k8s.io", "roles")] == {
        "get", "list", "watch", "create", "update", "delete"
    }  # fmt: skip
    assert usage[("policy", "poddisruptionbudgets")] >= {"create", "update", "delete"}
    assert usage[("gpumix.io", "llmservices/status")] == {"patch"}
    assert usage[("", "nodes")] == {"list", "watch"}
    assert usage[("gpumix.io", "llmservices/finalizers")] == {"update"}


@needs_helm
def test_rbac_grants_exactly_what_the_operator_uses() -> None:
    objects = render()
    needed = {**operator_api_usage(), **KOPF_INFRASTRUCTURE}
    for (group, resource), verbs in needed.items():
        missing = verbs - granted(objects, group, resource)
        assert not missing, f"the operator needs {sorted(missing)} on {group or 'core'}/{resource}"
    for role in of_kind(objects, "ClusterRole"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    extra = set(rule["verbs"]) - needed.get((group, resource), set())
                    assert not extra, (
                        f"{role['metadata']['name']} grants {sorted(extra)} on "
                        f"{group or 'core'}/{resource}, which the operator never uses"
                    )


def test_every_rbac_rule_has_a_comment() -> None:
    lines = (CHART / "templates" / "rbac.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            assert lines[index - 1].strip().startswith("#"), f"rbac.yaml:{index + 1} lacks a why"


@needs_helm
def test_watched_namespaces_narrow_the_workload_rights(tmp_path: Path) -> None:
    objects = render(values={"operator": {"watchNamespaces": ["team-a", "team-b"]}}, tmp=tmp_path)
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert {b["roleRef"]["name"] for b in bindings} == {"gpumix-workloads"}
    cluster_bindings = {b["roleRef"]["name"] for b in of_kind(objects, "ClusterRoleBinding")}
    assert cluster_bindings == {"gpumix-cluster"}, "workload rights must not be cluster-wide"
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


@needs_helm
def test_chart_crds_equal_the_generated_ones() -> None:
    rendered = {
        crd["metadata"]["name"]: crd for crd in of_kind(render(), "CustomResourceDefinition")
    }
    generated = {crd["metadata"]["name"]: crd for crd in all_crds().values()}
    assert rendered.keys() == generated.keys()
    for name, crd in generated.items():
        assert rendered[name]["spec"] == crd["spec"], f"{name}: spec differs from crds/"
        assert crd["metadata"]["labels"].items() <= rendered[name]["metadata"]["labels"].items()
    committed = {
        doc["metadata"]["name"]: doc
        for path in (REPO / "crds").glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
    }
    assert {name: crd["spec"] for name, crd in committed.items()} == {
        name: crd["spec"] for name, crd in rendered.items()
    }


@needs_helm
def test_crds_can_be_left_out() -> None:
    objects = render("crds.enabled=false")
    assert not of_kind(objects, "CustomResourceDefinition")
    assert of_kind(objects, "Deployment")


@needs_helm
def test_crds_keep_annotation_follows_the_value() -> None:
    for crd in of_kind(render(), "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    for crd in of_kind(render("crds.keep=false"), "CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


@needs_helm
def test_prices_reach_the_operator_config(tmp_path: Path) -> None:
    prices = {"H100-80GB": {"on-demand": "3.93", "spot": "2.47"}, "L4": {"spot": "0.29"}}
    objects = render(values={"pricing": {"defaults": prices}}, tmp=tmp_path)
    config = yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"])
    assert config["pricing"]["defaults"] == prices
    assert config["discovery"]["gpuTypeLabels"][0] == "nvidia.com/gpu.product"
    env = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "GPUMIX_CONFIG", "value": "/etc/gpumix/config.yaml"} in env


CONFIGURED_VALUES = {
    "pricing": {
        "defaults": {
            "H100-80GB": {"on-demand": "3.93", "spot": "2.47", "reserved": "2"},
            "L4": {"spot": "0.29"},
        }
    },
    "discovery": {
        "gpuTypeLabels": ["example.com/gpu-model", "nvidia.com/gpu.product"],
        "capacityTypeLabels": ["example.com/lifecycle"],
    },
    "metrics": {"port": 9311},
}


@needs_helm
@pytest.mark.parametrize("values", [{}, CONFIGURED_VALUES], ids=["defaults", "configured"])
def test_the_operator_loads_the_config_the_chart_renders(
    tmp_path: Path, values: dict[str, Any]
) -> None:
    # The chart writes the file and the operator reads it, in two languages: follow the path
    # the pod takes (args and env -> mount -> ConfigMap key) and load it with the real loader,
    # so a renamed key, a mis-quoted price or a moved mount fails here, not in a crash loop.
    from gpumix.cli import build_parser
    from gpumix.commands.operator import config_path
    from gpumix.operator.config_file import load_config_file
    from gpumix.operator.inventory import InventorySettings

    objects = render(values=values, tmp=tmp_path)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = build_parser().parse_args(["operator", *container["args"]])
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    path = config_path(args.config, env)
    assert path is not None, "the chart must point the operator at its configuration file"
    [mount] = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = one(objects, "ConfigMap", volume["configMap"]["name"])
    rendered = tmp_path / "config.yaml"
    rendered.write_text(configmap["data"][path.removeprefix(mount["mountPath"] + "/")])

    config = load_config_file(rendered)
    settings = config.inventory_settings()
    [metrics_port] = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
    assert config.metrics.port == metrics_port
    if not values:
        assert settings == InventorySettings(), "default values must mean the built-in behaviour"
        assert config.metrics.port == 9090
        return
    assert settings.prices == {
        ("H100-80GB", "on-demand"): 3.93,
        ("H100-80GB", "spot"): 2.47,
        ("H100-80GB", "reserved"): 2.0,
        ("L4", "spot"): 0.29,
    }
    assert settings.gpu_type_labels == ("example.com/gpu-model", "nvidia.com/gpu.product")
    assert settings.capacity_type_labels == ("example.com/lifecycle",)
    assert config.metrics.port == 9311


@needs_helm
@pytest.mark.parametrize(
    ("price", "why"),
    [("abc", "not a number"), ("-1.5", "negative"), ("2.", "dangling point"), (2.47, "unquoted")],
)
def test_schema_rejects_a_bad_price(tmp_path: Path, price: Any, why: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"pricing": {"defaults": {"L4": {"spot": price}}}}))
    result = run_helm(
        "template",
        "gpumix",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--values",
        str(path),
        check=False,
    )
    assert result.returncode != 0, f"a {why} price was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr


@needs_helm
def test_schema_rejects_unknown_capacity_types_and_typos(tmp_path: Path) -> None:
    for values in (
        {"pricing": {"defaults": {"L4": {"preemptible": "0.29"}}}},
        {"operator": {"logLevel": "verbose"}},
        {"crd": {"enabled": False}},
    ):
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        result = run_helm(
            "template",
            "gpumix",
            str(CHART),
            "--kube-version",
            KUBE_VERSION,
            "--values",
            str(path),
            check=False,
        )
        assert result.returncode != 0, f"{values} was accepted"


@needs_helm
def test_service_monitor_is_optional() -> None:
    assert not of_kind(render(), "ServiceMonitor")
    objects = render("serviceMonitor.enabled=true")
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@needs_helm
def test_notes_tell_the_user_what_to_apply_next(tmp_path: Path) -> None:
    # `helm template` never renders NOTES.txt and `helm install --dry-run` needs a cluster, so
    # render it through `tpl` in a copy of the chart.
    chart = tmp_path / "gpumix"
    shutil.copytree(CHART, chart)
    shutil.copy(CHART / "templates" / "NOTES.txt", chart / "notes-source.txt")
    (chart / "templates" / "notes.yaml").write_text(
        'notes: {{ tpl (.Files.Get "notes-source.txt") . | toJson }}\n'
    )
    rendered = run_helm(
        "template",
        "gpumix",
        str(chart),
        "--kube-version",
        KUBE_VERSION,
        "--show-only",
        "templates/notes.yaml",
    ).stdout
    notes = yaml.safe_load(rendered)["notes"]
    assert "kubectl apply -f examples/" in notes
    assert "kubectl get llmsvc" in notes
    assert "every namespace" in notes


@needs_helm
def test_the_plan_api_is_off_by_default_and_never_a_load_balancer(tmp_path: Path) -> None:
    from gpumix.cli import build_parser
    from gpumix.commands.operator import api_port_of
    from gpumix.operator.config_file import parse_config

    def api_port(objects: list[dict[str, Any]]) -> int | None:
        [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
        args = build_parser().parse_args(["operator", *container["args"]])
        config = parse_config(yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"]), "")
        return api_port_of(args.api_port, config.api.enabled, config.api.port)

    default = render()
    assert api_port(default) is None
    assert not [s for s in of_kind(default, "Service") if s["metadata"]["name"].endswith("-api")]
    [container] = one(default, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "api" not in {port["name"] for port in container["ports"]}

    enabled = render(values={"api": {"enabled": True, "port": 8181}}, tmp=tmp_path)
    assert api_port(enabled) == 8181
    [service] = [s for s in of_kind(enabled, "Service") if s["metadata"]["name"].endswith("-api")]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "api", "port": 8181, "targetPort": "api", "protocol": "TCP"}
    ]
    [container] = one(enabled, "Deployment")["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["api"] == 8181 and ports["metrics"] != 8181


@needs_helm
def test_the_chart_points_the_operator_at_an_existing_prometheus_without_more_rbac(
    tmp_path: Path,
) -> None:
    from gpumix.operator.config_file import parse_config

    def config(objects: list[dict[str, Any]]) -> Any:
        return parse_config(yaml.safe_load(one(objects, "ConfigMap")["data"]["config.yaml"]), "")

    def rbac(objects: list[dict[str, Any]]) -> list[Any]:
        kinds = ("ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding")
        return [obj.get("rules") for kind in kinds for obj in of_kind(objects, kind)]

    default = render()
    assert config(default).prometheus.url is None
    url = "http://prometheus-operated.monitoring:9090"
    pointed = render(values={"prometheus": {"url": url, "intervalSeconds": 30}}, tmp=tmp_path)
    assert config(pointed).prometheus.url == url
    assert config(pointed).prometheus.interval_seconds == 30
    assert config(pointed).calibration.enabled
    off = render(values={"calibration": {"enabled": False}}, tmp=tmp_path)
    assert not config(off).calibration.enabled
    # Reading Prometheus is plain HTTP: not one Kubernetes right more.
    assert rbac(pointed) == rbac(default)
