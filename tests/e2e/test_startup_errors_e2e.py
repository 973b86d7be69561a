"""Start-up failures print one line naming the cause and the flag to change, exit 1, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _pg_dsn, free_port, require_postgres


def _muster(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "muster.cli", *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=120
    )


def _one_line_failure(done: subprocess.CompletedProcess[str]) -> str:
    assert 1 == done.returncode, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "MUSTER_READY" not in done.stdout  # nobody waiting for readiness is told a lie
    return done.stderr.strip().splitlines()[-1]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize("doors", ["split", "single"])
@pytest.mark.parametrize(("door", "flag"), [("gRPC", "--grpc-port"), ("HTTP", "--http-port")])
def test_port_in_use_names_the_door_and_the_flag(
    tmp_path: Path, taken_port: int, door: str, flag: str, doors: str
) -> None:
    """A port held by another process: `muster: port N is in use (X door); choose another with --x-port`."""
    ports = {"--http-port": str(free_port()), "--grpc-port": str(free_port()), flag: str(taken_port)}
    done = _muster("serve", "--doors", doors, "--data-dir", str(tmp_path / "d"), *sum(ports.items(), ()), cwd=tmp_path)
    assert f"muster: port {taken_port} is in use ({door} door); choose another with {flag}" == _one_line_failure(done)


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_unreachable_database_is_one_line(tmp_path: Path, command: str) -> None:
    """A database nobody answers at: one line naming it (password hidden) and --database-url."""
    url = f"postgresql://muster:secret@127.0.0.1:{free_port()}/muster"
    extra = ["--http-port", str(free_port()), "--grpc-port", str(free_port())] if command == "serve" else []
    done = _muster(command, "--data-dir", str(tmp_path / "d"), "--database-url", url, *extra, cwd=tmp_path)
    line = _one_line_failure(done)
    assert line.startswith(f"muster: cannot open the database postgresql://***@127.0.0.1:{url.rsplit(':', 1)[1]}")
    assert "--database-url" in line and "secret" not in done.stderr


def test_missing_postgres_database_says_so(tmp_path: Path) -> None:
    """A PostgreSQL that answers but lacks the database: the line says it does not exist."""
    require_postgres()
    url = _pg_dsn("muster_no_such_database")
    line = _one_line_failure(_muster("migrate", "--database-url", url, cwd=tmp_path))
    assert 'database "muster_no_such_database" does not exist' in line


def test_unwritable_data_dir_names_the_flag(tmp_path: Path) -> None:
    """A data directory that cannot be made: one line naming it and --data-dir."""
    (tmp_path / "a-file").write_text("")
    ports = ["--http-port", str(free_port()), "--grpc-port", str(free_port())]
    done = _muster("serve", "--data-dir", str(tmp_path / "a-file" / "data"), *ports, cwd=tmp_path)
    line = _one_line_failure(done)
    assert line.startswith(f"muster: cannot write the data directory {tmp_path / 'a-file' / 'data'}")
    assert line.endswith("choose another with --data-dir")


def test_bad_shape_limit_names_the_variable(tmp_path: Path) -> None:
    """A shape limit out of range in the environment: one line naming the variable and its range."""
    ports = ["--http-port", str(free_port()), "--grpc-port", str(free_port())]
    done = _muster("serve", "--data-dir", str(tmp_path / "d"), *ports, cwd=tmp_path, env={"MUSTER_MAX_LABELS": "0"})
    assert "muster: MUSTER_MAX_LABELS: must be a whole number from 1 to 1,000 (got '0')" == _one_line_failure(done)


def test_debug_level_shows_the_cause(tmp_path: Path) -> None:
    """With --log-level debug the cause's traceback is logged too, for whoever needs it."""
    url = f"postgresql://muster@127.0.0.1:{free_port()}/muster"
    done = _muster("migrate", "--database-url", url, "--log-level", "debug", cwd=tmp_path)
    assert 1 == done.returncode
    assert "Traceback" in done.stderr and "startup.failed" in done.stderr
