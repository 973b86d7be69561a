"""The composition root: build a process's runtime, serve its doors, shut down cleanly.

Process model (``--doors split``, the default): ``muster serve`` migrates the
store, starts the gRPC door as a child process, and serves HTTP itself. Each
process builds its own runtime over the shared store and follows the shared
event log, so neither door's load can starve the other (a saturated HTTP
server on the same event loop cut gRPC throughput by ~98% in our
measurements). One of them wins leadership and runs the heartbeat monitor and
the alert file sink. If the gRPC door dies, the server stops with a non-zero
status so its supervisor (systemd, Kubernetes) restarts it whole; the gRPC door
dies with its parent. ``--doors single`` runs both doors on one event loop.

Shutdown: SIGTERM or SIGINT stops accepting, drains in-flight requests for up
to ``--shutdown-grace`` seconds, flushes buffered heartbeats, and closes the
store.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Generator
from importlib import import_module
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from muster._loop import fast_loop_factory
from muster.config import Settings
from muster.startup import StartupError, check_data_dir, check_ports, port_in_use, store_unreachable

__all__ = ["build_runtime", "exposure_refusal", "serve", "serve_doors"]

log = structlog.get_logger("muster.server")

# Every context beyond the catalog: "module:function" building it from the runtime.
CONTEXTS: tuple[str, ...] = (
    "muster.identity.context:build",
    "muster.graph.context:build",
    "muster.leases.context:build",
)


async def build_runtime(settings: Settings, *, clock: Any = None) -> Any:
    """Store, event hub and every context's service, loaded and following the log."""
    from muster.catalog.model import MonitorThresholds
    from muster.catalog.service import CatalogService
    from muster.clock import SystemClock
    from muster.events.hub import EventHub
    from muster.runtime import Runtime
    from muster.store.engine import Store

    clock = clock or SystemClock()
    store = Store(settings.resolved_database_url(), clock=clock, timeout=settings.db_timeout)
    hub = EventHub(store, poll_interval=settings.event_poll_interval)
    from muster.limits import WatchSlots

    hub.slots = WatchSlots(settings.max_watchers, settings.max_watchers_per_caller, auth=settings.auth)
    catalog = CatalogService(
        store,
        hub,
        clock,
        thresholds=MonitorThresholds(settings.mark_down_after_misses, settings.deregister_after_misses),
        flush_interval=settings.heartbeat_flush_interval,
    )
    runtime = Runtime(settings=settings, store=store, hub=hub, clock=clock, catalog=catalog)
    for spec in CONTEXTS:
        module, _, function = spec.partition(":")
        context = getattr(import_module(module), function)(runtime)
        runtime.contexts[context.name] = context
    position = await hub.head()
    await catalog.load()
    for context in runtime.contexts.values():
        await context.load()
    await hub.start(position)
    # Everything loaded so far lives as long as the process: keep it out of the
    # cyclic collector's full passes, which would otherwise walk it again and again.
    gc.freeze()
    catalog.start()
    for context in runtime.contexts.values():
        context.start()
    return runtime


async def close_runtime(runtime: Any) -> None:
    for context in reversed(list(runtime.contexts.values())):
        with contextlib.suppress(Exception):
            await context.close()
    await runtime.catalog.close()
    await runtime.hub.close()
    await runtime.store.close()


