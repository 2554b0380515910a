"""Operator configuration (from `gpumix operator` flags and its configuration file) and kopf's
settings derived from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import kopf

from gpumix.operator.inventory import InventorySettings
from gpumix.operator.router_manifests import RouterOptions
from gpumix.solver import Backend

PREFIX = "gpumix.io"
FINALIZER = f"{PREFIX}/finalizer"
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
# Seconds between kopf's attempts at one API request while the server is unreachable.
API_RETRY_BACKOFFS = (0.5, 1.0) + (2.0,) * 30


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    liveness_endpoint: str | None = DEFAULT_LIVENESS
    peering: str | None = None  # None: standalone, no peering objects
    planner_interval_seconds: float = 60.0
    debounce_seconds: float = 1.0
    solver_time_limit_seconds: float = 30.0
    solver_backend: Backend = Backend.HIGHS
    migration_timeout_seconds: float = 600.0
    verbose: bool = False
    # Default prices and discovery label keys (the configuration file's pricing and discovery).
    inventory: InventorySettings = field(default_factory=InventorySettings)
    metrics_port: int | None = None  # None: no /metrics endpoint
    api_port: int | None = None  # None: no plan/what-if API (the default)
    api_whatif_time_limit_seconds: float = 10.0
    # The image and replicas of every LLMService's router (the configuration file's router).
    router: RouterOptions = field(default_factory=RouterOptions)
    # Observed load for autoscaling LLMServices (the configuration file's prometheus).
    prometheus_url: str | None = None
    prometheus_interval_seconds: float = 15.0
    prometheus_timeout_seconds: float = 5.0
    # Capacity factors from live latencies (the configuration file's calibration.enabled).
    calibration_enabled: bool = True

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def configure_kopf(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf's bookkeeping under gpumix.io, in annotations only.

    The CRD status schemas are structural without ``x-kubernetes-preserve-unknown-fields``, so
    the API server would prune ``status.kopf``; progress and diff-base go to annotations.
    (gpumix registers no change handlers, so kopf normally writes nothing at all; this keeps it
    that way if one is ever added.)
    """
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # Kubernetes Events about kopf's own handlers are noise next to gpumix's PlanChanged events.
    settings.posting.level = 40  # logging.ERROR
    settings.watching.server_timeout = 300
    # kopf's default schedule waits up to 21 s between attempts, so a watch came back up to
    # 21 s after the API server did (11 s measured after a 75 s outage). Retrying every 2 s
    # for about a minute bounds that; a watch that gives up is restarted by kopf anyway.
    settings.networking.error_backoffs = API_RETRY_BACKOFFS
    settings.watching.client_timeout = 330
    if config.peering is None:
        settings.peering.standalone = True
    else:
        settings.peering.standalone = False
        settings.peering.name = config.peering
