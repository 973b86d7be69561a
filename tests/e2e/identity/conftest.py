"""Servers with auth on, on both engines, and a token per scope."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from muster.identity.model import SCOPES
from tests.conftest import ServerProcess, server_database


@dataclass
class AuthServer:
    server: ServerProcess
    admin: str
    # scope -> the secret of a token holding only that scope
    tokens: dict[str, str] = field(default_factory=dict)
    # With TLS: the base URL and httpx options (the CA, the client certificate).
    base_url: str = ""
    httpx_options: dict[str, Any] = field(default_factory=dict)

    def make_token(self, name: str, scopes: list[str], **extra: Any) -> str:
        reply = httpx.post(
            f"{self.base_url or self.server.http_url}/tokens",
            **self.httpx_options,
            json={"name": name, "scopes": scopes, **extra},
            headers={"authorization": f"Bearer {self.admin}"},
        )
        assert reply.status_code == 201, reply.text
        return str(reply.json()["token"])


def start_auth_server(
    data_dir: Path,
    database_url: str | None,
    extra_args: list[str] | None = None,
    *,
    https: tuple[Path, Path, Path] | None = None,
) -> AuthServer:
    """A server with ``--auth``; with ``https`` (CA, client certificate, key), reached over mTLS."""
    server = ServerProcess(data_dir=data_dir, database_url=database_url, extra_args=["--auth", *(extra_args or [])])
    server.start()
    admin = (data_dir / "admin.token").read_text().strip()
    auth = AuthServer(server, admin)
    if https is not None:
        context = ssl.create_default_context(cafile=str(https[0]))
        context.load_cert_chain(str(https[1]), str(https[2]))
        auth.base_url = f"https://127.0.0.1:{server.http_port}"
        auth.httpx_options = {"verify": context}
        return auth
    for scope in SCOPES:
        auth.tokens[scope] = auth.make_token("only-" + scope.replace(":", "-"), [scope])
    return auth


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def auth_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A ``muster serve --auth`` (split doors) on each engine, with one token per scope."""
    tmp = tmp_path_factory.mktemp(f"auth-{request.param}")
    with contextlib.ExitStack() as stack:
        auth = start_auth_server(tmp / "data", server_database(request.param, tmp, stack))
        stack.callback(auth.server.stop)
        yield auth
