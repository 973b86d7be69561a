"""Identity as a Muster plug-in: the token service and its two doors' routes.

``runtime.contexts["identity"]`` is this object. The doors' gatekeepers (the
ASGI middleware and the gRPC interceptor in :mod:`muster.identity.doors`) are
installed by the composition root, which knows whether auth is on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from muster.identity.service import IdentityService

__all__ = ["IdentityContext", "build"]


class IdentityContext(IdentityService):
    name = "identity"

    def http_router(self) -> APIRouter:
        from muster.identity.http import router

        return router(self)

    def add_grpc(self, server: Any) -> list[str]:
        from muster._proto.muster.v1 import identity_pb2_grpc
        from muster.identity.grpc import SERVICE_NAME, TokensServicer

        identity_pb2_grpc.add_TokensServicer_to_server(TokensServicer(self), server)
        return [SERVICE_NAME]


def build(runtime: Any) -> IdentityContext:
    return IdentityContext(runtime.store, runtime.hub, runtime.clock)
