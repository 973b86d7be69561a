"""The gRPC door: one grpc.aio server with every context's servicer, health and reflection."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from muster._proto.muster.v1 import catalog_pb2, catalog_pb2_grpc, events_pb2, events_pb2_grpc
from muster.catalog.grpc import CatalogServicer
from muster.config import Settings
from muster.grpc.events import EventsServicer
from muster.grpc.guard import DoorInterceptor
from muster.identity.scopes import GRPC_METHODS
from muster.limits import RateLimiter, grpc_checks
from muster.runtime import Runtime

__all__ = ["GrpcDoor"]

_OPTIONS = [
    # A second server must fail to bind, not silently share the port.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ("grpc.keepalive_permit_without_calls", 1),
    # Metadata up to 32 KiB reaches Muster (gRPC's default is 8 KiB), so an oversized token is
    # refused by Muster as UNAUTHENTICATED, in its words, not as a transport-level error.
    ("grpc.max_metadata_size", 32 * 1024),
    # An idle client connection (no call for 5 minutes) is closed; clients reconnect on their next call.
    ("grpc.max_connection_idle_ms", 300_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    """TLS for the gRPC door; with a client CA, client certificates are required (mTLS)."""
    assert settings.tls_cert is not None and settings.tls_key is not None
    pair = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
    ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca is not None else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


class GrpcDoor:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self._health = health.aio.HealthServicer()
        self._readiness_task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        settings = self.runtime.settings
        limiter = RateLimiter({"write": settings.rate_limit_writes, "expensive": settings.rate_limit_expensive})
        writes = frozenset(
            method for method, scope in GRPC_METHODS.items()
            if scope is not None and (scope.endswith(":write") or scope == "admin")
        )
        checks = grpc_checks(limiter, writes, settings.auth)
        # Undecodable requests: INVALID_ARGUMENT, never UNKNOWN; then auth (when on), then rate limits.
        guard = DoorInterceptor(check_for=checks)
        if settings.auth:
            from muster.identity.doors import Authorizer, grpc_admission

            authorizer = Authorizer(
                self.runtime.contexts["identity"], enabled=True, principal_from_cn=settings.tls_principal_from_cn
            )
            guard = DoorInterceptor(grpc_admission(authorizer), checks)
        server = grpc.aio.server(options=_OPTIONS, interceptors=[guard])
        catalog = CatalogServicer(self.runtime.catalog, stream_messages_per_s=settings.heartbeat_stream_messages_per_s)
        catalog_pb2_grpc.add_CatalogServicer_to_server(catalog, server)
        events_pb2_grpc.add_EventsServicer_to_server(EventsServicer(self.runtime.hub), server)
        names: list[str] = [
            catalog_pb2.DESCRIPTOR.services_by_name["Catalog"].full_name,
            events_pb2.DESCRIPTOR.services_by_name["Events"].full_name,
        ]
        for context in self.runtime.contexts.values():
            add = getattr(context, "add_grpc", None)
            if add is not None:
                names.extend(add(server))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names.append(health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
        address = f"{host}:{port}"
        if settings.tls:
            self.port = server.add_secure_port(address, server_credentials(settings))
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind gRPC to {host}:{port}")
        await server.start()
        self.server = server
        self._service_names = names
        await self._set_health()
        self._readiness_task = asyncio.create_task(self._follow_readiness(), name="muster-grpc-health")
        return self.port

    async def _set_health(self) -> None:
        ok, _ = await self.runtime.readiness()
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self._service_names):
            await self._health.set(name, status)

    async def _follow_readiness(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            with contextlib.suppress(Exception):
                await self._set_health()

    async def stop(self, grace: float) -> None:
        if self._readiness_task is not None:
            self._readiness_task.cancel()
        if self.server is not None:
            await self._health.enter_graceful_shutdown()
            await self.server.stop(grace)


