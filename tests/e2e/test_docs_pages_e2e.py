"""The API's documentation pages work offline: every script and style they load is served by Muster."""

from __future__ import annotations

import re

import httpx

from tests.conftest import ServerProcess


def test_docs_and_redoc_load_only_local_assets(shared_server: ServerProcess) -> None:
    """/docs and /redoc reference no other host, and every asset they reference answers 200 with its type."""
    for page in ("/docs", "/redoc"):
        html = httpx.get(shared_server.http_url + page).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html)
        referenced = {u for pair in urls for u in pair if u}
        assert referenced, f"{page} references nothing"
        assert not [u for u in referenced if "://" in u or u.startswith("//")], f"{page} loads from elsewhere"
        for url in referenced - {"/openapi.json"}:
            answer = httpx.get(shared_server.http_url + url)
            assert 200 == answer.status_code, url
            assert answer.headers["content-type"].split(";")[0] in {"text/javascript", "text/css", "image/png"}


def test_unknown_docs_asset_is_404_in_muster_shape(shared_server: ServerProcess) -> None:
    """Only the named assets are served; anything else (a path escape included) is a 404 in Muster's shape."""
    for name in ("nope.js", "..%2Fcore.py"):
        answer = httpx.get(shared_server.http_url + "/docs/assets/" + name)
        assert 404 == answer.status_code
        assert "not_found" == answer.json()["error"]
