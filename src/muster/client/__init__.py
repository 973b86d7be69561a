"""Muster's async Python client.

    client = await MusterClient.connect("grpc://127.0.0.1:9090")   # or "http://127.0.0.1:8080"
    async with client:
        reply = await client.register(name="ranker", type="model", url="http://10.0.0.5:8000", caps=["rank"])
        best = await client.discover(cap=["rank"])

Inputs are validated before they leave the process (the same models the
server uses), and server errors come back as the same ``MusterError``
subclasses whichever transport carried them. A closed client refuses reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import structlog

from muster._tasks import cancel_and_wait
from muster.catalog.model import (
    AlertRecord,
    DeregisterInput,
    DiscoverQuery,
    HeartbeatInput,
    PromoteInput,
    RegisterInput,
    ServiceRecord,
)
from muster.catalog.service import BeatAck, Registered, Stats
from muster.client._credentials import Credentials
from muster.client._transport import GrpcTransport, HttpTransport, Transport, grpc_error
from muster.client.graph import GraphClient
from muster.client.srm import SRMClient
from muster.errors import Invalid, MusterError, NotFound, Unavailable, error_from_code
from muster.events.hub import Event
from muster.validation import parse

__all__ = ["HeartbeatStream", "KeepAlive", "MusterClient", "SRMClient"]

log = structlog.get_logger("muster.client")


class MusterClient:
    """One method per catalog operation, over gRPC or HTTP."""

    def __init__(self, transport: Transport, url: str) -> None:
        self._transport = transport
        self.url = url
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        rpc_timeout: float = 10.0,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
    ) -> MusterClient:
        """``grpc://host:port`` (or ``host:port``) or ``grpcs://`` for gRPC, ``http(s)://host:port`` for HTTP.

        ``token`` (else ``token_file``, else ``$MUSTER_TOKEN``, else ``$MUSTER_TOKEN_FILE``) is sent
        as a bearer token on every call. Over TLS (``grpcs://``, ``https://``), ``ca_file`` is the CA
        that signed the server's certificate (default: the system's), and ``cert_file`` with
        ``key_file`` the client certificate a server with ``--tls-client-ca`` requires.
        """
        credentials = Credentials.resolve(
            token=token, token_file=token_file, ca_file=ca_file, cert_file=cert_file, key_file=key_file
        )
        transport: Transport
        if url.startswith(("http://", "https://")):
            transport = HttpTransport(url.rstrip("/"), rpc_timeout, credentials)
        elif url.startswith("grpcs://"):
            transport = GrpcTransport(url.removeprefix("grpcs://"), rpc_timeout, credentials, secure=True)
        else:
            transport = GrpcTransport(url.removeprefix("grpc://"), rpc_timeout, credentials)
        return cls(transport, url)

    @property
    def transport_name(self) -> str:
        return "grpc" if isinstance(self._transport, GrpcTransport) else "http"

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._transport.close()

    def _check_open(self) -> Transport:
        if self._closed:
            raise RuntimeError("this MusterClient is closed; connect a new one")
        return self._transport

    @property
    def graph(self) -> GraphClient:
        """The dependency graph's operations (``muster.v1.Graph`` / ``/graph``) over this client's transport."""
        return GraphClient(self)

    # -- identity (admin) ------------------------------------------------------------------

    async def create_token(self, name: str, scopes: list[str], *, expires: str | None = None) -> dict[str, Any]:
        """Make a token; the reply's ``token`` is its secret, shown this once."""
        return await self._check_open().create_token(name, list(scopes), expires)

    async def list_tokens(self) -> list[dict[str, Any]]:
        return await self._check_open().list_tokens()

    async def revoke_token(self, name: str) -> dict[str, Any]:
        return await self._check_open().revoke_token(name)

    # -- catalog -----------------------------------------------------------------------

    async def register(
        self,
        *,
        name: str,
        type: str,
        url: str,
        role: str = "experimental",
        caps: list[str] | tuple[str, ...] = (),
        labels: dict[str, str] | None = None,
        ctx_limit: int | None = None,
        cost_hint_usd_per_1k: float | None = None,
        heartbeat_interval_s: int = 60,
        ttl_s: int = 90,
        instance_id: str | None = None,
    ) -> Registered:
        """Register a service instance.

        With ``instance_id`` (your own stable id for this instance, e.g. ``host:port`` or a pod name;
        unique per ``name``), registering again, say after a restart, updates that instance and
        returns the same ``service_id`` instead of listing it twice. Without one, every call makes
        a new instance.
        """
        data = parse(
            RegisterInput,
            {
                "name": name, "type": type, "url": url, "role": role, "caps": list(caps),
                "labels": labels or {}, "ctx_limit": ctx_limit, "cost_hint_usd_per_1k": cost_hint_usd_per_1k,
                "heartbeat_interval_s": heartbeat_interval_s, "ttl_s": ttl_s, "instance_id": instance_id,
            },
        )
        return await self._check_open().register(data)

    async def heartbeat(
        self,
        service_id: str,
        *,
        status: str = "ok",
        p95_ms: float | None = None,
        queue_depth: int | None = None,
        load: float | None = None,
    ) -> BeatAck:
        beat = parse(
            HeartbeatInput,
            {"service_id": service_id, "status": status, "p95_ms": p95_ms, "queue_depth": queue_depth, "load": load},
        )
        return await self._check_open().heartbeat(beat)

    async def discover(
        self,
        *,
        name: str | None = None,
        type: str | None = None,
        role: str | None = None,
        cap: list[str] | tuple[str, ...] = (),
        label: list[str] | tuple[str, ...] = (),
        status: str | None = None,
        limit: int = 100,
    ) -> list[ServiceRecord]:
        query = parse(
            DiscoverQuery,
            {"name": name, "type": type, "role": role, "cap": list(cap), "label": list(label),
             "status": status, "limit": limit},
        )
        return await self._check_open().discover(query)

    async def promote(self, service_id: str, role: str) -> ServiceRecord:
        return await self._check_open().promote(parse(PromoteInput, {"service_id": service_id, "role": role}))

    async def deregister(self, service_id: str) -> None:
        await self._check_open().deregister(parse(DeregisterInput, {"service_id": service_id}))

    async def list_services(
        self, *, status: str | None = None, limit: int = 1000, offset: int = 0
    ) -> list[ServiceRecord]:
        if status is not None and status not in ("ok", "degraded", "down"):
            raise Invalid("status", "must be one of ok, degraded, down")
        return await self._check_open().list_services(status, limit, offset)

    async def get_service(self, service_id: str) -> ServiceRecord:
        if not service_id:
            raise Invalid("service_id", "must not be empty")
        return await self._check_open().get_service(service_id)

    async def stats(self) -> Stats:
        return await self._check_open().stats()

    async def alerts(self, *, limit: int = 100, since: datetime | None = None) -> list[AlertRecord]:
        if not 1 <= limit <= 1000:
            raise Invalid("limit", "must be between 1 and 1000")
        if since is not None and since.utcoffset() is None:  # as the HTTP door rules; gRPC would guess
            raise Invalid("since", "must carry a UTC offset, e.g. datetime(2026, 1, 1, tzinfo=UTC)")
        return await self._check_open().alerts(limit, since)

    # -- events -------------------------------------------------------------------------

    def watch(
        self, *, since: int | None = None, kind_prefix: str = "", subject_prefix: str = ""
    ) -> AsyncIterator[Event]:
        """Events after ``since`` (None: from now on), then live ones; resume with the last revision seen."""
        return self._check_open().watch(since, kind_prefix, subject_prefix)

    # -- many heartbeats over one stream ------------------------------------------------------

    def heartbeat_stream(self) -> HeartbeatStream:
        """One gRPC stream for many beats (HTTP clients fall back to one request per beat)."""
        return HeartbeatStream(self)


