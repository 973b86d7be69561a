"""What every gRPC servicer shares: error translation, metrics, timestamps.

``@unary`` and ``@streaming`` wrap servicer methods so a ``MusterError``
becomes its status code with the plain message as details (and the exact
class in trailing metadata), anything else is logged as the bug it is, and
each call is counted and timed per RPC.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from muster.errors import Invalid, MusterError, grpc_trailing_metadata
from muster.observability import GRPC_LATENCY, GRPC_REQUESTS

__all__ = ["field_or_none", "from_timestamp", "present_fields", "streaming", "timestamp", "timestamp_or_none", "unary"]

log = structlog.get_logger("muster.grpc")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


def timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def from_timestamp(stamp: Timestamp, field: str = "timestamp") -> datetime:
    """The Timestamp as an aware UTC datetime; ``Invalid`` naming ``field`` when it is out of range."""
    try:
        moment: datetime = stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise Invalid(field, "must be a time between 0001-01-01 and 9999-12-31 UTC") from None
    return moment


def present_fields(message: Any, *names: str) -> dict[str, Any]:
    """The proto3 ``optional`` fields among ``names`` that the sender set, by name."""
    return {name: getattr(message, name) for name in names if message.HasField(name)}


def field_or_none(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def timestamp_or_none(message: Any, name: str) -> datetime | None:
    return from_timestamp(getattr(message, name), name) if message.HasField(name) else None


def _bind_request_id(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """The caller's ``x-request-id`` metadata, or a new id, on every log line of this call."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            structlog.contextvars.bind_contextvars(request_id=str(value)[:128])
            return
    structlog.contextvars.bind_contextvars(request_id=secrets.token_hex(16))


async def _abort(context: grpc.aio.ServicerContext[Any, Any], rpc: str, exc: BaseException) -> None:
    if isinstance(exc, MusterError):
        GRPC_REQUESTS.labels(rpc=rpc, code=exc.grpc_code.name).inc()
        log.info("grpc.request", rpc=rpc, code=exc.grpc_code.name, error=exc.message)
        await context.abort(exc.grpc_code, exc.message, trailing_metadata=grpc_trailing_metadata(exc))
    log.error("grpc.unhandled", rpc=rpc, error=repr(exc), exc_info=exc)
    GRPC_REQUESTS.labels(rpc=rpc, code="INTERNAL").inc()
    await context.abort(grpc.StatusCode.INTERNAL, "internal error (a bug: please report it)")


UnaryMethod = Callable[[Any, Req, Any], Awaitable[Resp]]


def unary(rpc: str) -> Callable[[UnaryMethod[Req, Resp]], UnaryMethod[Req, Resp]]:
    def wrap(method: Callable[[Any, Req, Any], Awaitable[Resp]]) -> Callable[[Any, Req, Any], Awaitable[Resp]]:
        latency = GRPC_LATENCY.labels(rpc=rpc)
        ok = GRPC_REQUESTS.labels(rpc=rpc, code="OK")

        @functools.wraps(method)
        async def handler(self: Any, request: Req, context: Any) -> Resp:
            started = time.perf_counter()
            _bind_request_id(context)
            try:
                reply = await method(self, request, context)
            except (grpc.aio.AbortError, grpc.aio.UsageError):
                raise
            except Exception as exc:
                await _abort(context, rpc, exc)
                raise
            finally:
                latency.observe(time.perf_counter() - started)
            ok.inc()
            return reply

        return handler

    return wrap


def streaming(
    rpc: str,
) -> Callable[[Callable[[Any, Req, Any], AsyncIterator[Resp]]], Callable[[Any, Req, Any], AsyncIterator[Resp]]]:
    def wrap(method: Callable[[Any, Req, Any], AsyncIterator[Resp]]) -> Callable[[Any, Req, Any], AsyncIterator[Resp]]:
        @functools.wraps(method)
        async def handler(self: Any, request: Req, context: Any) -> AsyncIterator[Resp]:
            _bind_request_id(context)
            try:
                async for item in method(self, request, context):
                    yield item
            except (grpc.aio.AbortError, grpc.aio.UsageError):
                raise
            except Exception as exc:
                await _abort(context, rpc, exc)
            else:
                GRPC_REQUESTS.labels(rpc=rpc, code="OK").inc()

        return handler

    return wrap
