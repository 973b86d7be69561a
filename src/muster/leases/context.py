"""The leases context as a Muster plug-in: the service plus its two doors.

``runtime.contexts["leases"]`` is this object, so other code calls the
service's operations on it directly (``await runtime.contexts["leases"].reserve(...)``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from muster.leases.service import LeasesService

__all__ = ["LeasesContext", "build"]


class LeasesContext(LeasesService):
    """The symbol registry (SRM), pluggable into ``muster serve``."""

    name = "leases"

    def http_router(self) -> APIRouter:
        from muster.leases.http import router

        return router(self)

    def add_grpc(self, server: Any) -> list[str]:
        from muster._proto.srm import symbol_pb2_grpc
        from muster.leases.grpc import SERVICE_NAME, SymbolRegistryServicer

        symbol_pb2_grpc.add_SymbolRegistryServicer_to_server(SymbolRegistryServicer(self), server)
        return [SERVICE_NAME]


def build(runtime: Any) -> LeasesContext:
    return LeasesContext(runtime.store, runtime.hub, runtime.clock)
