"""Rate limits: token buckets per caller, for writes and for expensive reads, the same on both doors.

A caller is its principal's name when auth is on, its client address when it
is off. Two budgets per caller, each a token bucket (rate per second, burst of
twice that), configured in :class:`muster.config.Settings`:

* ``write``: every mutation but heartbeats; 10,000/s, burst 20,000.
* ``expensive``: discover with more than 2 filters, graph traversal deeper than
  5 hops, impact, a watch replaying from revision 0; 1,000/s, burst 2,000.

Heartbeats are never throttled: a service's own keep-alive must not be refused
for arriving, and a beat costs memory only. A refused call is told when to come
back: HTTP 429 with ``Retry-After``, gRPC RESOURCE_EXHAUSTED with a
``google.rpc.RetryInfo``; each refusal is counted in
``muster_rate_limited_total{door,kind}``. A rate of 0 turns a class off.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from muster.errors import RateLimited

__all__ = [
    "HEARTBEATS",
    "MAX_BATCH_ITEMS",
    "MAX_CAPS",
    "MAX_LABELS",
    "MAX_LABEL_VALUE_CHARS",
    "MAX_PLAN_SYMBOLS",
    "Bucket",
    "RateLimiter",
    "WatchSlots",
    "classify_grpc",
    "classify_http",
    "grpc_caller",
    "holding",
    "retry_after_header",
]



def shape_limit(name: str, default: int, *, ceiling: int) -> int:
    """A bound on the shape of input, from ``MUSTER_<NAME>`` when the process starts, else ``default``.

    These bounds are part of the contract (the OpenAPI document states them), so they are fixed for
    the life of a process; every replica of one deployment should be given the same ones.
    """
    variable = f"MUSTER_{name}"
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= ceiling:
        raise ValueError(f"{variable}: must be a whole number from 1 to {ceiling:,} (got {text[:40]!r})")
    return int(text)


# Shape limits: how many caps and labels one service may carry, how long a label value may be, how
# many items one batch call (graph upserts) and one plan may hold.
MAX_CAPS = shape_limit("MAX_CAPS", 64, ceiling=1_000)
MAX_LABELS = shape_limit("MAX_LABELS", 64, ceiling=1_000)
MAX_LABEL_VALUE_CHARS = shape_limit("MAX_LABEL_VALUE_CHARS", 500, ceiling=8_000)
MAX_BATCH_ITEMS = shape_limit("MAX_BATCH_ITEMS", 10_000, ceiling=100_000)
MAX_PLAN_SYMBOLS = shape_limit("MAX_PLAN_SYMBOLS", 500, ceiling=10_000)

# Never throttled (see the module's docstring).
HEARTBEATS = frozenset({("PUT", "/heartbeat"), "/muster.v1.Catalog/Heartbeat", "/muster.v1.Catalog/HeartbeatStream"})
_MAX_CALLERS = 100_000
_DEEP = 5
_MANY_FILTERS = 2


@dataclass(slots=True)
class Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token; 0.0 when granted, else the seconds until one is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, rates: Mapping[str, float], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rates = {kind: rate for kind, rate in rates.items() if rate > 0}
        self.clock = clock
        self._buckets: dict[tuple[str, str], Bucket] = {}

    def check(self, caller: str, kind: str | None) -> None:
        """Spend one of ``caller``'s ``kind`` tokens, or raise ``RateLimited`` saying when to retry."""
        if kind is None:
            return
        rate = self.rates.get(kind)
        if rate is None:
            return
        now = self.clock()
        key = (caller, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_CALLERS:  # forget the callers whose buckets are full again
                self._buckets = {
                    k: b for k, b in self._buckets.items() if b.tokens + (now - b.updated) * b.rate < b.burst
                }
            bucket = self._buckets[key] = Bucket(rate, 2 * rate, 2 * rate, now)
        wait = bucket.take(now)
        if wait > 0:
            raise RateLimited(
                f"too many {kind} requests from {caller}: at most {rate:g} a second (burst {2 * rate:g}); "
                f"retry in {wait:.2f} s",
                retry_after=wait,
            )


def _filters(values: Mapping[str, Any]) -> int:
    count = 0
    for name in ("name", "type", "role", "status"):
        if values.get(name) not in (None, ""):
            count += 1
    return count + len(values.get("cap") or ()) + len(values.get("label") or ())


def classify_http(method: str, template: str, query: Mapping[str, Any]) -> str | None:
    """``write``, ``expensive`` or ``None`` for one HTTP request (``query``: name → value or list)."""
    if (method, template) in HEARTBEATS:
        return None
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        return "write"
    if template == "/discover":
        return "expensive" if _filters(query) > _MANY_FILTERS else None
    if template.endswith("/traverse"):
        return "expensive" if (_int(query.get("depth"), 3) or 0) > _DEEP else None
    if template.endswith("/impact"):
        return "expensive"
    if template == "/watch" and _int(query.get("since"), None) == 0:
        return "expensive"
    return None


def classify_grpc(method: str, request: Any, writes: frozenset[str]) -> str | None:
    """``write``, ``expensive`` or ``None`` for one gRPC call; ``writes``: the methods that mutate."""
    if method in HEARTBEATS:
        return None
    if method in writes:
        return "write"
    name = method.rsplit("/", 1)[-1]
    if method == "/muster.v1.Catalog/Discover":
        fields = {f: getattr(request, f) for f in ("name", "type", "role", "status") if request.HasField(f)}
        filters = _filters({**fields, "cap": request.cap, "label": request.label})
        return "expensive" if filters > _MANY_FILTERS else None
    if method == "/muster.v1.Graph/Traverse":
        return "expensive" if request.HasField("depth") and request.depth > _DEEP else None
    if method == "/muster.v1.Graph/Impact":
        return "expensive"
    if name == "Watch" and hasattr(request, "since") and request.HasField("since") and request.since == 0:
        return "expensive"
    return None


def _int(value: Any, default: int | None) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


# -- the doors ------------------------------------------------------------------------------------


def caller_name(auth: bool, address: str | None) -> str:
    """Whom a budget belongs to: the principal with auth on, else the client's address."""
    if auth:
        from muster.identity import caller

        return caller.current().name
    return address or "unknown"


class RateLimitMiddleware:
    """ASGI: refuse a request past its caller's budget with 429 and ``Retry-After`` (inside auth)."""

    def __init__(self, app: Any, limiter: RateLimiter, routes: Any, auth: bool) -> None:
        self.app = app
        self.limiter = limiter
        self.routes = routes
        self.auth = auth

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.limiter.rates:
            await self.app(scope, receive, send)
            return
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        template = self.routes.match(method, scope["path"])
        if template is not None:
            query: dict[str, Any] = {}
            if method == "GET" and scope.get("query_string"):
                from urllib.parse import parse_qs

                query = parse_qs(scope["query_string"].decode("latin-1"))
            kind = classify_http(method, template, query)
            if kind is not None:
                client = scope.get("client")
                try:
                    self.limiter.check(caller_name(self.auth, client[0] if client else None), kind)
                except RateLimited as exc:
                    from muster.observability import RATE_LIMITED

                    RATE_LIMITED.labels(door="http", kind=kind).inc()
                    await _too_many(send, exc)
                    return
        await self.app(scope, receive, send)


async def _too_many(send: Any, exc: RateLimited) -> None:
    from muster.http.responses import send_error

    await send_error(send, 429, exc.to_dict(), [(b"retry-after", retry_after_header(exc.retry_after).encode())])


def grpc_checks(limiter: RateLimiter, writes: frozenset[str], auth: bool) -> Callable[[str], Any]:
    """For :class:`muster.grpc.guard.DoorInterceptor`: each method's rate-limit check (none if exempt)."""

    def check_for(method: str) -> Any:
        if method in HEARTBEATS or not limiter.rates:
            return None

        async def check(request: Any, context: Any) -> None:
            kind = classify_grpc(method, request, writes)
            if kind is None:
                return
            try:
                limiter.check(caller_name(auth, _peer_address(context.peer())), kind)
            except RateLimited as exc:
                from muster.errors import grpc_trailing_metadata
                from muster.observability import RATE_LIMITED

                RATE_LIMITED.labels(door="grpc", kind=kind).inc()
                await context.abort(exc.grpc_code, exc.message, trailing_metadata=grpc_trailing_metadata(exc))

        return check

    return check_for


def _peer_address(peer: str | None) -> str | None:
    """``ipv4:127.0.0.1:5000`` → ``127.0.0.1``; ``ipv6:[::1]:5000`` → ``::1``."""
    if not peer:
        return None
    _, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0] if rest.count(":") >= 1 and not rest.startswith("[") else rest
    if rest.startswith("["):
        host = rest[1 : rest.index("]")]
    return host


