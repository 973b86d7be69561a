"""TLS plumbing the libraries leave to us: the client certificate's CN in the ASGI scope."""

from __future__ import annotations

from typing import Any

from muster.http.protocol import _Guarded
from muster.identity.doors import client_cn_from_ssl_object

__all__ = ["ClientCertProtocol"]


class ClientCertProtocol(_Guarded):
    """uvicorn's HTTP/1.1 protocol, adding ``extensions.tls.client_cert_cn`` to every request's scope.

    asyncio hands the connection over only after the TLS handshake, so the
    peer's (already verified) certificate is known when the connection is made.
    """

    client_cert_cn: str | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.client_cert_cn = client_cn_from_ssl_object(transport.get_extra_info("ssl_object"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": {"client_cert_cn": self.client_cert_cn}}
