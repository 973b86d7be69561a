"""The HTTP door: one FastAPI app over the shared service layer.

Routes are thin: parse, call the service, return. Errors are translated in
one place (``MusterError`` → its HTTP status and ``{"error", "message",
"field"}``; request validation → 422 naming the field and the rule). The edge
middleware bounds request bodies, assigns a request id, and records metrics.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from muster.errors import MusterError
from muster.http.responses import JSON
from muster.observability import HTTP_LATENCY, HTTP_REQUESTS
from muster.runtime import Runtime
from muster.validation import _field_name

__all__ = ["create_app"]

log = structlog.get_logger("muster.http")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _BodyTooLarge(Exception):
    pass


class EdgeMiddleware:
    """Request id, body bound and per-route metrics, as plain ASGI (cheap on the hot path)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
            elif key == b"content-length" and int(value or 0) > self.max_body_bytes:
                await self._reject(send)
                return
        request_id = request_id or secrets.token_hex(16)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        seen = 0
        limit = self.max_body_bytes

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge
            return message

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode("latin-1")))
            await send(message)

        try:
            await self.app(scope, bounded_receive, tagged_send)
        except _BodyTooLarge:
            status = 413
            await self._reject(send)
        finally:
            route = scope.get("route")
            key = (getattr(route, "path", "unmatched"), scope["method"], status)
            children = self._metrics.get(key)
            if children is None:  # labels() takes a lock and builds tuples: resolve once per key
                children = self._metrics[key] = (
                    HTTP_REQUESTS.labels(route=key[0], method=key[1], status=str(status)),
                    HTTP_LATENCY.labels(route=key[0], method=key[1]),
                )
            elapsed = time.perf_counter() - started
            children[0].inc()
            children[1].observe(elapsed)
            if status >= 400 or elapsed > 1.0:  # successes stay quiet: metrics count them
                (log.warning if status >= 500 else log.info)(
                    "http.request", method=key[1], route=key[0], status=status, duration_ms=round(elapsed * 1000, 1)
                )
            structlog.contextvars.unbind_contextvars("request_id")

    async def _reject(self, send: Send) -> None:
        body = b'{"error":"resource_exhausted","message":"request body exceeds the size limit"}'
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _muster_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MusterError)
    return JSON(exc.to_dict(), status_code=exc.http_status)


def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    field = _field_name(tuple(first["loc"]))
    message = f"{field}: {first['msg']}"
    if len(errors) > 1:
        message += " (also " + "; ".join(f"{_field_name(tuple(e['loc']))}: {e['msg']}" for e in errors[1:4]) + ")"
    return JSON({"error": "invalid_argument", "message": message, "field": field}, status_code=422)


def _unexpected(_request: Request, exc: Exception) -> Response:
    log.error("http.unhandled", error=repr(exc), exc_info=exc)
    return JSON({"error": "internal", "message": "internal error (a bug: please report it)"}, status_code=500)


def create_app(runtime: Runtime) -> FastAPI:
    from muster.catalog.http import router as catalog_router
    from muster.http.operations import router as operations_router

    app = FastAPI(
        title="Muster",
        version="0.1.0",
        description="The roll call for fleets of services and AI agents.",
        default_response_class=JSON,
    )
    app.state.runtime = runtime
    app.add_exception_handler(MusterError, _muster_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(operations_router(runtime))
    app.include_router(catalog_router(runtime.catalog))
    for context in runtime.contexts.values():
        make_router = getattr(context, "http_router", None)
        if make_router is not None:
            app.include_router(make_router())
    settings = runtime.settings
    if settings.auth:  # inside the edge: refusals get a request id and are counted like any answer
        from muster.identity.doors import AuthMiddleware, Authorizer, undeclared_routes

        undeclared = undeclared_routes(app)
        if undeclared:  # fail closed, at start: no route is ever served without a declared scope
            raise RuntimeError(f"routes without a scope in muster.identity.scopes: {sorted(undeclared)}")
        authorizer = Authorizer(
            runtime.contexts["identity"], enabled=True, principal_from_cn=settings.tls_principal_from_cn
        )
        app.add_middleware(AuthMiddleware, authorizer=authorizer, metrics_auth=settings.metrics_auth)
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
