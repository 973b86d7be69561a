"""docs/api.md lists the scope of every route and RPC exactly as the table the doors read."""

from __future__ import annotations

import re
from pathlib import Path

from muster.identity.scopes import GRPC_METHODS, HTTP_ROUTES, METRICS

API_DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def _documented(text: str) -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z]+ /[^`]*|/[^`]+)` \| (.+?) \|$", text, re.M)
    return {name: scope.strip() for name, scope in rows}


def _expected(scope: str | None) -> str:
    if scope is None:
        return "open"
    if scope == METRICS:
        return "open (admin with `--metrics-auth`)"
    return f"`{scope}`"


def test_api_doc_lists_every_route_and_rpc_with_its_scope() -> None:
    """Each HTTP route and gRPC method appears once in docs/api.md with the scope the doors enforce."""
    text = API_DOC.read_text()
    section = text.split("### The scope of every route and RPC", 1)[1].split("\n## ", 1)[0]
    documented = _documented(section)
    expected = {f"{method} {path}": _expected(scope) for (method, path), scope in HTTP_ROUTES.items()}
    expected |= {method: _expected(scope) for method, scope in GRPC_METHODS.items()}
    assert expected == {name: documented.get(name) for name in expected}
