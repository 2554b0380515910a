"""Keeps a :class:`~gpumix.router.table.RouterState` in step with the Kubernetes API.

Two list-then-watch loops, each in a daemon thread (the official client blocks):

- pods in the router's namespace labelled ``gpumix.io/service=<service>`` and
  ``app.kubernetes.io/name=vllm`` (the vLLM pods, not the router's own): a pod is routable when
  its ``Ready`` condition is true, it has a ``status.podIP`` and it is not being deleted; its
  address is ``podIP:port`` with the container port named ``http`` (else the first declared
  port, else ``--backend-port``), grouped by the ``gpumix.io/deployment`` label. Pod IPs come
  from the pods themselves, never from Endpoints: in the dev cluster pod IPs are loopback
  addresses, which EndpointSlices refuse;
- the LLMService itself (custom objects API, ``metadata.name`` field selector): its
  ``spec.workload.classes``, ``spec.routing.mode`` and ``status.plan[]`` (deployment name and
  ``assignment``).

A dropped watch resumes from the last resourceVersion, an expired one (410 Gone) lists again,
and API errors back off from 1 s to 30 s. Until reconnected, the last table keeps routing.
Permissions needed: list/watch on pods and llmservices in the namespace; nothing else
(no Secrets, no Endpoints).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from gpumix.errors import InputError
from gpumix.resources.llmservice import DEFAULT_CLASSES, RequestClassSpec
from gpumix.resources.types import DecimalString
from gpumix.router.settings import RouterSettings
from gpumix.router.table import PlanEntry, RequestClass, RouterState, RoutingMode

log = logging.getLogger(__name__)

GROUP = "gpumix.io"
VERSION = "v1alpha1"
LLMSERVICES = "llmservices"
# The operator's labels on vLLM pods (gpumix.operator.manifests; checked by the router tests).
LABEL_SERVICE = "gpumix.io/service"
LABEL_DEPLOYMENT = "gpumix.io/deployment"
LABEL_APP_NAME = "app.kubernetes.io/name"
VLLM_APP_NAME = "vllm"
BACKEND_PORT_NAME = "http"

# Server-side watch timeout: the loops check for stop() at least this often.
WATCH_SECONDS = 20
CONNECT_TIMEOUT_SECONDS = 5
BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
HTTP_GONE = 410


# -- parsing (pure) ---------------------------------------------------------------------------


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _container_port(spec: Mapping[str, Any], default_port: int) -> int:
    ports = [p for c in spec.get("containers") or [] for p in c.get("ports") or []]
    for port in ports:
        if port.get("name") == BACKEND_PORT_NAME and port.get("containerPort"):
            return int(port["containerPort"])
    for port in ports:
        if port.get("containerPort"):
            return int(port["containerPort"])
    return default_port


def pod_endpoint(pod: Mapping[str, Any], default_port: int) -> tuple[str, str] | None:
    """``(deployment, "ip:port")`` of a pod that can take requests now, else None."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    deployment = (metadata.get("labels") or {}).get(LABEL_DEPLOYMENT)
    ip = status.get("podIP")
    if not deployment or not ip or metadata.get("deletionTimestamp"):
        return None
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    if not ready:
        return None
    return deployment, _host_port(ip, _container_port(pod.get("spec") or {}, default_port))


