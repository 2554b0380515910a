"""The plan/what-if API: ``create_app(source)``, a FastAPI app over a read-only source.

- ``GET /api/v1/fleet``: pools, their GPUs and prices, and what each service holds in each.
- ``GET /api/v1/services``, ``GET /api/v1/services/{namespace}/{name}``: plans, costs,
  baselines, conditions and the last plan changes.
- ``POST /api/v1/whatif``: plan changed live inputs with the operator's planner; nothing is
  written anywhere.
- ``GET /``: the dashboard (:mod:`gpumix.api.dashboard`), which reads the endpoints above.
- ``GET /api/v1/openapi.json``: the schema. No Swagger UI: it loads its assets from a CDN, and
  nothing the operator serves may fetch from the internet.

What-ifs run one at a time: a second one while the first solves gets a 429 with Retry-After
rather than waiting. A queue would hold HTTP connections open for up to a time limit each and
stack solves onto the operator's CPU (its own planning passes share it); a client that gets a
429 knows at once and can retry. Each runs in a worker thread with the time limit given to the
solver; if the thread has not answered by the limit plus a grace period, the caller gets a 504
(the solve still finishes in its thread, holding the what-if slot until it does, so what-ifs
never pile up behind a slow one).
"""

from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gpumix import __version__
from gpumix.api import problems
from gpumix.api.dashboard import dashboard_router
from gpumix.api.limits import DEFAULT_MAX_BODY_BYTES, BodySizeLimit
from gpumix.api.models import FleetView, ServiceList, ServiceView, WhatIfRequest, WhatIfResponse
from gpumix.api.problems import PROBLEM_JSON, Problem
from gpumix.api.source import PlanningBasis, PlanSource
from gpumix.api.whatif import run_whatif
from gpumix.errors import InputError

PREFIX = "/api/v1"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
PROBLEM_RESPONSE = {"content": {PROBLEM_JSON: {}}, "description": "RFC 9457 problem details"}


@dataclass(frozen=True)
class ApiSettings:
    whatif_time_limit_seconds: float = 10.0
    # Beyond the solver's own limit: building candidates, baselines and explanations.
    whatif_grace_seconds: float = 5.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


class WhatIfRunner:
    """One what-if at a time, in a worker thread, bounded in time."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._slot = threading.Lock()

    def time_limit(self, request: WhatIfRequest) -> float:
        ceiling = self.settings.whatif_time_limit_seconds
        asked = request.time_limit_seconds
        return ceiling if asked is None else min(asked, ceiling)

    async def run(self, basis: PlanningBasis, request: WhatIfRequest) -> WhatIfResponse:
        limit = self.time_limit(request)
        if not self._slot.acquire(blocking=False):
            raise Problem(
                429,
                "another what-if is being planned; retry when it is done",
                kind="whatif-busy",
                headers={"Retry-After": str(math.ceil(limit))},
            )

        def work() -> WhatIfResponse:
            try:
                return run_whatif(basis, request, limit)
            finally:
                self._slot.release()

        try:
            future = asyncio.ensure_future(asyncio.to_thread(work))
        except BaseException:
            self._slot.release()
            raise
        deadline = limit + self.settings.whatif_grace_seconds
        try:
            # shield: a caller that gives up does not cancel the await of a thread that
            # cannot be interrupted anyway; the slot frees itself when the thread ends.
            return await asyncio.wait_for(asyncio.shield(future), timeout=deadline)
        except TimeoutError:
            raise Problem(
                504,
                f"the what-if did not finish within {deadline:g} s "
                f"(time limit {limit:g} s plus {self.settings.whatif_grace_seconds:g} s)",
                kind="whatif-timeout",
            ) from None
        except InputError as error:
            raise Problem(
                422,
                error.one_line(),
                kind="invalid-change",
                errors=[{"field": error.field or "body", "message": error.detail}],
            ) from None


def create_app(source: PlanSource, settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    app = FastAPI(
        title="gpumix plan API",
        version=__version__,
        description="What gpumix runs on the GPU fleet, why, and what-if. Read-only.",
        openapi_url=OPENAPI_PATH,
        docs_url=None,
        redoc_url=None,
    )
    problems.install(app)
    runner = WhatIfRunner(settings)
    app.state.whatif = runner

    @app.get(f"{PREFIX}/fleet", response_model=FleetView, tags=["fleet"])
    def fleet() -> FleetView:
        return source.fleet()

    @app.get(f"{PREFIX}/services", response_model=ServiceList, tags=["services"])
    def services() -> ServiceList:
        return ServiceList(services=source.services())

    @app.get(
        f"{PREFIX}/services/{{namespace}}/{{name}}",
        response_model=ServiceView,
        tags=["services"],
        responses={404: PROBLEM_RESPONSE},
    )
    def service(namespace: str, name: str) -> ServiceView:
        for found in source.services():
            if (found.namespace, found.name) == (namespace, name):
                return found
        raise Problem(404, f"no LLMService {namespace}/{name}", kind="not-found")

    @app.post(
        f"{PREFIX}/whatif",
        response_model=WhatIfResponse,
        tags=["what-if"],
        responses={
            413: PROBLEM_RESPONSE,
            422: PROBLEM_RESPONSE,
            429: PROBLEM_RESPONSE,
            503: PROBLEM_RESPONSE,
            504: PROBLEM_RESPONSE,
        },
    )
    async def whatif(change: WhatIfRequest) -> WhatIfResponse:
        basis = await asyncio.to_thread(source.planning_basis)
        if basis is None:
            raise Problem(
                503,
                "the operator has not planned yet; retry in a few seconds",
                kind="not-planned",
                headers={"Retry-After": "5"},
            )
        return await runner.run(basis, change)

    app.include_router(dashboard_router())

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        return problems.problem_response(
            500, f"{type(error).__name__}: {error}", instance=request.url.path
        )

    app.add_exception_handler(Exception, on_unexpected)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    return app
