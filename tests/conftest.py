"""Shared fixtures: real SQLite and real PostgreSQL stores, and real servers on free ports.

PostgreSQL tier: set ``MUSTER_TEST_POSTGRES_URL`` (``.ci/run`` sets it and
requires it with ``MUSTER_REQUIRE_POSTGRES=1``). Without it the default
``postgresql://postgres@127.0.0.1:5432/test`` is tried; if it cannot be
reached, PostgreSQL tests are skipped and the summary says so.
Each test gets its own database, cloned from a migrated template.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from muster.config import Settings
from muster.store.engine import Store
from muster.store.migrate import upgrade

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
_PG_ADMIN = os.environ.get("MUSTER_TEST_POSTGRES_URL", DEFAULT_PG)
_REQUIRE_PG = os.environ.get("MUSTER_REQUIRE_POSTGRES") == "1"
_TEMPLATE = f"muster_tpl_{os.getpid()}"


# Every error any test receives over HTTP is checked against the one shape docs/api.md describes:
# {"error": CODE, "message": TEXT, "field"?: TEXT}, and nothing else.
ERROR_KEYS = frozenset({"error", "message", "field"})


def error_shape_faults(response: httpx.Response) -> str | None:
    """Why an HTTP error reply is not in Muster's error shape (None when it is, or is no error)."""
    if response.status_code < 400 or not hasattr(response, "_content"):  # a success, or a stream not read
        return None
    if response.request.url.path == "/ready":  # a probe's answer ({"status", "reason"}), not an error
        return None
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"{response.status_code} is not JSON: {response.headers.get('content-type')!r}"
    body = response.json()
    if not isinstance(body, dict) or not {"error", "message"} <= set(body) or not set(body) <= ERROR_KEYS:
        return f"{response.status_code} is not the error shape: {response.text[:300]}"
    if not all(isinstance(body[key], str) and body[key] for key in body):
        return f"{response.status_code} has an empty or non-text member: {response.text[:300]}"
    return None