class HeartbeatStream:
    """``async with client.heartbeat_stream() as beats: ack = await beats.send(service_id)``.

    Beats and acknowledgements travel in order over one gRPC stream; a beat for
    an unknown service raises ``NotFound`` without closing the stream.
    """

    def __init__(self, client: MusterClient) -> None:
        self._client = client
        self._call: Any = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        transport = self._client._check_open()
        if isinstance(transport, GrpcTransport):
            self._call = transport.heartbeat_stream()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._call is not None:
            with contextlib.suppress(Exception):
                await self._call.done_writing()
            self._call.cancel()

    async def send(self, service_id: str, **metrics: Any) -> BeatAck:
        """One beat; raises ``NotFound`` if the server no longer knows ``service_id`` (register again),
        or the error the beat failed with."""
        result = (await self.send_many([{"service_id": service_id, **metrics}]))[0]
        if isinstance(result, MusterError):
            raise result
        return result

    async def send_many(self, beats: list[dict[str, Any]]) -> list[BeatAck | MusterError]:
        """Many beats in one message; each result is an ack or that beat's error (``NotFound``: register
        again; ``Unavailable``: beat again later)."""
        inputs = [parse(HeartbeatInput, beat) for beat in beats]
        if not inputs:
            return []
        if self._call is None:
            results: list[BeatAck | MusterError] = []
            for beat in inputs:
                try:
                    results.append(await self._client._check_open().heartbeat(beat))
                except MusterError as exc:
                    results.append(exc)
            return results
        import grpc

        from muster._proto.muster.v1 import catalog_pb2 as pb
        from muster.client._transport import _beat_request

        async with self._lock:  # one outstanding message keeps replies matched to requests
            try:
                await self._call.write(pb.HeartbeatBatch(beats=[_beat_request(b) for b in inputs]))
                reply = await self._call.read()
            except grpc.aio.AioRpcError as exc:
                raise grpc_error(exc) from None
        if reply is grpc.aio.EOF:
            raise Unavailable("heartbeat stream closed by the server")
        return [_stream_result(r) for r in reply.replies]


