"""The HTTP door: one FastAPI app over the shared service layer.

Routes are thin: parse, call the service, return. Errors are translated in
one place (``MusterError`` → its HTTP status and ``{"error", "message",
"field"}``; request validation → 422 naming the field and the rule). The edge
middleware bounds request bodies, assigns a request id, and records metrics.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from muster.errors import Invalid, MusterError
from muster.http.responses import JSON, send_error
from muster.observability import HTTP_LATENCY, HTTP_REQUESTS
from muster.runtime import Runtime
from muster.validation import invalid_from_errors, json_syntax_error

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
        length: int | None = None
        media_type = b""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
            elif key == b"content-length":
                length = int(value) if value.isdigit() else 0
            elif key == b"content-type":
                media_type = value.split(b";", 1)[0].strip().lower()
        if length is not None and length > self.max_body_bytes:
            await self._refuse(send, 413, "resource_exhausted",
                               f"request body exceeds the limit of {self.max_body_bytes} bytes")
            return
        if media_type and length != 0 and scope["method"] in _WITH_BODY and not _is_json(media_type):
            await self._refuse(send, 415, "unsupported_media_type",
                               f"request body must be application/json, not {media_type.decode('latin-1')}")
            return
        if length is None and scope["method"] in _WITH_BODY:  # chunked: read it whole, within the bound
            buffered = await self._read_bounded(receive)
            if buffered is None:
                await self._refuse(send, 413, "resource_exhausted",
                                   f"request body exceeds the limit of {self.max_body_bytes} bytes")
                return
            receive = _replay(buffered, receive)
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
            await self._refuse(send, 413, "resource_exhausted",
                               f"request body exceeds the limit of {self.max_body_bytes} bytes")
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

    async def _read_bounded(self, receive: Receive) -> bytes | None:
        """The whole body of a request that did not declare its length; ``None`` past the limit."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    @staticmethod
    async def _refuse(send: Send, status: int, code: str, message: str) -> None:
        await send_error(send, status, {"error": code, "message": message})


_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def _is_json(media_type: bytes) -> bool:
    return media_type == b"application/json" or media_type.endswith(b"+json")


def _replay(body: bytes, original: Receive) -> Receive:
    """A ``receive`` that hands the app an already-read body once, then the connection's own messages."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()  # the disconnect, when it comes

    return receive


def _muster_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MusterError)
    retry_after = getattr(exc, "retry_after", None)
    headers = {"retry-after": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    return JSON(exc.to_dict(), status_code=exc.http_status, headers=headers)


def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    if first.get("type") == "json_invalid":  # loc is ("body", character offset into the document)
        document = exc.body if isinstance(exc.body, str) else ""
        offset = next((p for p in first["loc"] if isinstance(p, int)), 0)
        line = document.count("\n", 0, offset) + 1
        column = offset - (document.rfind("\n", 0, offset) + 1) + 1
        error = json_syntax_error(line, column)
        return JSON(error.to_dict(), status_code=error.http_status)
    error = invalid_from_errors(errors)
    return JSON(error.to_dict(), status_code=error.http_status)


def _allowed_methods(routes: Any, path: str) -> str:
    """Every method some route serves this path with (the router's own 405 names only one route's)."""
    methods = {method for method in ("GET", "POST", "PUT", "PATCH", "DELETE") if routes.match(method, path)}
    return ", ".join(sorted(methods))


_HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed", 413: "resource_exhausted", 415: "unsupported_media_type"}


def _http_error(request: Request, exc: Exception) -> Response:
    """Routing's own refusals (no such route, wrong method) in Muster's shape, headers kept (Allow)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = _allowed_methods(request.app.state.routes, request.url.path) or (exc.headers or {}).get("Allow", "")
        headers = {**(exc.headers or {}), "Allow": allowed}
        message = f"{request.url.path} does not take {request.method}; it takes {allowed}"
        return JSON({"error": "method_not_allowed", "message": message}, status_code=405, headers=headers)
    elif exc.status_code == 400 and "parsing the body" in str(exc.detail):  # FastAPI: not UTF-8, not JSON
        error = Invalid("body", "request body is not valid JSON (it is not UTF-8 text)")
        return JSON(error.to_dict(), status_code=error.http_status)
    else:
        message = str(exc.detail)
    code = _HTTP_ERRORS.get(exc.status_code, "invalid_argument" if exc.status_code < 500 else "internal")
    return JSON({"error": code, "message": message}, status_code=exc.status_code, headers=exc.headers)


def _client_gone(request: Request, _exc: Exception) -> Response:
    """The client closed the connection before its body arrived (it timed out, or went away): nothing to
    answer and nothing wrong here, so no error is logged; the reply goes nowhere."""
    log.info("http.client_gone", method=request.method, path=request.url.path)
    error = Invalid("body", "the client closed the connection before the request body arrived")
    return JSON(error.to_dict(), status_code=error.http_status)


def _unexpected(_request: Request, exc: Exception) -> Response:
    log.error("http.unhandled", error=repr(exc), exc_info=exc)
    return JSON({"error": "internal", "message": "internal error (a bug: please report it)"}, status_code=500)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        from muster.http.contract import truthful_openapi

        app.openapi_schema = truthful_openapi(
            get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        )
    return app.openapi_schema


def create_app(runtime: Runtime) -> FastAPI:
    from muster.catalog.http import router as catalog_router
    from muster.http.operations import router as operations_router

    app = FastAPI(
        title="Muster",
        version="0.1.0",
        description="The roll call for fleets of services and AI agents.",
        default_response_class=JSON,
        docs_url=None,  # served by muster.http.docs_pages, without a CDN
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_exception_handler(MusterError, _muster_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
    from muster.http.docs_pages import router as docs_router

    app.include_router(docs_router(app.title))
    app.include_router(operations_router(runtime))
    app.include_router(catalog_router(runtime.catalog))
    for context in runtime.contexts.values():
        make_router = getattr(context, "http_router", None)
        if make_router is not None:
            app.include_router(make_router())
    settings = runtime.settings
    from muster.http.query import UnknownQueryGuard
    from muster.http.routing import RouteTable
    from muster.identity.scopes import HTTP_ROUTES
    from muster.limits import RateLimiter, RateLimitMiddleware

    # One table of routes for every gatekeeper, matched with the router's own syntax.
    routes = app.state.routes = RouteTable(HTTP_ROUTES)
    app.add_middleware(UnknownQueryGuard, fastapi_app=app, routes=routes)
    limiter = RateLimiter({"write": settings.rate_limit_writes, "expensive": settings.rate_limit_expensive})
    # Innermost of the three: budgets are per principal, known once auth has run.
    app.add_middleware(RateLimitMiddleware, limiter=limiter, routes=routes, auth=settings.auth)
    if settings.auth:  # inside the edge: refusals get a request id and are counted like any answer
        from muster.identity.doors import AuthMiddleware, Authorizer, undeclared_routes

        undeclared = undeclared_routes(app)
        if undeclared:  # fail closed, at start: no route is ever served without a declared scope
            raise RuntimeError(f"routes without a scope in muster.identity.scopes: {sorted(undeclared)}")
        authorizer = Authorizer(
            runtime.contexts["identity"], enabled=True, principal_from_cn=settings.tls_principal_from_cn
        )
        app.add_middleware(AuthMiddleware, authorizer=authorizer, metrics_auth=settings.metrics_auth, routes=routes)
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