def group_by_deployment(endpoints: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    grouped: dict[str, list[str]] = {}
    for deployment, address in endpoints:
        grouped.setdefault(deployment, []).append(address)
    return {name: tuple(addresses) for name, addresses in grouped.items()}


class _PlanEntryView(BaseModel):
    """The two fields of ``status.plan[]`` the router reads; other fields may come and go."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    deployment: str
    assignment: dict[str, DecimalString] = {}


def routing_from_llmservice(
    obj: Mapping[str, Any] | None,
) -> tuple[tuple[RequestClass, ...], tuple[PlanEntry, ...], RoutingMode]:
    """Classes, plan entries and routing mode of an LLMService object (None: not there yet).

    Raises ValueError (pydantic's ValidationError) on a malformed object: the caller keeps the
    last good table.
    """
    spec = (obj or {}).get("spec") or {}
    status = (obj or {}).get("status") or {}
    raw_classes = (spec.get("workload") or {}).get("classes")
    class_specs = (
        [RequestClassSpec.model_validate(c) for c in raw_classes]
        if raw_classes
        else DEFAULT_CLASSES
    )
    classes = tuple(RequestClass(c.name, c.input_tokens, c.output_tokens) for c in class_specs)
    entries = tuple(
        PlanEntry(
            deployment=view.deployment,
            assignment={name: float(share) for name, share in view.assignment.items()},
        )
        for view in (_PlanEntryView.model_validate(e) for e in status.get("plan") or [])
    )
    raw_mode = (spec.get("routing") or {}).get("mode") or RoutingMode.PLAN_WEIGHTED.value
    try:
        mode = RoutingMode(raw_mode)
    except ValueError:
        raise ValueError(
            f"spec.routing.mode: must be one of {', '.join(m.value for m in RoutingMode)}, "
            f"got {raw_mode!r}"
        ) from None
    return classes, entries, mode


# -- the Kubernetes side ----------------------------------------------------------------------


def _api_client(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig and not os.path.isfile(kubeconfig):
        raise InputError(f"no such file: {kubeconfig}", field="--kubeconfig")
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.ApiClient(configuration)
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(
            f"no usable Kubernetes credentials: {reason}", field="--kubeconfig"
        ) from None
    return client.ApiClient(configuration)


class _ListWatch:
    """One list-then-watch loop; ``on_list`` gets every object, ``on_event`` each change."""

    def __init__(
        self,
        name: str,
        list_call: Callable[..., Any],
        on_list: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        stopped: threading.Event,
    ) -> None:
        self.name = name
        self.list_call = list_call
        self.on_list = on_list
        self.on_event = on_event
        self.stopped = stopped

    def run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        backoff = BACKOFF_START_SECONDS
        resource_version: str | None = None
        while not self.stopped.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                stream = watch.Watch()  # type: ignore[no-untyped-call]
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self.list_call,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_SECONDS,
                    _request_timeout=(CONNECT_TIMEOUT_SECONDS, WATCH_SECONDS + 10),
                ):
                    if self.stopped.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
                        return
                    obj = event.get("raw_object") or {}
                    kind = event.get("type", "")
                    if kind == "ERROR":
                        if obj.get("code") == HTTP_GONE:
                            resource_version = None  # too old: list again
                            break
                        raise RuntimeError(f"watch error: {obj.get('message')}")
                    resource_version = (obj.get("metadata") or {}).get(
                        "resourceVersion", resource_version
                    )
                    if kind != "BOOKMARK":
                        self.on_event(kind, obj)
                backoff = BACKOFF_START_SECONDS
            except ApiException as error:
                if error.status == HTTP_GONE:
                    resource_version = None
                    continue
                backoff = self._pause(error, backoff)
            except Exception as error:  # network, TLS, a malformed event: reconnect later
                backoff = self._pause(error, backoff)

    def _list(self) -> str | None:
        response = self.list_call(_preload_content=False, _request_timeout=WATCH_SECONDS)
        body = json.loads(response.data or b"{}")
        self.on_list(list(body.get("items") or []))
        version: str | None = (body.get("metadata") or {}).get("resourceVersion")
        return version

    def _pause(self, error: Exception, backoff: float) -> float:
        log.warning("%s watch failed (%s); retrying in %.0f s", self.name, error, backoff)
        self.stopped.wait(backoff)
        return min(backoff * 2, BACKOFF_MAX_SECONDS)


class Watcher:
    """Publishes pods and the LLMService's plan into ``state`` from two watch threads."""

    def __init__(self, settings: RouterSettings, state: RouterState) -> None:
        from kubernetes import client

        self.settings = settings
        self.state = state
        self._stopped = threading.Event()
        self._pods: dict[str, tuple[str, str]] = {}
        self._pods_listed = threading.Event()
        self._service_listed = threading.Event()
        # One API client per thread: the generated client is not documented as thread-safe.
        core = client.CoreV1Api(_api_client(settings.kubeconfig))
        custom = client.CustomObjectsApi(_api_client(settings.kubeconfig))
        selector = (
            f"{LABEL_SERVICE}={settings.service},{LABEL_APP_NAME}={VLLM_APP_NAME}"
        )  # fmt: skip
        self._loops = [
            _ListWatch(
                "pods",
                lambda **kw: core.list_namespaced_pod(
                    settings.namespace, label_selector=selector, **kw
                ),
                self._pods_replaced,
                self._pod_changed,
                self._stopped,
            ),
            _ListWatch(
                "llmservice",
                lambda **kw: custom.list_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    settings.namespace,
                    LLMSERVICES,
                    field_selector=f"metadata.name={settings.service}",
                    **kw,
                ),
                self._services_replaced,
                self._service_changed,
                self._stopped,
            ),
        ]
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for loop in self._loops:
            thread = threading.Thread(
                target=loop.run, name=f"router-watch-{loop.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Ask the loops to end; they do within WATCH_SECONDS (the threads are daemons)."""
        self._stopped.set()

    # -- pods

    def _pods_replaced(self, pods: list[dict[str, Any]]) -> None:
        self._pods = {}
        for pod in pods:
            self._remember(pod)
        self._publish_pods()
        self._pods_listed.set()
        self._mark_synced()

    def _pod_changed(self, kind: str, pod: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._pods.pop((pod.get("metadata") or {}).get("name", ""), None)
        else:
            self._remember(pod)
        self._publish_pods()

    def _remember(self, pod: Mapping[str, Any]) -> None:
        name = (pod.get("metadata") or {}).get("name", "")
        endpoint = pod_endpoint(pod, self.settings.backend_port)
        if endpoint is None:
            self._pods.pop(name, None)
        else:
            self._pods[name] = endpoint

    def _publish_pods(self) -> None:
        if not self._stopped.is_set():
            self.state.update(ready_pods=group_by_deployment(self._pods.values()))

    # -- the LLMService

    def _services_replaced(self, services: list[dict[str, Any]]) -> None:
        self._publish_service(services[0] if services else None)
        self._service_listed.set()
        self._mark_synced()

    def _service_changed(self, kind: str, service: dict[str, Any]) -> None:
        self._publish_service(None if kind == "DELETED" else service)

    def _publish_service(self, service: dict[str, Any] | None) -> None:
        try:
            classes, entries, mode = routing_from_llmservice(service)
        except (ValidationError, ValueError) as error:
            log.warning("LLMService %s: not understood, keeping the last plan: %s",
                        self.settings.service, str(error).splitlines()[0])  # fmt: skip
            return
        if not self._stopped.is_set():
            self.state.update(classes=classes, entries=entries, mode=mode)

    def _mark_synced(self) -> None:
        if self._pods_listed.is_set() and self._service_listed.is_set():
            self.state.synced = True
