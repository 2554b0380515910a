"""The kopf registration table: thin handlers that parse nothing and decide nothing.

Indices (:mod:`gpumix.operator.indexes`) hold the parsed state; every handler below only wakes
the fleet planner (:mod:`gpumix.operator.planner`), which plans and reconciles in one place.
No change handlers are registered, so kopf never writes progress, diff-base or finalizers:
deletion is left to Kubernetes' garbage collector through the children's owner references.

Handlers are registered into a registry built per run (:func:`build_registry`) rather than at
import time, so the configuration is explicit and tests can start the operator repeatedly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

import kopf
from kubernetes import client, config

from gpumix.operator import indexes, inventory
from gpumix.operator.kube import Kube
from gpumix.operator.manifests import LABEL_MANAGED_BY, MANAGED_BY
from gpumix.operator.metrics import MetricsServer, OperatorMetrics, start_metrics_server
from gpumix.operator.planner import FleetPlanner
from gpumix.operator.settings import OperatorConfig, configure_kopf

if TYPE_CHECKING:
    from gpumix.api.server import ApiServer

logger = logging.getLogger(__name__)

GROUP = "gpumix.io"
VERSION = "v1alpha1"


def make_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            # The client reads $KUBECONFIG at import time; read it now, as kopf does.
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
        except config.ConfigException as error:
            # Retrying will not conjure credentials: stop the operator with the reason.
            raise kopf.PermanentError(f"no Kubernetes credentials: {error}") from error
    return client.ApiClient(configuration)


def _planner(memo: Any) -> FleetPlanner | None:
    planner: FleetPlanner | None = getattr(memo, "planner", None)
    return planner


def _wake(memo: Any) -> None:
    planner = _planner(memo)
    if planner is not None:
        planner.indices_loaded()
        planner.wake()


def foreign_gpu_pod(labels: kopf.Labels, spec: kopf.Spec, **_: Any) -> bool:
    """Pods gpumix does not manage that request GPUs: only they take GPUs from the plan.

    A pod's GPU requests cannot change after creation, so its deletion event passes too.
    """
    return labels.get(LABEL_MANAGED_BY) != MANAGED_BY and inventory.pod_gpu_request(spec) > 0


class GPUNodeFilter:
    """Passes events of GPU nodes, and the first event of a node that stopped being one.

    The event of a node losing its GPU labels or allocatable GPUs carries the new body, which
    no longer looks like a GPU node; remembering which nodes were lets that event through.
    A deleted node's event carries its last body, so GPU node deletions pass as well.
    """

    def __init__(self) -> None:
        self.gpu_nodes: set[str] = set()

    def __call__(self, body: kopf.Body, name: str, **kwargs: Any) -> bool:
        if not indexes.is_gpu_node(inventory.node_record(body)):
            was_gpu_node = name in self.gpu_nodes
            self.gpu_nodes.discard(name)
            return was_gpu_node
        if kwargs.get("type") == "DELETED":
            self.gpu_nodes.discard(name)
        else:
            self.gpu_nodes.add(name)
        return True


def start_plan_api(operator_config: OperatorConfig, planner: FleetPlanner) -> ApiServer:
    """The read-only plan/what-if API on its own port, over the planner's memory."""
    # Imported here: an operator without the API never loads FastAPI.
    from gpumix.api import ApiSettings, create_app
    from gpumix.api.server import start_api_server
    from gpumix.operator.api_source import PlannerSource

    port = operator_config.api_port
    assert port is not None
    settings = ApiSettings(whatif_time_limit_seconds=operator_config.api_whatif_time_limit_seconds)
    app = create_app(PlannerSource(planner), settings)
    try:
        server = start_api_server(app, port)
    except OSError as error:
        # A taken port will not free itself: stop with the reason, not a retry loop.
        raise kopf.PermanentError(f"cannot serve the plan API on port {port}: {error}") from error
    logger.info("serving the plan API on port %d at /api/v1/", server.port)
    return server


