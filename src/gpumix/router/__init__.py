"""``gpumix router``: the class-aware, OpenAI-compatible proxy in front of one LLMService.

Paths: ``POST /v1/completions``, ``POST /v1/chat/completions``, ``GET /v1/models`` (passed to
the least busy Ready pod), ``GET /health`` (503 until the first sync with the API, then 200
with the number of Ready pods) and ``GET /metrics`` (:mod:`gpumix.router.metrics`).

One request's way through (each step in its own module):

1. class (:mod:`~gpumix.router.classify`): the ``x-gpumix-class`` header (an unknown name is a
   400), else estimated from the prompt (about 4 characters per token, token-id prompts counted
   exactly) and ``max_tokens`` (default 256), nearest class in log space;
2. configuration and pod (:mod:`~gpumix.router.choose`): drawn by ``status.plan[].assignment``
   among configurations with a Ready pod, then the pod with the fewest requests in flight;
   ``spec.routing.mode: RoundRobin`` cycles over all Ready pods instead;
3. forwarding (:mod:`~gpumix.router.proxy`): unbuffered streaming, the backend's status and
   body passed on, up to two retries on other pods for a refused or reset connection, 503 with
   ``Retry-After`` when no pod is Ready, upstream closed when the client hangs up.

What the router knows is a :class:`~gpumix.router.table.RoutingTable` held by a
:class:`~gpumix.router.table.RouterState`; the :class:`~gpumix.router.watcher.Watcher` keeps
it current from the Kubernetes API (pods by label, the LLMService's spec and status), and tests
give the proxy a fixed table instead.

Running a router inside another asyncio program (the dev cluster's pod runner)::

    from gpumix.router import RouterSettings, serve_router

    handle = await serve_router(RouterSettings(namespace="team-a", service="chat",
                                               kubeconfig="/path/kubeconfig"),
                                host="127.0.0.5", port=8000)
    ...                       # handle.port is the bound port (pass port=0 for a free one)
    await handle.stop()       # graceful: stops accepting, lets requests finish (5 s at most)

``serve_router`` returns once the socket accepts connections; it binds the socket itself, so a
port in use raises ``OSError`` (never ``SystemExit``), and it installs no signal handlers.
Pass ``state=RouterState(table, synced=True)`` to route by a fixed table without the API.
Settings from flags and ``GPUMIX_ROUTER_*`` variables: :mod:`gpumix.router.settings`.
"""

from gpumix.router.server import RouterHandle, create_app, serve_router
from gpumix.router.settings import ListenAddress, RouterSettings, resolve_settings
from gpumix.router.table import PlanEntry, RequestClass, RouterState, RoutingMode, RoutingTable

__all__ = [
    "ListenAddress",
    "PlanEntry",
    "RequestClass",
    "RouterHandle",
    "RouterSettings",
    "RouterState",
    "RoutingMode",
    "RoutingTable",
    "create_app",
    "resolve_settings",
    "serve_router",
]
