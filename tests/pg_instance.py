"""A PostgreSQL server of a test's own: ``initdb`` in a temporary directory, its own port and socket.

The cluster tier crashes and restarts it (``pg_ctl stop -m immediate``: every backend dies at once, as in a
power cut, and the next start replays the WAL) without touching the machine's shared server, which the rest
of the suite uses. As root (CI here), the server runs as the ``postgres`` user, since PostgreSQL refuses root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port

__all__ = ["PrivatePostgres", "postgres_binaries"]


def postgres_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (Debian keeps them out of PATH), or None."""
    for found in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (found / "initdb").exists() and (found / "pg_ctl").exists():
            return found
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """One PostgreSQL server in a temporary directory; ``url`` reaches its database ``muster``."""

    def __init__(self) -> None:
        binaries = postgres_binaries()
        if binaries is None:
            raise RuntimeError("PostgreSQL's initdb and pg_ctl are not installed")
        self.bin = binaries
        self.root = Path(tempfile.mkdtemp(prefix="muster-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/muster"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def create(self) -> PrivatePostgres:
        """initdb, start, and create the database ``muster``."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "muster")
        return self

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300"
                   " -c log_lock_waits=on -c deadlock_timeout=1s")  # a wait over 1 s is logged with its blocker
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def crash(self) -> None:
        """Stop at once, as a crash does: backends die without a checkpoint; the next start recovers."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self, keep_log: Path | None = None) -> None:
        """Stop and remove it; its server log is copied to ``keep_log`` first, when given."""
        if keep_log is not None and (self.root / "log").exists():
            shutil.copyfile(self.root / "log", keep_log)
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
