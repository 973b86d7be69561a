"""Presence: how many ``muster serve`` processes share this store, counted by the store's own means.

Several servers on one store are replicas of one Muster; that is how it scales out, and it is also
what happens when someone starts a second server on the same data dir by mistake. Either way each
server says so in its log and in ``/stats``. A replica's presence lives exactly as long as its
process, so ``kill -9`` removes it at once, with nothing to expire:

* PostgreSQL: each replica holds a *shared* advisory lock on a dedicated connection (named
  ``muster replica <id>`` in ``pg_stat_activity``); the replicas are the lock's holders in
  ``pg_locks``, which every role may read.
* SQLite: each replica holds an exclusive ``flock`` on its own file in ``<database>.replicas/``;
  a file whose lock can be taken belongs to a process that is gone and is removed when counted.

A server's two door processes (``--doors split``) are one replica: only the process serving HTTP
registers. A paused (SIGSTOP) replica still counts: it shares the store, it just does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import uuid
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import text

from muster.store.engine import Store

__all__ = ["Presence", "count_replicas"]

log = structlog.get_logger("muster.presence")

_PRESENCE_LOCK = 0x6D75737465720004  # "muste" + 4: beside the leader lock (…0003)
_COUNT_HOLDERS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND classid = :classid AND objid = :objid AND objsubid = 1"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _replicas_dir(store: Store) -> Path | None:
    path = store.sqlite_path
    return Path(f"{path}.replicas") if path is not None else None


def _is_held(path: Path) -> bool:
    """True while the process that wrote ``path`` lives; a file nobody holds is removed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return False


async def count_replicas(store: Store) -> int:
    """Servers registered on this store right now (0 when none is, e.g. a store opened by a tool)."""
    if store.dialect == "sqlite":
        directory = _replicas_dir(store)
        if directory is None or not directory.is_dir():
            return 0
        return sum(1 for path in directory.glob("*.json") if _is_held(path))
    async with store.read() as conn:
        result = await conn.execute(
            _COUNT_HOLDERS, {"classid": _PRESENCE_LOCK >> 32, "objid": _PRESENCE_LOCK & 0xFFFFFFFF}
        )
        return int(result.scalar_one())


class Presence:
    """This server's mark on the store, kept while it runs and re-made if the store drops it."""

    def __init__(self, store: Store, *, about: dict[str, Any], check_interval: float = 5.0) -> None:
        self.store = store
        self.replica_id = uuid.uuid4().hex[:12]
        self.about = about
        self.check_interval = check_interval
        self._fd: int | None = None
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._last_count = 0

    async def join(self) -> int:
        """Register this server, say in the log how many share the store, and keep watching."""
        self._task = asyncio.create_task(self._watch(), name="muster-presence")
        try:
            await self._mark()
            count = await count_replicas(self.store)
        except Exception as exc:  # counted on the next round
            log.warning("store.presence_unknown", replica=self.replica_id, error=exc.__class__.__name__)
            return 0
        self._last_count = count
        if count > 1:
            log.info(
                "store.shared",
                replica=self.replica_id,
                replicas=count,
                meaning=f"{count} replicas share this store and act as one Muster",
            )
        else:
            log.info("store.sole", replica=self.replica_id, replicas=count)
        return count

    async def _mark(self) -> None:
        if self.store.dialect == "sqlite":
            self._mark_file()
        else:
            await self._mark_lock()

    def _mark_file(self) -> None:
        directory = _replicas_dir(self.store)
        if directory is None or self._fd is not None:  # an in-memory store has nobody to share it with
            return
        directory.mkdir(parents=True, exist_ok=True)
        staging = directory / f".{self.replica_id}.tmp"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # locked before it has its counted name: never seen unheld
        os.write(fd, json.dumps({"replica": self.replica_id, "pid": os.getpid(), **self.about}).encode())
        staging.rename(directory / f"{self.replica_id}.json")
        self._fd = fd

    async def _mark_lock(self) -> None:
        import asyncpg

        if self._conn is not None:
            try:
                await self._conn.fetchval("SELECT 1")
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                with contextlib.suppress(Exception):
                    self._conn.terminate()
                self._conn = None
        dsn = self.store.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        conn = await asyncpg.connect(
            dsn,
            timeout=self.store.timeout,
            command_timeout=self.store.timeout,
            server_settings={"application_name": f"muster replica {self.replica_id}"},
        )
        await conn.execute("SELECT pg_advisory_lock_shared($1)", _PRESENCE_LOCK)
        self._conn = conn

    async def _watch(self) -> None:
        """Re-mark after the store lost the mark (a database restart), and log when the count changes."""
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                await self._mark()
                count = await count_replicas(self.store)
            except Exception as exc:  # the store is away; the next round tries again
                log.warning("store.presence_unknown", replica=self.replica_id, error=exc.__class__.__name__)
                continue
            if count != self._last_count:
                log.info("store.replicas_changed", replica=self.replica_id, replicas=count, was=self._last_count)
                self._last_count = count

    async def leave(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._fd is not None:
            directory = _replicas_dir(self.store)
            if directory is not None:
                with contextlib.suppress(FileNotFoundError):
                    (directory / f"{self.replica_id}.json").unlink()
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