def _set_parent_death_signal() -> None:
    """Linux: die with the parent (a door must not outlive ``muster serve``)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def serve_doors(
    settings: Settings,
    doors: set[str],
    *,
    ready: Callable[[str], None] | None = None,
    child: subprocess.Popen[bytes] | None = None,
) -> int:
    """Serve ``doors`` ("http", "grpc") in this process until SIGTERM/SIGINT; 0 on a clean stop."""
    import uvicorn

    from muster.catalog.monitor import HeartbeatMonitor
    from muster.catalog.preservation import SelfPreservation
    from muster.events.retention import EventPruner
    from muster.events.sinks import AlertFileSink
    from muster.grpc.server import GrpcDoor
    from muster.http.app import create_app
    from muster.store.leader import Leadership
    from muster.store.presence import Presence

    runtime = await build_runtime(settings)
    if settings.auth and "http" in doors:  # the main process (both doors in one, or the HTTP one)
        await _ensure_admin_token(runtime)
    leadership = Leadership(runtime.store, lease_s=settings.leader_lease)
    # Every server keeps the whole alert log in its own data dir, written by its main process.
    sink = AlertFileSink(runtime.hub, settings.events_dir)
    if "http" in doors:
        sink.start()
    monitor = HeartbeatMonitor(
        runtime.catalog,
        leadership,
        interval=settings.monitor_interval,
        alerts_retained=settings.alerts_retained,
        preservation=SelfPreservation(settings.self_preservation_threshold, settings.self_preservation_min_instances),
    )
    leadership.start()
    monitor.start()
    pruner = EventPruner(
        runtime.store,
        leadership,
        retention_hours=settings.event_retention_hours,
        interval=settings.event_prune_interval,
    )
    pruner.start()
    from muster.events.bus import BusPublisher, configured_sinks

    # The fleet's bus: published by whichever process leads, from a durable cursor per sink.
    bus = BusPublisher(
        runtime.hub, leadership, configured_sinks(settings), batch=settings.bus_batch, start=settings.bus_start,
        timeout=settings.bus_timeout,
    )
    runtime.bus = bus
    if bus.sinks:
        runtime.catalog.bus_status = bus.status
    bus.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    # Readiness is announced once every door of the server is bound, never door by door: whoever waits
    # for the line must be able to use both doors when it comes.
    announcements: list[str] = []
    child_watch = asyncio.create_task(_watch_child(child, stop)) if child is not None else None
    if child is not None:
        runtime.doors_starting.add("grpc")
        relay = asyncio.create_task(_relay_child_output(child, runtime.doors_starting, announcements.append))
    grpc_door: GrpcDoor | None = None
    presence: Presence | None = None
    http_server: Any = None
    http_task: asyncio.Task[Any] | None = None
    try:
        if "grpc" in doors:
            grpc_door = GrpcDoor(runtime)
            try:
                port = await grpc_door.start(settings.host, settings.grpc_port)
            except OSError:
                raise port_in_use("grpc", settings.grpc_port) from None
            log.info("door.serving", door="grpc", host=settings.host, port=port)
            announcements.append(f"grpc={settings.host}:{port}")
        if child is not None and not await _child_ready(child, runtime.doors_starting):
            return 1  # the gRPC door could not start; it said why, in one line, on stderr
        if "http" in doors:
            http_server = _QuietServer(
                uvicorn.Config(
                    create_app(runtime),
                    host=settings.host,
                    port=settings.http_port,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                    timeout_graceful_shutdown=int(settings.shutdown_grace) or None,
                    server_header=False,
                    **_uvicorn_protocol(settings),
                )
            )
            http_task = asyncio.create_task(http_server.serve(), name="muster-http")
            while not http_server.started and not http_task.done():  # noqa: ASYNC110 - uvicorn exposes a flag only
                await asyncio.sleep(0.01)
            if http_task.done():
                try:
                    http_task.result()
                except SystemExit:  # uvicorn could not bind (it exits): say it as Muster does
                    raise port_in_use("http", settings.http_port) from None
            log.info("door.serving", door="http", host=settings.host, port=settings.http_port)
            announcements.append(f"http={settings.host}:{settings.http_port}")
        if "http" in doors:  # one mark per server, by the process that serves HTTP
            presence = Presence(runtime.store, about={"doors": announcements.copy()})
            await presence.join()
        if ready:
            for line in announcements:
                ready(line)
        waiters = [asyncio.ensure_future(stop.wait())]
        if http_task is not None:
            waiters.append(http_task)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        log.info("server.draining", grace=settings.shutdown_grace)
        runtime.draining = True
        if http_server is not None:
            http_server.should_exit = True
        drains: list[Any] = []
        if grpc_door is not None:
            drains.append(grpc_door.stop(settings.shutdown_grace))
        if http_task is not None:
            drains.append(http_task)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(settings.shutdown_grace + 5):
                await asyncio.gather(*drains, return_exceptions=True)
        child_failed = child is not None and child.poll() is not None
        if child is not None:
            if child_watch is not None:
                child_watch.cancel()
            relay.cancel()
            await _stop_child(child, settings.shutdown_grace)
        if presence is not None:
            await presence.leave()
        await monitor.close()
        await pruner.close()
        await sink.close()
        await bus.close()
        await leadership.release()  # before the store closes: a follower takes over at once
        await close_runtime(runtime)
        log.info("server.stopped")
    return 1 if child_failed else 0


async def _ensure_admin_token(runtime: Any) -> None:
    """First start with auth and no admin token yet: make one, write it to the data dir, say where."""
    from muster.identity.model import SYSTEM

    path = runtime.settings.admin_token_path
    written = await runtime.contexts["identity"].ensure_admin_token(path, by=SYSTEM)
    if written is not None:
        log.warning("identity.admin_token_written", path=str(written.resolve()), mode="0600")


def _uvicorn_protocol(settings: Settings) -> dict[str, Any]:
    """uvicorn's protocol (deadlines against slow clients) and TLS options (client certificates with a CA)."""
    from muster.http.protocol import guarded_protocol

    base: Any = None
    options: dict[str, Any] = {"timeout_keep_alive": settings.http_idle_timeout}
    if settings.tls:
        import ssl

        options |= {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
        if settings.tls_client_ca is not None:
            options["ssl_ca_certs"] = str(settings.tls_client_ca)
            options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        if settings.tls_principal_from_cn:
            from muster.identity.tls import ClientCertProtocol

            base = ClientCertProtocol
    limits = (settings.http_header_timeout, settings.http_body_timeout, settings.max_header_bytes)
    options["http"] = guarded_protocol(*limits) if base is None else guarded_protocol(*limits, base=base)
    return options


class _QuietServer:
    """uvicorn.Server without its own signal handling: ours drives the shutdown."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield

        return Server(config)


async def migrate(settings: Settings) -> tuple[str | None, str | None]:
    from muster.store.engine import Store
    from muster.store.migrate import upgrade

    url = settings.resolved_database_url()
    shown = _redacted(settings.database_url or url)
    try:
        store = Store(url, timeout=settings.db_timeout)
    except Exception as exc:  # a URL SQLAlchemy cannot use (unknown driver, malformed)
        raise store_unreachable(shown, exc) from exc
    try:
        return await upgrade(store)
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        raise store_unreachable(shown, exc) from exc
    finally:
        with contextlib.suppress(Exception):
            await store.close()


def serve(settings: Settings) -> int:
    """``muster serve``: migrate, then serve HTTP here and gRPC in a child process (or both here)."""
    refusal = exposure_refusal(settings)
    if refusal is not None:
        print(f"muster: {refusal}", file=sys.stderr)
        return 2
    from muster.logs import configure_logging

    configure_logging(settings.log_level, door="http" if settings.doors == "split" else "all")
    try:
        return _serve(settings)
    except StartupError as exc:
        return startup_failed(exc)


def startup_failed(exc: StartupError) -> int:
    """One line on stderr (the traceback of the cause only at debug level); exit status 1."""
    log.debug("startup.failed", exc_info=exc.__cause__ or exc)
    print(f"muster: {exc}", file=sys.stderr, flush=True)
    return 1


def _serve(settings: Settings) -> int:
    try:  # the shape limits (MUSTER_MAX_LABELS, ...) are read from the environment when first imported
        import_module("muster.limits")
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    check_data_dir(settings.data_dir)
    check_ports(settings.host, {"http": settings.http_port, "grpc": settings.grpc_port})
    child: subprocess.Popen[bytes] | None = None
    if settings.doors == "split":
        # Metrics of both processes are aggregated through files; the mode must
        # be chosen before prometheus-client is first imported in this process.
        metrics_dir = str((settings.data_dir / ".metrics").resolve())
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.makedirs(metrics_dir, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    before, after = asyncio.run(migrate(settings))
    log.info("store.migrated", database=_redacted(settings.resolved_database_url()), before=before, after=after)
    if settings.doors == "single":
        return asyncio.run(serve_doors(settings, {"http", "grpc"}, ready=_print_ready))
    # Started before this process creates any gRPC object, and as a fresh
    # interpreter (never a fork): the gRPC door process.
    child = subprocess.Popen(
        [sys.executable, "-m", "muster.server", "grpc"], env=_door_env(settings), stdout=subprocess.PIPE
    )
    # Both door processes run on uvloop: measured, it cut the gRPC door's CPU per
    # registration by a fifth, and the gRPC end-to-end suite passes on it.
    with asyncio.Runner(loop_factory=fast_loop_factory()) as runner:
        return runner.run(serve_doors(settings, {"http"}, ready=_print_ready, child=child))



def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_refusal(settings: Settings) -> str | None:
    """Why Muster will not serve as told (a non-loopback address, no auth), or ``None``."""
    if settings.auth or settings.insecure or is_loopback(settings.host):
        return None
    return (
        f"refusing to serve {settings.host} without auth: anyone who reaches the ports could change everything. "
        "Turn auth on with --auth (or MUSTER_AUTH=1; an admin token is written to <data-dir>/admin.token), "
        "or accept the risk with --insecure"
    )


def _print_ready(line: str) -> None:
    print(f"MUSTER_READY {line}", flush=True)


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _door_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"MUSTER_{name.upper()}"] = str(value)
    return env


async def _watch_child(child: subprocess.Popen[bytes], stop: asyncio.Event) -> None:
    """A door process that dies takes the server down with it (a supervisor restarts the whole)."""
    await asyncio.get_running_loop().run_in_executor(None, child.wait)
    if not stop.is_set():
        log.error("door.exited", door="grpc", code=child.returncode)
        stop.set()


async def _relay_child_output(
    child: subprocess.Popen[bytes], starting: set[str], ready: Callable[[str], None] | None
) -> None:
    """Pass the gRPC door's announcements on, and mark it started when it says so."""
    assert child.stdout is not None
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, child.stdout.readline):
        text = line.decode(errors="replace").strip()
        if text.startswith("MUSTER_READY grpc="):
            starting.discard("grpc")
            if ready is not None:
                ready(text.removeprefix("MUSTER_READY "))
        elif text:
            print(text, flush=True)


async def _child_ready(child: subprocess.Popen[bytes], starting: set[str]) -> bool:
    """Wait until the gRPC door process says it serves (True) or exits without having done so (False)."""
    while "grpc" in starting:
        if child.poll() is not None:
            return False
        await asyncio.sleep(0.02)
    return True


async def _stop_child(child: subprocess.Popen[bytes], grace: float) -> int:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(grace + 5):
            return await loop.run_in_executor(None, child.wait)
    except TimeoutError:
        child.kill()
        return await loop.run_in_executor(None, child.wait)


def _door_main(door: str) -> None:
    from muster.logs import configure_logging

    _set_parent_death_signal()
    settings = Settings()
    configure_logging(settings.log_level, door=door)
    with asyncio.Runner(loop_factory=fast_loop_factory()) as runner:
        try:
            code = runner.run(serve_doors(settings, {door}, ready=_print_ready))
        except StartupError as exc:
            code = startup_failed(exc)
    sys.exit(code)


if __name__ == "__main__":
    _door_main(sys.argv[1])