# -- watch streams ----------------------------------------------------------------------------------


class WatchSlots:
    """Bounds on open watch streams, per caller and in all, for one process (both doors, every context).

    A stream past either bound is refused before it starts (HTTP 429, gRPC RESOURCE_EXHAUSTED);
    a stream's slot is given back when it ends, however it ends.
    """

    def __init__(self, total: int, per_caller: int, *, auth: bool) -> None:
        self.total = total
        self.per_caller = per_caller
        self.auth = auth
        self._open: dict[str, int] = {}
        self._count = 0

    def acquire(self, caller: str) -> Callable[[], None]:
        """Take a slot for ``caller`` (``RateLimited`` when none is free); returns the release."""
        held = self._open.get(caller, 0)
        if held >= self.per_caller:
            raise RateLimited(f"{caller} has {held} watch streams open, the most one caller may (end one first)")
        if self._count >= self.total:
            raise RateLimited(f"this server has {self._count} watch streams open, the most it takes")
        self._open[caller] = held + 1
        self._count += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._count -= 1
            left = self._open.get(caller, 1) - 1
            if left:
                self._open[caller] = left
            else:
                self._open.pop(caller, None)

        return release

    @property
    def open_streams(self) -> int:
        return self._count


class holding:
    """``stream``, giving its watch slot back when it ends: exhausted, failed, closed, or never started."""

    def __init__(self, release: Callable[[], None], stream: Any) -> None:
        self._release = release
        self._stream = aiter(stream)

    def __aiter__(self) -> holding:
        return self

    async def __anext__(self) -> Any:
        try:
            return await anext(self._stream)
        except BaseException:
            self._release()
            raise

    async def aclose(self) -> None:
        self._release()
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()

    def __del__(self) -> None:
        self._release()


def grpc_caller(slots: WatchSlots, context: Any) -> str:
    return caller_name(slots.auth, _peer_address(context.peer()))