def _checked(send: Any, *, asynchronous: bool) -> Any:
    def check(response: httpx.Response) -> httpx.Response:
        fault = error_shape_faults(response)
        assert fault is None, f"{response.request.method} {response.request.url}: {fault}"
        return response

    if asynchronous:
        async def async_send(self: Any, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            return check(await send(self, request, **kwargs))

        return async_send

    def sync_send(self: Any, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        return check(send(self, request, **kwargs))

    return sync_send


httpx.Client.send = _checked(httpx.Client.send, asynchronous=False)  # type: ignore[method-assign]
httpx.AsyncClient.send = _checked(httpx.AsyncClient.send, asynchronous=True)  # type: ignore[method-assign]


def wait_for(probe: Any, timeout: float = 15.0) -> Any:
    """Poll ``probe`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def _async_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


def _pg_dsn(database: str) -> str:
    base, _, _ = _PG_ADMIN.rpartition("/")
    return f"{base}/{database}"


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_PG_ADMIN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


_pg_state: dict[str, Any] = {}


def _pg_available() -> str | None:
    """None when PostgreSQL is usable, else the reason it is not."""
    if "reason" not in _pg_state:
        async def probe() -> None:
            await _admin(f'DROP DATABASE IF EXISTS "{_TEMPLATE}"')
            await _admin(f'CREATE DATABASE "{_TEMPLATE}"')
            store = Store(_async_url(_pg_dsn(_TEMPLATE)))
            try:
                await upgrade(store)
            finally:
                await store.close()

        try:
            # A fresh thread has no running loop, so this also works from async fixtures.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, probe()).result(timeout=60)
            _pg_state["reason"] = None
        except Exception as exc:
            _pg_state["reason"] = f"PostgreSQL tier skipped: {_PG_ADMIN} unreachable ({exc.__class__.__name__}: {exc})"
    return _pg_state["reason"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _pg_state.get("reason") is None and "reason" in _pg_state:
        with contextlib.suppress(Exception):
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{_TEMPLATE}"'))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    reason = _pg_state.get("reason")
    if reason:
        terminalreporter.write_line(reason, yellow=True)


def require_postgres() -> None:
    reason = _pg_available()
    if reason is not None:
        if _REQUIRE_PG:
            pytest.fail(f"MUSTER_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)


@contextlib.asynccontextmanager
async def fresh_database(engine: str, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database of ``engine``; yields its SQLAlchemy URL."""
    if engine == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / f'muster-{uuid.uuid4().hex[:8]}.db'}"
        store = Store(url)
        try:
            await upgrade(store)
        finally:
            await store.close()
        yield url
        return
    require_postgres()
    name = f"muster_t_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{_TEMPLATE}"')
    try:
        yield _async_url(_pg_dsn(name))
    finally:
        with contextlib.suppress(Exception):
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_database(engine: str, tmp_path: Path, stack: contextlib.ExitStack) -> str | None:
    """For a server outside a test's own loop (module fixtures): ``None`` on SQLite (the server's own
    file), else a fresh PostgreSQL database's URL, dropped when ``stack`` closes."""
    if engine == "sqlite":
        return None
    require_postgres()
    runner = stack.enter_context(asyncio.Runner())
    manager = fresh_database("postgresql", tmp_path)
    url = runner.run(manager.__aenter__()).replace("+asyncpg", "")
    stack.callback(lambda: runner.run(manager.__aexit__(None, None, None)))
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_name(request: pytest.FixtureRequest) -> str:
    """Both engines: every store test runs on SQLite and on PostgreSQL."""
    if request.param == "postgresql":
        require_postgres()
    return str(request.param)


@pytest.fixture
async def db_url(engine_name: str, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(engine_name, tmp_path) as url:
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A migrated store on a fresh database (SQLite and PostgreSQL)."""
    instance = Store(db_url)
    try:
        yield instance
    finally:
        await instance.close()


def settings_for(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": db_url.replace("+aiosqlite", "").replace("+asyncpg", ""),
        "heartbeat_flush_interval": 0.05,
        "event_poll_interval": 0.02,
        "monitor_interval": 3600,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def runtime(db_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    """The whole service layer of one process, on a fresh database, no doors."""
    from muster.server import build_runtime, close_runtime

    built = await build_runtime(settings_for(db_url, tmp_path))
    try:
        yield built
    finally:
        await close_runtime(built)


# -- end-to-end: real servers -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A real ``muster serve`` on free ports, with its own data directory."""

    data_dir: Path
    database_url: str | None = None
    doors: str = "split"
    extra_env: dict[str, str] = field(default_factory=dict)
    # More ``muster serve`` flags (``--auth``, TLS); with TLS, readiness is read from the log.
    extra_args: list[str] = field(default_factory=list)
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # Two servers on one data dir keep their logs apart by name.
    log_name: str = "server.log"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, *, monitor_interval: float = 0.2) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
        env.update(self.extra_env)
        args = [
            sys.executable, "-m", "muster.cli", "serve",
            "--data-dir", str(self.data_dir),
            "--http-port", str(self.http_port),
            "--grpc-port", str(self.grpc_port),
            "--monitor-interval", str(monitor_interval),
            "--doors", self.doors,
            "--shutdown-grace", "3",
        ]
        if self.database_url:
            args += ["--database-url", self.database_url]
        args += self.extra_args
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / self.log_name
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=log, env=env, start_new_session=True)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.logs()}")
            if "--tls-cert" in self.extra_args:  # plaintext probes cannot speak to it: trust its word
                text = self.logs()
                if "MUSTER_READY http=" in text and "MUSTER_READY grpc=" in text:
                    return
                time.sleep(0.1)
                continue
            try:
                http_ok = httpx.get(f"{self.http_url}/ready", timeout=1).status_code == 200
                with grpc.insecure_channel(self.grpc_target) as channel:
                    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if http_ok and reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        if sig == signal.SIGKILL:
            os.killpg(self.process.pid, signal.SIGKILL)  # the whole group: doors die too
        else:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Start real servers; every one started is stopped at the end of the test."""
    started: list[ServerProcess] = []

    def make(**kwargs: Any) -> ServerProcess:
        kwargs.setdefault("data_dir", tmp_path / f"server{len(started)}")
        monitor_interval = kwargs.pop("monitor_interval", 0.2)
        server = ServerProcess(**kwargs)
        started.append(server)
        return server.start(monitor_interval=monitor_interval)

    yield make
    for server in started:
        with contextlib.suppress(Exception):
            server.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One SQLite server shared by a module's read-mostly end-to-end tests."""
    server = ServerProcess(data_dir=tmp_path_factory.mktemp("shared-server")).start()
    yield server
    server.stop()


@pytest.fixture
async def pg_server_url(tmp_path: Path) -> AsyncIterator[str]:
    """A fresh PostgreSQL database URL for a server process (skips without PostgreSQL)."""
    async with fresh_database("postgresql", tmp_path) as url:
        yield url.replace("+asyncpg", "")
