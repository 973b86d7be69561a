"""One wrapper around every gRPC method handler of a door: decode failures and admission.

grpc.aio runs a handler's request deserializer before the servicer sees the
call; when it raises (bytes that are not the message, a string field that is
not UTF-8), grpcio answers ``UNKNOWN`` or ``INTERNAL``. Here the deserializer
never raises: it hands the servicer a marker instead, and the wrapper answers
``INVALID_ARGUMENT`` naming the message type, for unary and streamed requests
alike. The same wrapper runs an optional ``admit(context)`` before the call
(identity uses it; it aborts the call to refuse it). Handlers are wrapped once
per method and cached, so a call pays one extra coroutine frame.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from muster.errors import Invalid, grpc_trailing_metadata

__all__ = ["Admit", "Check", "DoorInterceptor", "GuardedRegistration", "guarded"]

Admit = Callable[[Any], Awaitable[None]]
# Run with each decoded unary request (rate limits look at what is asked); aborts the call to refuse it.
Check = Callable[[Any, Any], Awaitable[None]]


class _Undecodable:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _safe(deserializer: Callable[[bytes], Any] | None, type_name: str) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except (DecodeError, ValueError, UnicodeDecodeError) as exc:
            detail = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
            return _Undecodable(f"the request is not a valid {type_name} message ({detail})")

    return deserialize


async def _refuse_undecodable(context: Any, marker: _Undecodable) -> None:
    error = Invalid("request", marker.reason)
    await context.abort(error.grpc_code, error.message, trailing_metadata=grpc_trailing_metadata(error))


async def _checked(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            await _refuse_undecodable(context, request)
        yield request


def _type_name(handler: grpc.RpcMethodHandler) -> str:
    deserializer = handler.request_deserializer
    owner = getattr(deserializer, "__self__", None)  # a message class's bound FromString
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


def guarded(
    handler: grpc.RpcMethodHandler, admit: Admit | None = None, check: Check | None = None
) -> grpc.RpcMethodHandler:
    """``handler`` with undecodable requests refused as INVALID_ARGUMENT, ``admit`` run first, then ``check``."""
    inner = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    deserializer = _safe(handler.request_deserializer, _type_name(handler))
    kind = ("stream" if handler.request_streaming else "unary") + "_" + (
        "stream" if handler.response_streaming else "unary"
    )

    async def prepare(request: Any, context: Any) -> Any:
        if admit is not None:
            await admit(context)
        if handler.request_streaming:
            return _checked(request, context)
        if isinstance(request, _Undecodable):
            await _refuse_undecodable(context, request)
        if check is not None:
            await check(request, context)
        return request

    plain = admit is None and check is None and not handler.request_streaming
    if handler.response_streaming:

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            async for item in inner(await prepare(request, context), context):
                yield item

        behavior: Any = stream
    elif plain:  # the hot case (the bridge's unary calls): one check, no extra coroutine

        async def unary_plain(request: Any, context: Any) -> Any:
            if request.__class__ is _Undecodable:
                await _refuse_undecodable(context, request)
            return await inner(request, context)

        behavior = unary_plain
    else:

        async def unary(request: Any, context: Any) -> Any:
            return await inner(await prepare(request, context), context)

        behavior = unary
    factory = getattr(grpc, f"{kind}_rpc_method_handler")
    result: grpc.RpcMethodHandler = factory(
        behavior, request_deserializer=deserializer, response_serializer=handler.response_serializer
    )
    return result


class DoorInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every method's handler once (see :func:`guarded`); ``admit_for(method)`` picks its admission."""

    def __init__(
        self,
        admit_for: Callable[[str], Admit | None] = lambda _method: None,
        check_for: Callable[[str], Check | None] = lambda _method: None,
    ) -> None:
        self._admit_for = admit_for
        self._check_for = check_for
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:  # no such method: grpcio answers UNIMPLEMENTED
                return handler
            wrapped = self._wrapped[method] = guarded(handler, self._admit_for(method), self._check_for(method))
        return wrapped


class GuardedRegistration:
    """A stand-in server for the generated ``add_*Servicer_to_server``: registers every handler guarded.

    The same effect as :class:`DoorInterceptor` without an interceptor, whose per-call
    machinery costs measurably on the bridge's hottest calls: handlers are wrapped
    once, when they are registered.
    """

    def __init__(self, server: Any, admit_for: Callable[[str], Admit | None] = lambda _method: None) -> None:
        self._server = server
        self._admit_for = admit_for

    def _wrap(self, service: str, name: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        return guarded(handler, self._admit_for(f"/{service}/{name}"))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        wrapped = {name: self._wrap(service, name, handler) for name, handler in handlers.items()}
        self._server.add_registered_method_handlers(service, wrapped)
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Superseded by the registered handlers above (the generated code sends both)."""