def build_registry(operator_config: OperatorConfig) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    indexes.register(registry)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A fresh registry has none of kopf's default login handlers: in-cluster service
        # account first, then $KUBECONFIG / ~/.kube/config (both read at call time).
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def start_planner(
        settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any
    ) -> None:
        configure_kopf(settings, operator_config)
        api_client = await asyncio.to_thread(make_api_client)
        memo.api_client = api_client
        # kopf passes its (still empty, live-updating) indices to startup handlers by name.
        live_indices = {name: kwargs[name] for name in indexes.INDEX_NAMES if name in kwargs}
        metrics: OperatorMetrics | None = None
        port = operator_config.metrics_port
        if port is not None:
            try:
                server = await asyncio.to_thread(start_metrics_server, port)
            except OSError as error:
                # A taken port will not free itself: stop with the reason, not a retry loop.
                raise kopf.PermanentError(
                    f"cannot serve metrics on port {port}: {error}"
                ) from error
            memo.metrics_server = server
            metrics = server.metrics
            logger.info("serving Prometheus metrics on port %d at /metrics", server.port)
        planner = FleetPlanner(operator_config, Kube(api_client), live_indices, metrics=metrics)
        memo.planner = planner
        if operator_config.api_port is not None:
            memo.api_server = await asyncio.to_thread(start_plan_api, operator_config, planner)
        memo.planner_task = asyncio.create_task(planner.run(), name="gpumix-planner")

    @kopf.on.cleanup(registry=registry)
    async def stop_planner(memo: kopf.Memo, **_: Any) -> None:
        task: asyncio.Task[None] | None = getattr(memo, "planner_task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        api_client = getattr(memo, "api_client", None)
        if api_client is not None:
            await asyncio.to_thread(api_client.close)
        server: MetricsServer | None = getattr(memo, "metrics_server", None)
        if server is not None:
            await asyncio.to_thread(server.stop)
        api_server: ApiServer | None = getattr(memo, "api_server", None)
        if api_server is not None:
            await asyncio.to_thread(api_server.stop)

    @kopf.on.probe(id="planner", registry=registry)
    def planner_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
        # Liveness: the planner task must be alive; the rest is for humans.
        task: asyncio.Task[None] | None = getattr(memo, "planner_task", None)
        if task is None or task.done():
            raise kopf.PermanentError("the planner task is not running")
        planner = _planner(memo)
        return {"solves": planner.state.solves if planner else 0}

    # Everything that can change a plan or a status wakes the planner. Handlers run only once
    # kopf has populated every index, which is what the planner waits for before its first pass.

    @kopf.on.event(GROUP, VERSION, "llmservices", registry=registry)
    def llmservice_changed(memo: kopf.Memo, **_: Any) -> None:
        _wake(memo)

    @kopf.on.event(GROUP, VERSION, "gpupools", registry=registry)
    def gpupool_changed(memo: kopf.Memo, **_: Any) -> None:
        _wake(memo)

    # Only GPU nodes and foreign GPU pods matter; every other Node and Pod event of a large
    # cluster would cost a pass (two LISTs per LLMService) for nothing.
    @kopf.on.event("", "v1", "nodes", when=GPUNodeFilter(), registry=registry)
    def node_changed(memo: kopf.Memo, **_: Any) -> None:
        _wake(memo)

    @kopf.on.event("", "v1", "pods", when=foreign_gpu_pod, registry=registry)
    def foreign_pod_changed(memo: kopf.Memo, **_: Any) -> None:
        _wake(memo)

    @kopf.on.event(
        "apps", "v1", "deployments", labels={LABEL_MANAGED_BY: MANAGED_BY}, registry=registry
    )
    def child_deployment_changed(memo: kopf.Memo, **_: Any) -> None:
        # Ready replicas go to the owner's status; readiness also ends a migration.
        _wake(memo)

    return registry


def run(operator_config: OperatorConfig) -> None:
    """Run the operator until interrupted (kopf handles SIGINT/SIGTERM)."""
    registry = build_registry(operator_config)
    settings = kopf.OperatorSettings()
    configure_kopf(settings, operator_config)
    kopf.configure(verbose=operator_config.verbose)
    if not operator_config.verbose:
        # kopf logs "Handler ... succeeded" at INFO for every Node and Pod event; on a real
        # fleet that buries gpumix's own plan and apply lines. Warnings and errors still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        registry=registry,
        settings=settings,
        standalone=operator_config.peering is None,
        peering_name=operator_config.peering,
        clusterwide=operator_config.clusterwide,
        namespaces=operator_config.namespaces,
        liveness_endpoint=operator_config.liveness_endpoint,
    )