class KeepAlive:
    """Register, heartbeat in the background, re-register after a 404, deregister on exit.

        async with KeepAlive(client, name="ranker", type="model", url="http://10.0.0.5:8000") as alive:
            print(alive.service_id)

    ``metrics`` (optional) is called before each beat and returns the beat's
    ``status``/``p95_ms``/``queue_depth``/``load``. ``on_registered`` is called
    with each new service id (the first, and after every re-registration).

    ``instance_id`` (optional, like every other registration field) is passed to
    each registration: a process that dies without deregistering and starts
    again with the same ``instance_id`` takes over its previous instance (same
    ``service_id``) instead of showing up twice until the old one expires.
    """

    def __init__(
        self,
        client: MusterClient,
        *,
        metrics: Callable[[], dict[str, Any]] | None = None,
        on_registered: Callable[[str], None] | None = None,
        beat_every: float | None = None,
        instance_id: str | None = None,
        **registration: Any,
    ) -> None:
        self.client = client
        self.registration = registration
        if instance_id is not None:
            registration["instance_id"] = instance_id
        self.instance_id = instance_id
        self.metrics = metrics
        self.on_registered = on_registered
        interval = float(registration.get("heartbeat_interval_s", 60))
        self.beat_every = beat_every if beat_every is not None else interval
        self.service_id: str | None = None
        self.registrations = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._register()
        self._task = asyncio.create_task(self._run(), name="muster-keepalive")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self.service_id is not None:
            with contextlib.suppress(MusterError, RuntimeError):
                await self.client.deregister(self.service_id)

    async def _register(self) -> None:
        registered = await self.client.register(**self.registration)
        self.service_id = registered.service_id
        self.registrations += 1
        if self.on_registered is not None:
            self.on_registered(registered.service_id)

    async def beat(self) -> None:
        """Send one heartbeat now (re-registering if the server no longer knows us)."""
        assert self.service_id is not None
        try:
            await self.client.heartbeat(self.service_id, **(self.metrics() if self.metrics else {}))
        except NotFound:
            log.info("keepalive.reregistering", old_service_id=self.service_id)
            await self._register()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            await asyncio.sleep(self.beat_every)
            try:
                await self.beat()
                backoff = 0.5
            except (Unavailable, MusterError) as exc:
                log.warning("keepalive.beat_failed", error=str(exc))
                await asyncio.sleep(min(backoff, self.beat_every))
                backoff *= 2


def _stream_result(reply: Any) -> Any:
    """One beat's result from HeartbeatStream: the ack, or the error it failed with (NotFound: register again)."""
    from muster.client._convert import ack_from_message

    if reply.error_code and reply.error_code != "not_found":
        return error_from_code(reply.error_code, reply.error, reply.error_field or None)
    if not reply.found:
        return NotFound(reply.error or f"service {reply.service_id} is not registered", field="service_id")
    return ack_from_message(reply)
