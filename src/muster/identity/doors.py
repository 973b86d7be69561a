"""Identity at the doors: one ``authorize`` called by an ASGI middleware and a gRPC interceptor.

Both doors look up the scope the route or method needs in
:mod:`muster.identity.scopes`, verify the caller (a bearer token, or a client
certificate's CN standing for the token of that name), and either refuse
(401 / UNAUTHENTICATED, 403 / PERMISSION_DENIED, with the same message) or set
the caller as the operation's principal (:mod:`muster.identity.context`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import grpc
import structlog

from muster.errors import MusterError, PermissionDenied, Unauthenticated, grpc_trailing_metadata
from muster.grpc.guard import Admit
from muster.http.responses import send_error
from muster.http.routing import RouteTable
from muster.identity import caller
from muster.identity.model import ANONYMOUS, Principal
from muster.identity.scopes import HTTP_ROUTES, OPEN, scope_for_grpc, scope_for_http
from muster.identity.service import IdentityService
from muster.observability import AUTH_REFUSED

__all__ = [
    "AuthMiddleware",
    "Authorizer",
    "bearer_of",
    "client_cn_from_ssl_object",
    "grpc_admission",
    "served_routes",
    "undeclared_routes",
]

log = structlog.get_logger("muster.identity")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def served_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the FastAPI app serves, path parameters written as in the scope table."""
    converters = {template.replace(":path}", "}"): template for _, template in HTTP_ROUTES}
    served = {
        (method.upper(), converters.get(path, path))
        for path, operations in app.openapi().get("paths", {}).items()
        for method in operations
    }
    for method, path in _walk(app.router.routes, ""):  # the documentation routes, kept out of the schema
        if method != "HEAD":
            served.add((method, path))
    return served


def _walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, into included routers (FastAPI ≥ 0.16x keeps them nested)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(nested.routes, prefix + (getattr(context, "prefix", "") or ""))
            continue
        for method in getattr(route, "methods", None) or ():
            if hasattr(route, "path"):
                yield method, prefix + route.path


def undeclared_routes(app: Any) -> set[tuple[str, str]]:
    """Routes the app serves that the scope table does not name (there must be none)."""
    return served_routes(app) - set(HTTP_ROUTES)


def client_cn_from_ssl_object(ssl_object: Any) -> str | None:
    """The common name of the client certificate a TLS connection presented, if any."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert() or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class Authorizer:
    """What both doors ask: may this caller, with these credentials, use something that needs ``scope``?"""

    def __init__(self, identity: IdentityService, *, enabled: bool, principal_from_cn: bool) -> None:
        self.identity = identity
        self.enabled = enabled
        self.principal_from_cn = principal_from_cn

    async def authorize(self, scope: str | None, authorization: str | None, client_cn: str | None) -> Principal:
        """The caller's principal, or ``Unauthenticated`` / ``PermissionDenied``."""
        if not self.enabled or scope is OPEN:
            return ANONYMOUS
        principal = await self.identity.authenticate(authorization)
        if principal is None and self.principal_from_cn and client_cn:
            principal = await self.identity.principal_named(client_cn)
            if principal is None:
                raise Unauthenticated(f"client certificate CN {client_cn} names no usable token")
        if principal is None:
            raise Unauthenticated("a token is required: send 'Authorization: Bearer <token>'")
        if not principal.allows(scope):
            raise PermissionDenied(f"token {principal.name} lacks the scope {scope}, which this call needs")
        return principal


class AuthMiddleware:
    """ASGI: find the route's scope in the table, authorize, and run the request as the caller.

    The table is matched here, before routing, with the router's own path
    syntax; :func:`undeclared_routes` (run when the app is built, and by the
    tests) makes sure every route the app serves is in it, so a route can never
    be served without a declared scope.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], authorizer: Authorizer,
                 metrics_auth: bool, routes: RouteTable | None = None) -> None:
        self.app = app
        self.authorizer = authorizer
        self.metrics_auth = metrics_auth
        self._routes = routes or RouteTable(HTTP_ROUTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        template = self._routes.match(method, scope["path"])
        if template is None:  # no such route, or not with this method: let the router answer 404/405
            await self.app(scope, receive, send)
            return
        needed = scope_for_http(method, template, metrics_auth=self.metrics_auth)
        authorization: str | None = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value.decode("latin-1")
                break
        tls = (scope.get("extensions") or {}).get("tls") or {}
        try:
            principal = await self.authorizer.authorize(needed, authorization, tls.get("client_cert_cn"))
        except MusterError as exc:
            AUTH_REFUSED.labels(door="http", code=exc.code).inc()
            await _refuse(send, exc)
            return
        caller.set_current(principal)
        await self.app(scope, receive, send)


async def _refuse(send: Send, exc: MusterError) -> None:
    challenge = [(b"www-authenticate", b'Bearer realm="muster"')] if isinstance(exc, Unauthenticated) else []
    await send_error(send, exc.http_status, exc.to_dict(), challenge)


def grpc_admission(authorizer: Authorizer) -> Callable[[str], Admit | None]:
    """For :class:`muster.grpc.guard.DoorInterceptor`: each method's check (none for open ones)."""

    def admit_for(method: str) -> Admit | None:
        needed = scope_for_grpc(method)
        if needed is OPEN:  # runs as the context's default principal, anonymous
            return None
        return functools.partial(_grpc_principal, authorizer, needed)

    return admit_for


def bearer_of(ctx: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The call's ``authorization`` metadata value, if it has one."""
    for key, value in ctx.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


async def _grpc_principal(authorizer: Authorizer, needed: str, ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
    authorization = bearer_of(ctx)
    client_cn: str | None = None
    if authorizer.principal_from_cn:
        names = (ctx.auth_context() or {}).get("x509_common_name") or []
        client_cn = names[0].decode() if names else None
    try:
        principal = await authorizer.authorize(needed, authorization, client_cn)
    except MusterError as exc:
        AUTH_REFUSED.labels(door="grpc", code=exc.code).inc()
        await ctx.abort(exc.grpc_code, exc.message, trailing_metadata=grpc_trailing_metadata(exc))
    caller.set_current(principal)
