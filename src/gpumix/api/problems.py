"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns, FastAPI's own included (unknown path, wrong method, a body that
does not validate), goes through here, so a client needs one parser. A validation problem names
the field the way a user wrote it in YAML (``prices[0].pricePerGPUHour``), not pydantic's
location tuple.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpumix.resources.loader import field_path

PROBLEM_JSON = "application/problem+json"
# The problem types are relative references: the API has no public documentation site to
# point at, and RFC 9457 allows a type that does not dereference.
TYPE_PREFIX = "/api/v1/problems/"


class Problem(Exception):
    """Raised by a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: Sequence[dict[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.errors = list(errors)
        self.headers = headers


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    kind: str | None = None,
    errors: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    title = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + (kind or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = list(errors)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def body_field(location: Sequence[int | str]) -> str:
    """pydantic's location of a body error as the path a user wrote: drops the leading
    ``body`` and the names of pydantic's internal validators."""
    parts = list(location)
    if parts and parts[0] == "body":
        parts = parts[1:]
    return field_path(parts) or "body"


def validation_errors(error: RequestValidationError) -> list[dict[str, str]]:
    found = []
    for detail in error.errors():
        message = str(detail.get("msg", "invalid")).removeprefix("Value error, ")
        found.append({"field": body_field(tuple(detail.get("loc", ()))), "message": message})
    return found


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with problem JSON."""

    async def on_problem(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, Problem)
        return problem_response(
            error.status,
            error.detail,
            instance=request.url.path,
            kind=error.kind,
            errors=error.errors,
            headers=error.headers,
        )

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = validation_errors(error)
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return problem_response(
            422,
            f"{first['field']}: {first['message']}",
            instance=request.url.path,
            kind="invalid-body",
            errors=errors,
        )

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        return problem_response(
            error.status_code,
            str(error.detail),
            instance=request.url.path,
            headers=dict(error.headers or {}),
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
