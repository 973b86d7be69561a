"""The worker process: serve one adapter until SIGTERM, the supervisor's death, or stdin EOF.

Readiness is announced the snakepit way: ``GRPC_READY:<port>`` on stdout,
flushed, once the server accepts calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from muster._tasks import cancel_and_wait
from muster.bridge.adapter import Adapter
from muster.bridge.server import TOOL_THREAD_PREFIX, BridgeServer, make_executor
from muster.bridge.service import BridgeService
from muster.bridge.session import SessionStore
from muster.bridge.values import DEFAULT_MAX_MESSAGE_BYTES
from muster.errors import Invalid

__all__ = ["MAX_CPU", "WorkerOptions", "check_cpus", "load_adapter", "parse_cpus", "pin_to_cpus", "serve"]

logger = logging.getLogger(__name__)

READY_PREFIX = "GRPC_READY:"
_PR_SET_PDEATHSIG = 1
_PARENT_POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    adapter: str
    host: str = "127.0.0.1"
    port: int = 0
    session_ttl_s: float = 3600.0
    watch_queue_size: int = 1024
    max_tool_threads: int = 8
    max_concurrent_rpcs: int = 1000
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    stop_grace_s: float = 5.0
    supervised_by: int | None = None  # the supervisor's pid: exit when it dies
    registry: str | None = None
    registry_name: str | None = None
    heartbeat_interval_s: int = 5
    registry_ttl_s: int = 15
    tags: dict[str, str] = field(default_factory=dict)
    cpus: frozenset[int] | None = None  # run every thread of the worker on these CPUs only
    token_file: str | None = None  # callers must present this file's token (required beyond loopback)
    insecure: bool = False  # serve beyond loopback without a token all the same


def bridge_token(options: WorkerOptions) -> str | None:
    """The token callers must present, or ``None``; refuses a non-loopback bind without one."""
    from muster.server import is_loopback

    if options.token_file is not None:
        try:
            token = Path(options.token_file).read_text().strip()
        except OSError as exc:
            raise Invalid("token_file", f"cannot read {options.token_file}: {exc.strerror}") from None
        if not token:
            raise Invalid("token_file", f"{options.token_file} is empty")
        return token
    if not options.insecure and not is_loopback(options.host):
        raise Invalid(
            "host",
            f"binding {options.host} lets anyone who reaches it run tools: give --token-file FILE "
            "(callers then send 'authorization: Bearer <token>' metadata), or --insecure to accept the risk",
        )
    return None


def load_adapter(path: str) -> type[Adapter]:
    """The class named by ``package.module.Class`` (or ``package.module:Class``).

    The working directory is searched first, as ``python -m`` does: hosts start
    workers from their project folder, and ``muster bridge`` (a console script,
    whose ``sys.path`` starts with its own bin directory) must find the same
    modules as ``python -m muster.bridge``.
    """
    module_name, _, class_name = path.replace(":", ".").rpartition(".")
    if not module_name or not class_name:
        raise Invalid("adapter", f"{path!r} is not of the form package.module.Class")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        searched = ", ".join(p or cwd for p in sys.path[:4]) + (", …" if len(sys.path) > 4 else "")
        raise Invalid(
            "adapter", f"cannot import module {module_name!r}: {exc} (searched {searched})"
        ) from exc
    adapter = getattr(module, class_name, None)
    if not isinstance(adapter, type):
        raise Invalid("adapter", f"module {module_name!r} has no class {class_name!r}")
    return adapter


# Linux numbers CPUs below its NR_CPUS, at most 8192; a larger number is a typo, not a CPU.
MAX_CPU = 8191
_CPU_RANGE = re.compile(r"(\d+)(?:-(\d+))?", re.ASCII)


def parse_cpus(text: str) -> frozenset[int]:
    """CPU numbers from a list such as ``0``, ``0,2`` or ``0-3,6`` (as taskset and cpusets write them)."""
    cpus: set[int] = set()
    for part in text.split(","):
        match = _CPU_RANGE.fullmatch(part.strip())
        if match is None:
            raise Invalid("cpus", f"{text!r} is not a CPU list such as 0, 0,2 or 0-3")
        first = int(match[1])
        last = first if match[2] is None else int(match[2])
        if last < first:
            raise Invalid("cpus", f"range {part.strip()!r} runs backwards")
        if last > MAX_CPU:
            raise Invalid("cpus", f"CPU {last} is beyond {MAX_CPU}, the largest CPU number Linux has")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def check_cpus(cpus: Iterable[int]) -> frozenset[int]:
    """``cpus`` as a set, if it is a non-empty subset of the CPUs this process may use; else ``Invalid``."""
    if not hasattr(os, "sched_getaffinity"):
        raise Invalid("cpus", "CPU pinning needs Linux (sched_setaffinity)")
    chosen = frozenset(cpus)
    allowed = os.sched_getaffinity(0)
    if not chosen or not chosen <= allowed:
        raise Invalid(
            "cpus", f"{sorted(chosen)} must be a non-empty subset of the CPUs this process may use, {sorted(allowed)}"
        )
    return chosen


def pin_to_cpus(cpus: Iterable[int]) -> None:
    """Run every thread of this process, and every thread it starts later, on ``cpus`` only.

    On a small machine this takes the wake-ups between gRPC's own threads and the event
    loop off other cores, which is most of a call's latency at low load; in exchange the
    worker's throughput is bounded by those cores (see docs/bridge.md, "CPU pinning").
    """
    chosen = check_cpus(cpus)
    # sched_setaffinity acts on one thread, and a thread inherits its creator's mask when it
    # starts. Threads may already run (a library may start some) and start others meanwhile,
    # so go over the list again until a pass finds none left to pin.
    pinned: set[int] = set()
    while fresh := {int(task) for task in os.listdir("/proc/self/task")} - pinned:
        for task in fresh:
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setaffinity(task, chosen)
        pinned |= fresh


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGTERM us when the parent dies (and catch a parent already gone).

    Linux sends the signal when the *thread* that spawned us exits, so a supervisor should start
    workers from a thread that outlives them (``Worker`` in the thread running its event loop does).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        raise SystemExit(f"supervisor {parent_pid} is already gone")


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Belt and braces for PDEATHSIG: poll the parent pid, and treat stdin EOF as the parent's death."""
    loop = asyncio.get_running_loop()
    stdin_fd: int | None = None
    with contextlib.suppress(OSError, ValueError):
        stdin_fd = sys.stdin.fileno()
        os.set_blocking(stdin_fd, False)

        def on_stdin() -> None:
            try:
                data = os.read(stdin_fd, 4096) if stdin_fd is not None else b""
            except BlockingIOError:
                return
            if not data:
                logger.warning("stdin closed: the supervisor is gone, stopping")
                loop.remove_reader(stdin_fd)
                stop.set()

        loop.add_reader(stdin_fd, on_stdin)
    try:
        while not stop.is_set():
            if os.getppid() != parent_pid:
                logger.warning("supervisor %d is gone, stopping", parent_pid)
                stop.set()
                return
            await asyncio.sleep(_PARENT_POLL_S)
    finally:
        if stdin_fd is not None:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(stdin_fd)


