"""The one Kubernetes I/O adapter: every read and write the planner makes goes through here.

The official client blocks, so callers run these methods in a thread (``asyncio.to_thread``).
Client errors become :class:`KubeError`; 404 on delete and 409 on create are expected races and
tolerated; update conflicts are retried with a fresh read; objects are written only when their
spec-hash annotation differs. Bodies travel as plain dicts (``_preload_content=False``), the
same shape the builders produce and the watch delivers.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import urllib3.exceptions
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpumix.operator import ownership
from gpumix.operator.drift import drifted_fields
from gpumix.operator.manifests import (
    LABEL_MANAGED_BY,
    LABEL_SERVICE,
    MANAGED_BY,
    SPEC_HASH_ANNOTATION,
    label_value,
)

GROUP = "gpumix.io"
VERSION = "v1alpha1"
LLMSERVICES = "llmservices"
GPUPOOLS = "gpupools"
CONFLICT_RETRIES = 3
COMPONENT = "gpumix-operator"
# kind of child -> (Kube attribute holding its API, the client's method suffix). Listed in
# apply order; list_children reads them all.
CHILD_KINDS = {
    "ServiceAccount": ("core", "service_account"),
    "Role": ("rbac", "role"),
    "RoleBinding": ("rbac", "role_binding"),
    "Deployment": ("apps", "deployment"),
    "PodDisruptionBudget": ("policy", "pod_disruption_budget"),
    "Service": ("core", "service"),
}

logger = logging.getLogger(__name__)
T = TypeVar("T")


class KubeError(Exception):
    """A failed API call, with the HTTP status (0 when the request never got an answer)."""

    def __init__(self, action: str, status: int, message: str):
        self.status = status
        super().__init__(f"{action}: HTTP {status}: {message}")


def _message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except (TypeError, ValueError):
        return str(error.reason)


def _call(action: str, request: Callable[[], T]) -> T:
    try:
        return request()
    except ApiException as error:
        raise KubeError(action, int(error.status or 0), _message(error)) from None
    except (OSError, urllib3.exceptions.HTTPError) as error:
        # Connection refused, DNS, TLS; urllib3 wraps some of these (MaxRetryError,
        # ProtocolError when the API server drops the connection) in errors that are not
        # OSError. All of them pass: status 0, retried like any unanswered request.
        raise KubeError(action, 0, str(error)) from None


def _json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data or b"{}")
    return data


def _scaled_by_hand(live: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    if obj.get("kind") != "Deployment":
        return False
    wanted = (obj.get("spec") or {}).get("replicas")
    return wanted is not None and (live.get("spec") or {}).get("replicas") != wanted


def _spec_hash(obj: Mapping[str, Any]) -> str | None:
    annotations: Mapping[str, str] = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(SPEC_HASH_ANNOTATION)


class Kube:
    """Reads and writes of the objects gpumix owns; one instance per operator (in kopf's memo)."""

    def __init__(self, api_client: client.ApiClient):
        # Typed as Any: bodies are plain dicts here, not the client's generated model classes.
        self.core: Any = client.CoreV1Api(api_client)
        self.apps: Any = client.AppsV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.rbac: Any = client.RbacAuthorizationV1Api(api_client)
        self.policy: Any = client.PolicyV1Api(api_client)

    # -- children of an LLMService ------------------------------------------------------------

    def _child_api(self, kind: str) -> tuple[Any, str]:
        """The client API object and method suffix for a kind of child (``read_namespaced_<x>``)."""
        group, suffix = CHILD_KINDS[kind]
        return getattr(self, group), suffix

    def list_children(self, namespace: str, service_name: str) -> list[dict[str, Any]]:
        """Every object gpumix created for one LLMService (vLLM and router Deployments,
        Services, the router's ServiceAccount, Role, RoleBinding and PodDisruptionBudget)."""
        wanted = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_SERVICE: label_value(service_name)}
        selector = ",".join(f"{key}={value}" for key, value in wanted.items())
        children: list[dict[str, Any]] = []
        for kind in CHILD_KINDS:
            api, suffix = self._child_api(kind)
            lister: Callable[..., Any] = getattr(api, f"list_namespaced_{suffix}")
            response = _call(
                f"list {kind}s in {namespace}",
                functools.partial(
                    lister, namespace, label_selector=selector, _preload_content=False
                ),
            )
            for item in _json(response).get("items", []):
                labels = (item.get("metadata") or {}).get("labels") or {}
                # Servers without label selection (test emulators) return everything.
                if all(labels.get(key) == value for key, value in wanted.items()):
                    children.append({"kind": kind, **item})
        return children

    def apply(self, obj: Mapping[str, Any]) -> str:
        """Create ``obj`` or replace the live one when the spec hashes differ (or a
        Deployment's replica count was changed by hand: the plan owns it, or an owned field
        was edited, or the live object has no controller yet and is adopted).

        A live object that another controller holds is never replaced: a 409 Conflict.
        Returns "created", "replaced" or "unchanged".
        """
        kind = obj["kind"]
        namespace = obj["metadata"]["namespace"]
        name = obj["metadata"]["name"]
        what = f"{kind} {namespace}/{name}"
        for _attempt in range(CONFLICT_RETRIES):
            live = self._read(kind, namespace, name)
            if live is None:
                try:
                    self._create(kind, namespace, obj)
                    return "created"
                except KubeError as error:
                    if error.status == 409:  # created meanwhile: compare with that one
                        continue
                    raise
            clash = ownership.conflict(live, obj)
            if clash is not None:
                raise KubeError(f"apply {what}", 409, clash)
            edited = drifted_fields(obj, live)
            adopt = ownership.controller_uid(obj) is not None and ownership.controller(live) is None
            if _spec_hash(live) == _spec_hash(obj) and not _scaled_by_hand(live, obj) and not adopt:
                if not edited:
                    return "unchanged"
                logger.warning(
                    "restoring %s: changed outside gpumix: %s", what, ", ".join(edited[:10])
                )
            body = json.loads(json.dumps(obj))
            body["metadata"]["resourceVersion"] = live["metadata"].get("resourceVersion")
            if kind == "Service":
                # The cluster IP is allocated by the server and immutable.
                live_spec = live.get("spec") or {}
                for field in ("clusterIP", "clusterIPs"):
                    if field in live_spec:
                        body["spec"][field] = live_spec[field]
            try:
                self._replace(kind, namespace, name, body)
                return "replaced"
            except KubeError as error:
                if error.status == 409:  # someone wrote in between: read again
                    continue
                raise
        raise KubeError(f"apply {what}", 409, f"still conflicting after {CONFLICT_RETRIES} tries")

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete a child; already gone is fine. Pods go with their Deployment (background)."""
        api, suffix = self._child_api(kind)
        options = client.V1DeleteOptions(propagation_policy="Background")
        deleter = getattr(api, f"delete_namespaced_{suffix}")
        try:
            _call(
                f"delete {kind} {namespace}/{name}",
                lambda: deleter(name, namespace, body=options, _preload_content=False),
            )
        except KubeError as error:
            if error.status != 404:
                raise

    def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        api, suffix = self._child_api(kind)
        reader = getattr(api, f"read_namespaced_{suffix}")
        try:
            response = _call(
                f"read {kind} {namespace}/{name}",
                lambda: reader(name, namespace, _preload_content=False),
            )
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        return _json(response)

    def _create(self, kind: str, namespace: str, body: Mapping[str, Any]) -> None:
        api, suffix = self._child_api(kind)
        creator = getattr(api, f"create_namespaced_{suffix}")
        _call(
            f"create {kind} {namespace}",
            lambda: creator(namespace, body, _preload_content=False),
        )

    def _replace(self, kind: str, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        api, suffix = self._child_api(kind)
        replacer = getattr(api, f"replace_namespaced_{suffix}")
        _call(
            f"replace {kind} {namespace}/{name}",
            lambda: replacer(name, namespace, body, _preload_content=False),
        )

    # -- the cluster's GPU pods ----------------------------------------------------------------

    def list_active_pods(self) -> list[dict[str, Any]]:
        """Every pod in every namespace that has not terminated (for the GPU inventory when
        kopf watches only some namespaces). ``resourceVersion=0`` lets the API server answer
        from its watch cache instead of etcd: a full pod LIST is the heaviest read we make."""
        response = _call(
            "list Pods in all namespaces",
            lambda: self.core.list_pod_for_all_namespaces(
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
                resource_version="0",
                _preload_content=False,
            ),
        )
        items: list[dict[str, Any]] = _json(response).get("items", [])
        return items

    # -- status and events --------------------------------------------------------------------

    def patch_llmservice_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource; a deleted LLMService is not an error."""
        try:
            _call(
                f"patch LLMService {namespace}/{name} status",
                lambda: self.custom.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    namespace,
                    LLMSERVICES,
                    name,
                    {"status": dict(status)},
                    _preload_content=False,
                ),
            )
        except KubeError as error:
            if error.status != 404:
                raise

    def patch_gpupool_status(self, name: str, status: Mapping[str, Any]) -> None:
        try:
            _call(
                f"patch GPUPool {name} status",
                lambda: self.custom.patch_cluster_custom_object_status(
                    GROUP, VERSION, GPUPOOLS, name, {"status": dict(status)}, _preload_content=False
                ),
            )
        except KubeError as error:
            if error.status != 404:
                raise

    def post_event(
        self,
        *,
        namespace: str,
        name: str,
        uid: str | None,
        reason: str,
        message: str,
        event_type: str = "Normal",
    ) -> None:
        """A core/v1 Event on an LLMService (what `kubectl describe` shows)."""
        now = datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "LLMService",
                "name": name,
                "namespace": namespace,
                **({"uid": uid} if uid else {}),
            },
            "reason": reason,
            # The API server refuses event messages over 1 KiB.
            "message": message[:1024],
            "type": event_type,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        _call(
            f"create Event in {namespace}",
            lambda: self.core.create_namespaced_event(namespace, body, _preload_content=False),
        )
