"""The dashboard: one static page and its own script and style, served at ``/``.

The files ship inside the package (``gpumix/api/dashboard/``) and are read once, when the app
is built. The Content-Security-Policy lets the page load and call nothing but the operator's
own origin, so a browser enforces that nothing is fetched from the internet at run time.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from gpumix.api.problems import Problem

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    # The page reloads its data itself; a stale cached script after an upgrade would not.
    "Cache-Control": "no-cache",
}


def load_assets() -> dict[str, tuple[bytes, str]]:
    """name -> (content, content type) of every dashboard file."""
    folder = resources.files("gpumix.api") / "dashboard"
    assets = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in CONTENT_TYPES:
            assets[item.name] = (item.read_bytes(), CONTENT_TYPES[suffix])
    return assets


def dashboard_router() -> APIRouter:
    assets = load_assets()
    router = APIRouter(include_in_schema=False)

    def serve(name: str) -> Response:
        found = assets.get(name)
        if found is None:
            raise Problem(404, f"no dashboard file {name}", kind="not-found")
        content, media_type = found
        return Response(content, media_type=media_type, headers=SECURITY_HEADERS)

    @router.get("/")
    def index() -> Response:
        return serve("index.html")

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        return serve(name)

    return router