@contextlib.asynccontextmanager
async def _registered(options: WorkerOptions, port: int, tool_names: list[str]) -> AsyncIterator[None]:
    """Keep the worker registered in a Muster catalog while it serves (if ``--registry``)."""
    if options.registry is None:
        yield
        return
    from muster.client import KeepAlive, MusterClient  # imported only when asked for

    advertised_host = "127.0.0.1" if options.host in ("0.0.0.0", "::", "") else options.host
    client = await MusterClient.connect(options.registry)
    try:
        async with KeepAlive(
            client,
            name=options.registry_name or f"bridge-{os.getpid()}",
            type="tool",
            role="production",
            url=f"grpc://{advertised_host}:{port}",
            caps=sorted(tool_names),
            heartbeat_interval_s=options.heartbeat_interval_s,
            ttl_s=options.registry_ttl_s,
        ) as keepalive:
            logger.info("registered in %s as %s", options.registry, keepalive.service_id)
            yield
    finally:
        await client.aclose()


async def serve(options: WorkerOptions) -> int:
    """Serve until told to stop; the process exit code."""
    if options.supervised_by is not None:
        _die_with_parent(options.supervised_by)
    if options.cpus is not None:
        pin_to_cpus(options.cpus)
    adapter_class = load_adapter(options.adapter)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    executor = make_executor(options.max_tool_threads)
    store = SessionStore(idle_ttl_s=options.session_ttl_s, watch_queue_size=options.watch_queue_size)
    service = BridgeService(adapter_class, store, executor=executor)
    server = BridgeServer(
        service,
        host=options.host,
        port=options.port,
        max_concurrent_rpcs=options.max_concurrent_rpcs,
        max_message_bytes=options.max_message_bytes,
        token=bridge_token(options),
    )
    port = await server.start()
    watcher = (
        asyncio.create_task(_watch_parent(options.supervised_by, stop), name="bridge-parent-watch")
        if options.supervised_by is not None
        else None
    )
    try:
        async with _registered(options, port, list(service.tools)):
            print(f"{READY_PREFIX}{port}", flush=True)
            logger.info("serving %s on %s", options.adapter, server.address)
            await stop.wait()
    finally:
        logger.info("stopping")
        if watcher is not None:
            await cancel_and_wait(watcher)
        await server.stop(options.stop_grace_s)
        executor.shutdown(wait=False, cancel_futures=True)
        _exit_past_busy_tool_threads()
    return 0


def _exit_past_busy_tool_threads() -> None:
    """Exit at once if sync tools still run after the grace period: Python would wait for them at exit."""
    busy = [t for t in threading.enumerate() if t.name.startswith(TOOL_THREAD_PREFIX) and t.is_alive()]
    deadline = time.monotonic() + 0.2  # idle threads are just picking up the shutdown
    for thread in busy:
        thread.join(max(0.0, deadline - time.monotonic()))
    running = sum(thread.is_alive() for thread in busy)
    if running:
        logger.warning("%d sync tool call(s) still running after the stop grace period: exiting without them", running)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
