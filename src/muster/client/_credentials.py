"""What a client presents to Muster: a bearer token and, over TLS, the CA and a client certificate.

The token comes from, in order: the ``token`` argument, the ``token_file``
argument, ``MUSTER_TOKEN``, ``MUSTER_TOKEN_FILE``. Over gRPC it travels as the
metadata ``authorization: Bearer <token>`` on every call (also on a plaintext
loopback channel, where gRPC's own call credentials would refuse to send it).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

__all__ = ["Credentials"]


@dataclass(frozen=True, slots=True)
class Credentials:
    token: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def resolve(
        cls,
        *,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
    ) -> Credentials:
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file go together: give both, or neither")
        if token is None and token_file is None:
            token = os.environ.get("MUSTER_TOKEN") or None
            token_file = os.environ.get("MUSTER_TOKEN_FILE") or None if token is None else None
        if token is None and token_file is not None:
            token = Path(token_file).read_text().strip()
        return cls(
            token=token.strip() if token else None,
            ca_file=str(ca_file) if ca_file is not None else None,
            cert_file=str(cert_file) if cert_file is not None else None,
            key_file=str(key_file) if key_file is not None else None,
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def grpc_channel(self, target: str, *, secure: bool, options: list[tuple[str, Any]] | None = None) -> Any:
        """A grpc.aio channel to ``target`` carrying these credentials (TLS when ``secure``)."""
        interceptors = _metadata_interceptors(self.metadata) if self.token else None
        if not secure:
            return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
        root = Path(self.ca_file).read_bytes() if self.ca_file else None
        key = Path(self.key_file).read_bytes() if self.key_file else None
        chain = Path(self.cert_file).read_bytes() if self.cert_file else None
        credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
        return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)

    def httpx_options(self) -> dict[str, Any]:
        """``verify`` and ``cert`` for an httpx client (the system's CAs unless ``ca_file``)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return {"verify": context, "headers": self.headers}


def _with_metadata(details: Any, extra: tuple[tuple[str, str], ...]) -> Any:
    metadata = grpc.aio.Metadata(*extra)
    for key, value in details.metadata or ():
        metadata.add(key, value)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def _metadata_interceptors(extra: tuple[tuple[str, str], ...]) -> list[Any]:
    class UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return await continuation(_with_metadata(details, extra), request)

    class UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
        async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            return await continuation(_with_metadata(details, extra), request)

    class StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
        async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
            return await continuation(_with_metadata(details, extra), request_iterator)

    class StreamStream(grpc.aio.StreamStreamClientInterceptor):
        async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
            return await continuation(_with_metadata(details, extra), request_iterator)

    return [UnaryUnary(), UnaryStream(), StreamUnary(), StreamStream()]
