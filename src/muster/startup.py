"""Start-up failures, said in one line: what went wrong and which flag to change.

``muster serve``, ``muster migrate`` and the door processes turn what stops
them from starting (a port in use, a database that cannot be reached, a data
directory that cannot be written) into a :class:`StartupError`; the command
prints ``muster: <message>`` and exits 1. The traceback is logged only at
``--log-level debug``.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

__all__ = ["StartupError", "check_data_dir", "check_ports", "port_in_use", "store_unreachable"]

_DOORS = {"http": ("HTTP", "--http-port"), "grpc": ("gRPC", "--grpc-port")}


class StartupError(Exception):
    """Muster cannot start as told; the message names the cause and the flag to change."""


def port_in_use(door: str, port: int) -> StartupError:
    name, flag = _DOORS[door]
    return StartupError(f"port {port} is in use ({name} door); choose another with {flag}")


def check_ports(host: str, ports: dict[str, int]) -> None:
    """Bind each door's port for a moment, before anything starts (0: the system picks one, nothing to check)."""
    for door, port in ports.items():
        if port == 0:
            continue
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise StartupError(f"cannot use --host {host}: {exc.strerror}") from None
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the doors bind: TIME_WAIT is no owner
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise port_in_use(door, port) from None
                if exc.errno == errno.EACCES:
                    name, flag = _DOORS[door]
                    raise StartupError(
                        f"port {port} needs privileges this process lacks ({name} door); choose another with {flag}"
                    ) from None
                raise StartupError(f"cannot bind {host}:{port}: {exc.strerror}; check --host") from None


def check_data_dir(path: Path) -> None:
    """The data directory exists (made if absent) and can be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".muster-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(
            f"cannot write the data directory {path}: {reason}; choose another with --data-dir"
        ) from None


def store_unreachable(url: str, exc: BaseException) -> StartupError:
    """A database that cannot be opened or reached, without SQLAlchemy's traceback."""
    reason = _root_cause(exc)
    return StartupError(f"cannot open the database {url}: {reason}; check --database-url (or MUSTER_DATABASE_URL)")


def _root_cause(exc: BaseException) -> str:
    seen = exc
    while True:  # the driver's own error says most (refused, unknown host, no such database)
        inner = getattr(seen, "orig", None) or seen.__cause__
        if inner is None or inner is seen:
            break
        seen = inner
    text = " ".join(str(seen).split()) or type(seen).__name__
    if isinstance(seen, TimeoutError) or "timeout" in type(seen).__name__.lower():
        text = "it did not answer in time"
    return text[:300]
