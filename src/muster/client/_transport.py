"""The two transports behind ``MusterClient``: gRPC (default for speed) and HTTP.

Both take the same validated inputs and return the same domain values; both
turn server errors back into the same ``MusterError`` subclasses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import grpc
import httpx
import orjson

from muster._proto.muster.v1 import catalog_pb2 as pb
from muster._proto.muster.v1 import catalog_pb2_grpc as pb_grpc
from muster._proto.muster.v1 import events_pb2 as events_pb
from muster._proto.muster.v1 import events_pb2_grpc as events_grpc
from muster._proto.muster.v1 import identity_pb2 as identity_pb
from muster._proto.muster.v1 import identity_pb2_grpc as identity_grpc
from muster.catalog.index import record_from_dict
from muster.catalog.model import (
    AlertRecord,
    DeregisterInput,
    DiscoverQuery,
    HeartbeatInput,
    PromoteInput,
    RegisterInput,
    ServiceRecord,
)
from muster.catalog.service import BeatAck, Registered, SinkStatus, Stats
from muster.client import _convert as cv
from muster.client._credentials import Credentials
from muster.errors import (
    MusterError,
    Unavailable,
    error_for_grpc_code,
    error_for_http_status,
    trailing_metadata_of,
)
from muster.events.hub import Event
from muster.grpc.common import timestamp

__all__ = ["GrpcTransport", "HttpTransport", "Transport"]


class Transport(Protocol):
    async def close(self) -> None: ...
    async def register(self, data: RegisterInput) -> Registered: ...
    async def heartbeat(self, beat: HeartbeatInput) -> BeatAck: ...
    async def discover(self, query: DiscoverQuery) -> list[ServiceRecord]: ...
    async def promote(self, data: PromoteInput) -> ServiceRecord: ...
    async def deregister(self, data: DeregisterInput) -> None: ...
    async def list_services(self, status: str | None, limit: int, offset: int) -> list[ServiceRecord]: ...
    async def get_service(self, service_id: str) -> ServiceRecord: ...
    async def stats(self) -> Stats: ...
    async def alerts(self, limit: int, since: datetime | None) -> list[AlertRecord]: ...
    def watch(self, since: int | None, kind_prefix: str, subject_prefix: str) -> AsyncIterator[Event]: ...
    async def create_token(self, name: str, scopes: list[str], expires: str | None) -> dict[str, Any]: ...
    async def list_tokens(self) -> list[dict[str, Any]]: ...
    async def revoke_token(self, name: str) -> dict[str, Any]: ...


def grpc_error(exc: grpc.aio.AioRpcError) -> MusterError:
    return error_for_grpc_code(exc.code(), exc.details(), trailing_metadata_of(exc))


def _beat_request(beat: HeartbeatInput) -> pb.HeartbeatRequest:
    request = pb.HeartbeatRequest(service_id=beat.service_id, status=beat.status)
    for name in ("p95_ms", "queue_depth", "load"):
        value = getattr(beat, name)
        if value is not None:
            setattr(request, name, value)
    return request


class GrpcTransport:
    def __init__(
        self, target: str, timeout: float, credentials: Credentials | None = None, *, secure: bool = False
    ) -> None:
        self.channel = (credentials or Credentials()).grpc_channel(target, secure=secure)
        self.catalog = pb_grpc.CatalogStub(self.channel)
        self.events = events_grpc.EventsStub(self.channel)
        self.tokens = identity_grpc.TokensStub(self.channel)
        self.timeout = timeout

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise grpc_error(exc) from None

    async def register(self, data: RegisterInput) -> Registered:
        request = pb.RegisterRequest(
            name=data.name, type=data.type, role=data.role, url=data.url, caps=data.caps, labels=data.labels,
            heartbeat_interval_s=data.heartbeat_interval_s, ttl_s=data.ttl_s,
        )
        if data.ctx_limit is not None:
            request.ctx_limit = data.ctx_limit
        if data.cost_hint_usd_per_1k is not None:
            request.cost_hint_usd_per_1k = data.cost_hint_usd_per_1k
        if data.instance_id is not None:
            request.instance_id = data.instance_id
        reply = await self._call(self.catalog.Register, request)
        return Registered(reply.service_id, reply.registered_at.ToDatetime(tzinfo=UTC))

    async def heartbeat(self, beat: HeartbeatInput) -> BeatAck:
        return cv.ack_from_message(await self._call(self.catalog.Heartbeat, _beat_request(beat)))

    async def discover(self, query: DiscoverQuery) -> list[ServiceRecord]:
        request = pb.DiscoverRequest(cap=query.cap, label=query.label, limit=query.limit)
        for name in ("name", "type", "role", "status"):
            value = getattr(query, name)
            if value is not None:
                setattr(request, name, value)
        reply = await self._call(self.catalog.Discover, request)
        return [cv.record_from_message(m) for m in reply.services]

    async def promote(self, data: PromoteInput) -> ServiceRecord:
        reply = await self._call(self.catalog.Promote, pb.PromoteRequest(service_id=data.service_id, role=data.role))
        return cv.record_from_message(reply)

    async def deregister(self, data: DeregisterInput) -> None:
        await self._call(self.catalog.Deregister, pb.DeregisterRequest(service_id=data.service_id))

    async def list_services(self, status: str | None, limit: int, offset: int) -> list[ServiceRecord]:
        request = pb.ListServicesRequest(limit=limit, offset=offset)
        if status is not None:
            request.status = status
        reply = await self._call(self.catalog.ListServices, request)
        return [cv.record_from_message(m) for m in reply.services]

    async def get_service(self, service_id: str) -> ServiceRecord:
        return cv.record_from_message(
            await self._call(self.catalog.GetService, pb.GetServiceRequest(service_id=service_id))
        )

    async def stats(self) -> Stats:
        reply = await self._call(self.catalog.GetStats, pb.GetStatsRequest())
        return Stats(
            total_services=reply.total_services,
            healthy_services=reply.healthy_services,
            degraded_services=reply.degraded_services,
            down_services=reply.down_services,
            last_check=reply.last_check.ToDatetime(tzinfo=UTC) if reply.HasField("last_check") else None,
            replicas=reply.replicas,
            self_preservation=reply.self_preservation,
            buses=[SinkStatus(b.sink, b.published_revision, b.lag_revisions) for b in reply.buses],
        )

    async def alerts(self, limit: int, since: datetime | None) -> list[AlertRecord]:
        request = pb.ListAlertsRequest(limit=limit)
        if since is not None:
            request.since.CopyFrom(timestamp(since))
        reply = await self._call(self.catalog.ListAlerts, request)
        return [cv.alert_from_message(m) for m in reply.alerts]

    async def watch(self, since: int | None, kind_prefix: str, subject_prefix: str) -> AsyncIterator[Event]:
        request = events_pb.WatchRequest(kind_prefix=kind_prefix, subject_prefix=subject_prefix)
        if since is not None:
            request.since = since
        call = self.events.Watch(request)
        try:
            async for message in call:
                yield cv.event_from_message(message)
        except grpc.aio.AioRpcError as exc:
            raise grpc_error(exc) from None
        finally:
            call.cancel()

    def heartbeat_stream(self) -> Any:
        return self.catalog.HeartbeatStream()

    async def create_token(self, name: str, scopes: list[str], expires: str | None) -> dict[str, Any]:
        request = identity_pb.CreateTokenRequest(name=name, scopes=scopes, expires=expires or "")
        reply = await self._call(self.tokens.CreateToken, request)
        return {**_token_dict(reply.token), "token": reply.secret}

    async def list_tokens(self) -> list[dict[str, Any]]:
        reply = await self._call(self.tokens.ListTokens, identity_pb.ListTokensRequest())
        return [_token_dict(t) for t in reply.tokens]

    async def revoke_token(self, name: str) -> dict[str, Any]:
        return _token_dict(await self._call(self.tokens.RevokeToken, identity_pb.RevokeTokenRequest(name=name)))


def _token_dict(message: Any) -> dict[str, Any]:
    from muster.clock import isoformat

    body: dict[str, Any] = {"name": message.name, "scopes": list(message.scopes), "created_by": message.created_by}
    for name in ("created_at", "expires_at", "revoked_at", "last_used_at"):
        body[name] = isoformat(getattr(message, name).ToDatetime(tzinfo=UTC)) if message.HasField(name) else None
    return body


class HttpTransport:
    def __init__(self, base_url: str, timeout: float, credentials: Credentials | None = None) -> None:
        credentials = credentials or Credentials()
        options = credentials.httpx_options() if base_url.startswith("https://") else {"headers": credentials.headers}
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout, **options)

    async def close(self) -> None:
        await self.http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach Muster at {self.http.base_url}: {exc.__class__.__name__}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text}
            raise error_for_http_status(response.status_code, body if isinstance(body, dict) else {})
        return response.json()

    @staticmethod
    def _body(model: Any, *, exclude: set[str] | None = None) -> dict[str, Any]:
        body = model.model_dump(mode="json", exclude=exclude)
        return {"content": orjson.dumps(body), "headers": {"content-type": "application/json"}}

    async def register(self, data: RegisterInput) -> Registered:
        # Without an instance_id the body stays one that servers older than it accept (they refuse unknown fields).
        body = self._body(data, exclude={"instance_id"} if data.instance_id is None else None)
        return cv.registered_from_dict(await self._request("POST", "/register", **body))

    async def heartbeat(self, beat: HeartbeatInput) -> BeatAck:
        data = await self._request("PUT", "/heartbeat", **self._body(beat))
        received = cv.parse_ts(data["received_at"])
        assert received is not None
        return BeatAck(data["service_id"], data["status"], received)

    async def discover(self, query: DiscoverQuery) -> list[ServiceRecord]:
        params: list[tuple[str, str | int]] = [("limit", query.limit)]
        params += [(k, v) for k in ("name", "type", "role", "status") if (v := getattr(query, k)) is not None]
        params += [("cap", c) for c in query.cap] + [("label", lbl) for lbl in query.label]
        data = await self._request("GET", "/discover", params=params)
        return [record_from_dict(item) for item in data["services"]]

    async def promote(self, data: PromoteInput) -> ServiceRecord:
        return record_from_dict(await self._request("POST", "/promote", **self._body(data)))

    async def deregister(self, data: DeregisterInput) -> None:
        await self._request("POST", "/deregister", **self._body(data))

    async def list_services(self, status: str | None, limit: int, offset: int) -> list[ServiceRecord]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        data = await self._request("GET", "/services", params=params)
        return [record_from_dict(item) for item in data["services"]]

    async def get_service(self, service_id: str) -> ServiceRecord:
        return record_from_dict(await self._request("GET", f"/services/{service_id}"))

    async def stats(self) -> Stats:
        return cv.stats_from_dict(await self._request("GET", "/stats"))

    async def alerts(self, limit: int, since: datetime | None) -> list[AlertRecord]:
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = since.isoformat()
        data = await self._request("GET", "/alerts", params=params)
        return [cv.alert_from_dict(item) for item in data["alerts"]]

    async def watch(self, since: int | None, kind_prefix: str, subject_prefix: str) -> AsyncIterator[Event]:
        params: dict[str, Any] = {"kind": kind_prefix, "subject": subject_prefix}
        if since is not None:
            params["since"] = since
        async with self.http.stream("GET", "/watch", params=params, timeout=None) as response:
            if response.status_code >= 400:
                await response.aread()
                raise error_for_http_status(response.status_code, response.json())
            event_name = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event_name = line[6:].strip()
                elif line.startswith("data:"):
                    data = orjson.loads(line[5:].strip())
                    if event_name == "error":
                        raise error_for_http_status(409, data)
                    yield cv.event_from_dict(data)

    async def create_token(self, name: str, scopes: list[str], expires: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "scopes": scopes}
        if expires:
            body["expires"] = expires
        result: dict[str, Any] = await self._request("POST", "/tokens", json=body)
        return result

    async def list_tokens(self) -> list[dict[str, Any]]:
        return list((await self._request("GET", "/tokens"))["tokens"])

    async def revoke_token(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("DELETE", f"/tokens/{quote(name, safe='')}")
        return result


