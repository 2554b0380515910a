"""The router of one LLMService: its Deployment, PodDisruptionBudget and least-privilege RBAC.

Every LLMService gets ``<name>-router``: a Deployment of ``gpumix router`` (two replicas, spread
over nodes, kept at one or more by a PodDisruptionBudget), a ServiceAccount, and a Role that
grants exactly what the router reads (list/watch on pods and LLMServices of its namespace;
never secrets), bound to that ServiceAccount. Once a router pod is ready, the LLMService's entry
Service selects the router pods instead of the vLLM pods (see ``entry_selector``), so clients
keep one address and the plan's class assignment becomes real.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpumix import __version__
from gpumix.operator.manifests import (
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_SERVICE,
    MANAGED_BY,
    PORT_NAME,
    _metadata,
    _with_spec_hash,
    dns_label,
    label_value,
)
from gpumix.operator.pod_security import container_security_context, pod_security_context
from gpumix.resources import LLMService

ROUTER_APP_NAME = "gpumix-router"
ROUTER_COMPONENT = "router"
ROUTER_CONTAINER = "router"
DEFAULT_ROUTER_IMAGE = f"ghcr.io/gpumix/gpumix:{__version__}"
DEFAULT_ROUTER_REPLICAS = 2
# The router is an asyncio proxy: a tenth of a core and 128 MiB hold hundreds of streams;
# the memory limit stops a leak from starving the node, CPU stays unlimited (no throttling
# in every request's path).
CPU_REQUEST = "100m"
MEMORY_REQUEST = "128Mi"
MEMORY_LIMIT = "512Mi"


@dataclass(frozen=True)
class RouterOptions:
    image: str = DEFAULT_ROUTER_IMAGE
    replicas: int = DEFAULT_ROUTER_REPLICAS
    image_pull_policy: str = "IfNotPresent"


def router_name(service_name: str) -> str:
    return dns_label(f"{service_name}-router")


def router_selector(service_name: str) -> dict[str, str]:
    """Labels on every router pod of one LLMService (the Deployment's immutable selector)."""
    return {LABEL_NAME: ROUTER_APP_NAME, LABEL_SERVICE: label_value(service_name)}


def _labels(service: LLMService) -> dict[str, str]:
    return {
        LABEL_NAME: ROUTER_APP_NAME,
        LABEL_INSTANCE: label_value(service.metadata.name),
        LABEL_COMPONENT: ROUTER_COMPONENT,
        LABEL_PART_OF: MANAGED_BY,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_SERVICE: label_value(service.metadata.name),
    }


def _object(api_version: str, kind: str, service: LLMService, **body: Any) -> dict[str, Any]:
    name = router_name(service.metadata.name)
    obj = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": _metadata(name, service, _labels(service)),
        **body,
    }
    return _with_spec_hash(obj)


def build_router_service_account(service: LLMService) -> dict[str, Any]:
    return _object("v1", "ServiceAccount", service)


def build_router_role(service: LLMService) -> dict[str, Any]:
    # the router lists then watches (it never gets by name), so list and watch are all it
    # needs; the operator holds both itself, as Kubernetes requires of whoever grants them
    verbs = ["list", "watch"]
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": verbs},
        {"apiGroups": ["gpumix.io"], "resources": ["llmservices"], "verbs": verbs},
    ]
    return _object("rbac.authorization.k8s.io/v1", "Role", service, rules=rules)


def build_router_role_binding(service: LLMService) -> dict[str, Any]:
    name = router_name(service.metadata.name)
    return _object(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        service,
        roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        subjects=[
            {"kind": "ServiceAccount", "name": name, "namespace": service.metadata.namespace}
        ],
    )


def build_router_pdb(service: LLMService) -> dict[str, Any]:
    return _object(
        "policy/v1",
        "PodDisruptionBudget",
        service,
        spec={
            "minAvailable": 1,
            "selector": {"matchLabels": router_selector(service.metadata.name)},
        },
    )


def _probe(period: int, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failure_threshold,
    }


def build_router_deployment(service: LLMService, options: RouterOptions) -> dict[str, Any]:
    name = router_name(service.metadata.name)
    port = service.spec.serving.port
    labels = _labels(service)
    container = {
        "name": ROUTER_CONTAINER,
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": ["gpumix"],
        "args": [
            "router",
            "--namespace",
            str(service.metadata.namespace),
            "--service",
            service.metadata.name,
            "--port",
            str(port),
        ],
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": _probe(period=2, failure_threshold=2),
        "livenessProbe": _probe(period=10, failure_threshold=3),
        "resources": {
            "requests": {"cpu": CPU_REQUEST, "memory": MEMORY_REQUEST},
            "limits": {"memory": MEMORY_LIMIT},
        },
        # the router writes nothing: a read-only root filesystem on top of `restricted`
        "securityContext": container_security_context(read_only_root=True),
    }
    pod_spec = {
        "serviceAccountName": name,
        "containers": [container],
        "securityContext": pod_security_context(with_volumes=False),
        "enableServiceLinks": False,
        # in-flight streams finish before the router exits (it drains on SIGTERM)
        "terminationGracePeriodSeconds": 30,
        # two replicas on two nodes where there are two: one node's loss is not an outage
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {
                                "matchLabels": router_selector(service.metadata.name)
                            },
                        },
                    }
                ]
            }
        },
    }
    return _object(
        "apps/v1",
        "Deployment",
        service,
        spec={
            "replicas": options.replicas,
            "selector": {"matchLabels": router_selector(service.metadata.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    )


def build_router_objects(service: LLMService, options: RouterOptions) -> list[dict[str, Any]]:
    """In apply order: the identity and its rights before the pods that use them."""
    return [
        build_router_service_account(service),
        build_router_role(service),
        build_router_role_binding(service),
        build_router_deployment(service, options),
        build_router_pdb(service),
    ]
