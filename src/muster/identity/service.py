"""The identity service: tokens made, listed and revoked; callers verified from memory.

Every process keeps the usable tokens in a dictionary keyed by digest, fed by
the event log: ``identity.token_revoked`` removes a token at once on every
replica that follows the log (within the hub's poll interval on SQLite, a
NOTIFY on PostgreSQL), so verification never costs a database round trip. A
token this process has not heard of yet (made on another replica a moment
ago) makes it re-read the token table before answering; concurrent misses
share one read and reads start at most every 50 ms, so a flood of bogus
tokens costs at most 20 small queries a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import replace
from pathlib import Path

import structlog

from muster._tasks import cancel_and_wait
from muster.clock import Clock
from muster.errors import Conflict, NotFound, PermissionDenied, Unauthenticated
from muster.events.hub import Event, EventHub
from muster.identity import store as q
from muster.identity.model import (
    ADMIN,
    Principal,
    TokenRecord,
    bearer_secret,
    check_name,
    check_scopes,
    digest,
    new_secret,
    parse_expiry,
)
from muster.store.engine import Store, Tx

__all__ = ["IdentityService", "IssuedToken"]

log = structlog.get_logger("muster.identity")

_REFRESH_AT_MOST_EVERY_S = 0.05
_MISS_WAIT_AT_MOST_S = 2.0
_HEADER_CACHE_SIZE = 10_000
_TOUCH_EVERY_S = 10.0


class IssuedToken:
    """A token just made: its record and, this once, its secret."""

    __slots__ = ("record", "secret")

    def __init__(self, record: TokenRecord, secret: str) -> None:
        self.record = record
        self.secret = secret

    def to_dict(self) -> dict[str, object]:
        return {**self.record.to_dict(), "token": self.secret}


class IdentityService:
    def __init__(self, store: Store, hub: EventHub, clock: Clock) -> None:
        self.store = store
        self.hub = hub
        self.clock = clock
        self._by_digest: dict[str, TokenRecord] = {}
        self._by_name: dict[str, TokenRecord] = {}
        # Names used since the last flush; the flush writes its own time (last use is kept to ~10 s).
        self._used: set[str] = set()
        # The hot path: an Authorization value seen before, straight to its token and principal
        # (no parsing, no hashing). Emptied on every revocation and reload; bounded in size.
        self._by_header: dict[str, tuple[TokenRecord, Principal]] = {}
        self._refreshed_at = 0.0  # when the newest read of the table started (monotonic)
        self._refreshing: asyncio.Task[None] | None = None
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        hub.add_applier(self._apply)

    # -- life cycle -------------------------------------------------------------------

    async def load(self) -> None:
        started = time.monotonic()
        async with self.store.read() as conn:
            records = await q.load_tokens(conn)
        self._by_digest = {r.digest: r for r in records if r.revoked_at is None}
        self._by_name = {r.name: r for r in self._by_digest.values()}
        self._by_header = {}
        self._refreshed_at = max(self._refreshed_at, started)

    def start(self) -> None:
        self._task = asyncio.create_task(self._touch_loop(), name="muster-identity-last-used")

    async def close(self) -> None:
        for task in (self._task, self._refreshing):
            if task is not None:
                await cancel_and_wait(task)
        with contextlib.suppress(Exception):
            await self._flush_used()

    def _apply(self, event: Event) -> None:
        if event.kind == "identity.token_revoked":
            record = self._by_name.pop(event.subject, None)
            if record is not None:
                self._by_digest.pop(record.digest, None)
            self._by_header = {}
        elif event.kind == "identity.token_created":
            # The event carries no digest (watchers must not see even that): read the table.
            self._request_refresh()

    def _request_refresh(self) -> asyncio.Task[None]:
        """A read of the token table that starts from now on (one task serves every caller)."""
        self._dirty = True
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_loop())
        return self._refreshing

    async def _refresh_loop(self) -> None:
        while self._dirty:
            self._dirty = False
            wait = self._refreshed_at + _REFRESH_AT_MOST_EVERY_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._refreshed_at = time.monotonic()
            try:
                await self.load()
            except Exception as exc:  # the store is away: keep serving what we know
                log.warning("identity.refresh_failed", error=repr(exc))
                return

    async def _reload_since(self, moment: float) -> None:
        """Return once a read of the token table that started after ``moment`` has ended."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_MISS_WAIT_AT_MOST_S):
                while self._refreshed_at < moment:
                    await asyncio.shield(self._request_refresh())

    # -- verifying ----------------------------------------------------------------------

    async def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal an ``Authorization`` value stands for; ``None`` when there is none at all."""
        if authorization is None:
            return None
        hit = self._by_header.get(authorization)
        if hit is not None:
            record, principal = hit
            if record.expires_at is None or self.clock.now() < record.expires_at:
                self._used.add(record.name)
                return principal
        secret = bearer_secret(authorization)
        if secret is None:
            return None
        principal = await self.verify(secret)
        if len(self._by_header) >= _HEADER_CACHE_SIZE:
            self._by_header = {}
        known = self._by_name.get(principal.name)
        if known is not None:
            self._by_header[authorization] = (known, principal)
        return principal

    async def verify(self, secret: str) -> Principal:
        key = digest(secret)
        record = self._by_digest.get(key)
        if record is None:  # made on another replica a moment ago, or never made at all
            await self._reload_since(time.monotonic())
            record = self._by_digest.get(key)
        if record is None:
            raise Unauthenticated("unknown or revoked token")
        now = self.clock.now()
        if not record.usable(now):
            raise Unauthenticated(f"token {record.name} has expired")
        self._used.add(record.name)
        return record.principal()

    async def principal_named(self, name: str) -> Principal | None:
        """The principal of the usable token called ``name`` (a client certificate's CN stands for it)."""
        if name not in self._by_name:
            await self._reload_since(time.monotonic())
        now = self.clock.now()
        record = self._by_name.get(name)
        if record is None or not record.usable(now):
            return None
        self._used.add(record.name)
        return record.principal()

    # -- managing ------------------------------------------------------------------------

    async def create(
        self, name: str, scopes: list[str], *, expires: str | None, by: Principal
    ) -> IssuedToken:
        check_name(name)
        granted = check_scopes(scopes)
        if ADMIN in granted and not by.is_admin:
            raise PermissionDenied("only an admin token may make an admin token")
        secret = new_secret()

        async def op(tx: Tx) -> TokenRecord:
            if await q.get_token(tx.conn, name) is not None:
                raise Conflict(f"a token named {name} exists already (revoked tokens keep their name)", field="name")
            record = TokenRecord(
                name=name,
                digest=digest(secret),
                scopes=granted,
                created_at=tx.now,
                created_by=by.name,
                expires_at=parse_expiry(expires, tx.now),
            )
            await q.insert_token(tx.conn, record)
            public = record.to_dict()
            tx.emit("identity.token_created", name, {"token": public})
            return record

        record = await self.store.write(op)
        self._by_digest[record.digest] = record
        self._by_name[record.name] = record
        return IssuedToken(record, secret)

    async def list(self) -> list[TokenRecord]:
        now = self.clock.now()
        async with self.store.read() as conn:
            records = await q.load_tokens(conn)
        return [
            replace(r, last_used_at=now) if r.name in self._used else r
            for r in records
        ]

    async def revoke(self, name: str) -> TokenRecord:
        async def op(tx: Tx) -> TokenRecord:
            if not await q.revoke_token(tx.conn, name, tx.now):
                existing = await q.get_token(tx.conn, name)
                if existing is None:
                    raise NotFound(f"no token named {name}", field="name")
                return existing  # revoked already: revoking again changes nothing
            tx.emit("identity.token_revoked", name, {"name": name})
            record = await q.get_token(tx.conn, name)
            assert record is not None
            return record

        record = await self.store.write(op)
        self._apply(Event(0, "identity.token_revoked", name, {}, record.revoked_at or self.clock.now()))
        return record

    async def ensure_admin_token(self, path: Path, *, by: Principal) -> Path | None:
        """With no usable admin token in the store, make one and write it to ``path`` (mode 0600).

        Returns the path written, or ``None`` when an admin token exists already.
        """
        now = self.clock.now()
        async with self.store.read() as conn:
            records = await q.load_tokens(conn)
        if any(ADMIN in r.scopes and r.usable(now) for r in records):
            return None
        taken = {r.name for r in records}
        name = next(n for n in ("admin", *(f"admin-{i}" for i in range(2, 10_000))) if n not in taken)
        issued = await self.create(name, [ADMIN], expires=None, by=by)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(issued.secret + "\n")
        os.chmod(path, 0o600)
        return path

    # -- last used ---------------------------------------------------------------------------

    async def _touch_loop(self) -> None:
        while True:
            await asyncio.sleep(_TOUCH_EVERY_S)
            try:
                await self._flush_used()
            except Exception as exc:
                log.warning("identity.last_used_failed", error=repr(exc))

    async def _flush_used(self) -> None:
        if not self._used:
            return
        used, self._used = self._used, set()

        async def op(tx: Tx) -> None:
            await q.touch_tokens(tx.conn, {name: tx.now for name in used})

        await self.store.write(op)
