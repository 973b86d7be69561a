"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc``, served with no internet.

FastAPI's own pages load their scripts from a CDN, so on an offline machine
they are blank. Here the scripts and styles come from the ``fastapi-offline``
distribution, installed with Muster, and are served from ``/docs/assets/``.
Only the files named below are served: the path parameter never reaches the
file system.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import FileResponse, HTMLResponse

from muster.errors import NotFound

__all__ = ["ASSETS", "router"]

_STATIC = Path(fastapi_offline.__file__).parent / "static"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


def router(title: str, openapi_url: str = "/openapi.json") -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    @pages.get("/docs")
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title}: API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png",
        )

    @pages.get("/docs/oauth2-redirect")
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @pages.get("/redoc")
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title}: API",
            redoc_js_url="/docs/assets/redoc.standalone.js",
            redoc_favicon_url="/docs/assets/favicon.png",
            with_google_fonts=False,
        )

    @pages.get("/docs/assets/{name}")
    async def asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"no such documentation asset: {name[:100]}")
        return FileResponse(_STATIC / name, media_type=media_type, headers={"cache-control": "max-age=86400"})

    return pages
