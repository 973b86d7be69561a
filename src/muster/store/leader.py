"""Leadership: exactly one process runs the heartbeat sweeper and the sinks.

* PostgreSQL: a session advisory lock held on a dedicated connection (asyncpg
  releases advisory locks when a pooled connection is returned, so it cannot
  come from the pool). If that connection dies, leadership is lost and another
  replica takes it on its next try.
* SQLite: an exclusive ``flock`` on a file beside the database; the kernel
  drops it when the process dies, even after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any

import structlog

from muster.store.engine import Store

__all__ = ["Leadership"]

log = structlog.get_logger("muster.leader")
_LEADER_LOCK = 0x6D75737465720003


class Leadership:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._fd: int | None = None
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._conn is not None

    async def try_acquire(self) -> bool:
        """Take leadership if nobody holds it; True while this process holds it."""
        if self.store.dialect == "sqlite":
            return self._try_file_lock()
        return await self._try_advisory_lock()

    def _try_file_lock(self) -> bool:
        if self._fd is not None:
            return True
        path = self.store.sqlite_path
        lock_path = Path(f"{path}.leader") if path is not None else Path(f"/tmp/muster-{os.getpid()}.leader")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        log.info("leader.acquired", lock=str(lock_path))
        return True

    async def _try_advisory_lock(self) -> bool:
        import asyncpg

        if self._conn is not None:
            try:
                await self._conn.fetchval("SELECT 1")
                return True
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("leader.lost")
                with contextlib.suppress(Exception):
                    self._conn.terminate()
                self._conn = None
        dsn = self.store.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        try:
            conn = await asyncpg.connect(dsn, timeout=self.store.timeout, command_timeout=self.store.timeout)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("leader.connect_failed", error=repr(exc))
            return False
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_LOCK):
            self._conn = conn
            log.info("leader.acquired", lock="pg_advisory")
            return True
        await conn.close()
        return False

    async def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
