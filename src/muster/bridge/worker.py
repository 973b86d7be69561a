"""Supervising worker processes: ``Worker`` (one) and ``WorkerPool`` (N, self-healing).

``Worker`` starts ``python -m muster.bridge`` for an adapter, waits for its
``GRPC_READY:<port>`` line, connects and initialises a session. Leaving the
``async with`` cleans the session up and stops the process: SIGTERM, then
SIGKILL after a grace period. The child is started with ``--supervised-by``
our pid and a stdin pipe, so it also exits if this process dies without
cleaning up (PR_SET_PDEATHSIG on Linux, parent polling and stdin EOF).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from muster._tasks import cancel_and_wait
from muster.bridge.adapter import Adapter
from muster.bridge.client import BridgeClient, ToolFailed
from muster.bridge.process import READY_PREFIX, check_cpus
from muster.errors import FailedPrecondition, Invalid, MusterError, ResourceExhausted, Unavailable

__all__ = ["ToolFailed", "Worker", "WorkerPool", "adapter_path"]

logger = logging.getLogger(__name__)

_MAX_READY_LINES = 1000  # lines a worker may print before GRPC_READY


def adapter_path(adapter: type[Adapter] | type | str) -> str:
    """``package.module.Class`` for an adapter class (it must be importable by a new process)."""
    if isinstance(adapter, str):
        return adapter
    if adapter.__module__ == "__main__" or "<locals>" in adapter.__qualname__:
        raise Invalid("adapter", f"{adapter.__qualname__} must live at module level of an importable module")
    return f"{adapter.__module__}.{adapter.__qualname__}"


class Worker:
    """One supervised bridge worker process with an initialised session.

    ::

        async with Worker(ExampleAdapter) as worker:
            await worker.call("add", a=1, b=2)
    """

    def __init__(
        self,
        adapter: type[Adapter] | type | str,
        *,
        session_id: str | None = None,
        host: str = "127.0.0.1",
        ready_timeout_s: float = 30.0,
        stop_grace_s: float = 5.0,
        python: str = sys.executable,
        worker_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cpus: Collection[int] | None = None,
    ) -> None:
        self.adapter = adapter_path(adapter)
        self.cpus = sorted(check_cpus(cpus)) if cpus is not None else None
        self.session_id = session_id or f"session_{uuid.uuid4().hex[:12]}"
        self.host = host
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.python = python
        self.worker_args = list(worker_args)
        self.env = dict(env) if env is not None else None
        self.port = 0
        self._process: asyncio.subprocess.Process | None = None
        self._client: BridgeClient | None = None
        self._drain: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._require_process().pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    @property
    def client(self) -> BridgeClient:
        if self._client is None:
            raise FailedPrecondition("the worker is not running: use `async with Worker(...)`")
        return self._client

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "muster.bridge",
            "--port",
            "0",
            "--host",
            self.host,
            "--adapter",
            self.adapter,
            "--supervised-by",
            str(os.getpid()),
            *(["--cpus", ",".join(map(str, self.cpus))] if self.cpus is not None else []),
            *self.worker_args,
        ]

    async def start(self) -> None:
        """Start the process, wait for GRPC_READY, connect, initialise the session."""
        if self._process is not None:
            raise FailedPrecondition("this Worker was already started; make a new one")
        self._process = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self.env,
        )
        try:
            async with asyncio.timeout(self.ready_timeout_s):
                self.port = await self._read_ready()
            self._drain = asyncio.create_task(self._drain_stdout(), name=f"bridge-worker-{self.pid}-stdout")
            self._client = BridgeClient.connect(self.target)
            await self._client.initialize_session(self.session_id)
        except BaseException as exc:
            if self._client is not None:
                await self._client.aclose()
                self._client = None
            await self._terminate()
            if isinstance(exc, TimeoutError):
                raise Unavailable(f"worker {self.adapter} sent no GRPC_READY within {self.ready_timeout_s}s") from exc
            raise

    async def _read_ready(self) -> int:
        stdout = self._require_process().stdout
        assert stdout is not None
        for _ in range(_MAX_READY_LINES):
            line = (await stdout.readline()).decode(errors="replace").strip()
            if not line:
                code = await self._require_process().wait()
                raise Unavailable(f"worker {self.adapter} exited with {code} before GRPC_READY (see its stderr)")
            if line.startswith(READY_PREFIX):
                return int(line[len(READY_PREFIX) :])
            logger.info("worker: %s", line)
        raise Unavailable(f"worker {self.adapter} printed {_MAX_READY_LINES} lines without GRPC_READY")

    async def _drain_stdout(self) -> None:
        """Keep reading the child's stdout so a chatty tool cannot block on a full pipe."""
        stdout = self._require_process().stdout
        assert stdout is not None
        while line := await stdout.readline():
            logger.info("worker %d: %s", self.pid, line.decode(errors="replace").rstrip())

    async def wait(self) -> int:
        """Wait for the process to exit; its return code."""
        return await self._require_process().wait()

    async def stop(self) -> None:
        """Clean up the session, close the channel, stop the process. Safe to call twice."""
        if self._stopping or self._process is None:
            return
        self._stopping = True
        if self._client is not None:
            if self._process.returncode is None:
                with contextlib.suppress(Exception):  # a dying worker cannot refuse its own cleanup
                    async with asyncio.timeout(self.stop_grace_s):
                        await self._client.cleanup_session(self.session_id)
            await self._client.aclose()
        await self._terminate()

    async def _terminate(self) -> None:
        process = self._require_process()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self.stop_grace_s):
                    await process.wait()
            except TimeoutError:
                logger.warning("worker %d ignored SIGTERM for %ss: killing it", process.pid, self.stop_grace_s)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.stdin is not None:
            process.stdin.close()
        if self._drain is not None:
            await cancel_and_wait(self._drain)

    def _require_process(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise FailedPrecondition("the worker has not been started")
        return self._process

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- calls on the worker's own session ---------------------------------------------------

    async def ping(self, message: str = "") -> str:
        return await self.client.ping(message)

    async def call(self, tool: str, /, **parameters: Any) -> Any:
        """Run a tool in this worker's session; ``ToolFailed`` if it raised."""
        return await self.client.call(self.session_id, tool, **parameters)


class _Slot:
    def __init__(self, index: int) -> None:
        self.index = index
        self.worker: Worker | None = None
        self.ready = asyncio.Event()
        self.sessions: set[str] = set()  # sessions initialised on the current worker
        self.monitor: asyncio.Task[None] | None = None


class WorkerPool:
    """``size`` supervised workers for one adapter; a session always goes to the same worker.

    A worker that dies is replaced; sessions routed to it go to the replacement
    (their variables are lost with the process and start empty there).
    ``pin_cpus=True`` runs each worker on a CPU of its own, in turn over the CPUs
    this process may use (docs/bridge.md, "CPU pinning").

    ::

        async with WorkerPool(4, ExampleAdapter) as pool:
            await pool.call("session-1", "add", a=1, b=2)
    """

    def __init__(
        self,
        size: int,
        adapter: type[Adapter] | type | str,
        *,
        max_sessions: int = 100_000,
        pin_cpus: bool = False,
        **worker_options: Any,
    ) -> None:
        if size < 1:
            raise Invalid("size", "a pool needs at least one worker")
        if pin_cpus and "cpus" in worker_options:
            raise Invalid("pin_cpus", "give either pin_cpus=True (one CPU per worker, in turn) or cpus, not both")
        self.size = size
        # With pin_cpus, slot i's workers (a replacement too) run on the i-th usable CPU, round robin.
        self._cpus: list[int] | None = None
        if pin_cpus:
            if not hasattr(os, "sched_getaffinity"):
                raise Invalid("pin_cpus", "CPU pinning needs Linux (sched_setaffinity)")
            self._cpus = sorted(os.sched_getaffinity(0))
        self.max_sessions = max_sessions
        self.adapter = adapter_path(adapter)
        self.worker_options = worker_options
        self.restarts = 0
        self._slots = [_Slot(index) for index in range(size)]
        self._routes: dict[str, _Slot] = {}
        self._closing = False

    @property
    def workers(self) -> list[Worker]:
        """The live workers, by slot (a slot being refilled is left out)."""
        return [slot.worker for slot in self._slots if slot.worker is not None and slot.ready.is_set()]

    async def __aenter__(self) -> Self:
        try:
            await asyncio.gather(*(self._fill(slot) for slot in self._slots))
        except BaseException:
            await self.aclose()
            raise
        for slot in self._slots:
            slot.monitor = asyncio.create_task(self._monitor(slot), name=f"bridge-pool-slot-{slot.index}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closing = True
        for slot in self._slots:
            if slot.monitor is not None:
                await cancel_and_wait(slot.monitor)
        await asyncio.gather(*(slot.worker.stop() for slot in self._slots if slot.worker is not None))

    async def _fill(self, slot: _Slot) -> None:
        options = dict(self.worker_options)
        if self._cpus is not None:
            options["cpus"] = [self._cpus[slot.index % len(self._cpus)]]
        worker = Worker(self.adapter, **options)
        await worker.start()
        slot.worker, slot.sessions = worker, set()
        slot.ready.set()

    async def _monitor(self, slot: _Slot) -> None:
        """Replace the slot's worker whenever it dies, retrying a failed start with backoff."""
        while not self._closing:
            assert slot.worker is not None
            code = await slot.worker.wait()
            if self._closing:
                return
            slot.ready.clear()
            logger.warning("pool worker %d (slot %d) exited with %s: replacing it", slot.worker.pid, slot.index, code)
            await slot.worker.stop()
            delay = 0.1
            while not self._closing:
                try:
                    await self._fill(slot)
                    self.restarts += 1
                    break
                except (Unavailable, OSError) as exc:
                    logger.error("cannot restart pool slot %d: %s (retrying in %.1fs)", slot.index, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)

    def _slot_for(self, session_id: str) -> _Slot:
        slot = self._routes.get(session_id)
        if slot is None:
            if len(self._routes) >= self.max_sessions:
                raise ResourceExhausted(
                    f"the pool already routes {self.max_sessions} sessions: clean some up with cleanup_session()"
                )
            counts = {s.index: 0 for s in self._slots}
            for routed in self._routes.values():
                counts[routed.index] += 1
            slot = self._slots[min(counts, key=lambda index: (counts[index], index))]
            self._routes[session_id] = slot
        return slot

    @staticmethod
    async def _live_worker(slot: _Slot) -> Worker:
        """The slot's worker once it is running; a dead one is waited out until the monitor replaces it."""
        while True:
            await slot.ready.wait()
            assert slot.worker is not None
            if slot.worker.returncode is None:
                return slot.worker
            slot.ready.clear()  # dead but not yet noticed by the monitor, which refills and sets it

    async def worker_for(self, session_id: str) -> Worker:
        """The worker that owns ``session_id`` (waiting for a replacement if it is being refilled),
        with the session initialised there."""
        slot = self._slot_for(session_id)
        worker = await self._live_worker(slot)
        if session_id not in slot.sessions:
            await worker.client.initialize_session(session_id)
            slot.sessions.add(session_id)
        return worker

    async def call(self, session_id: str, tool: str, /, **parameters: Any) -> Any:
        """Run a tool in ``session_id`` on its worker; retried once on a replacement if the worker died."""
        worker = await self.worker_for(session_id)
        try:
            return await worker.client.call(session_id, tool, **parameters)
        except ToolFailed:
            raise
        except (MusterError, asyncio.CancelledError) as exc:
            # UNAVAILABLE, or UNKNOWN "stream removed" when the process dies mid-call; or
            # CancelledError when the monitor, replacing a dead worker, closed its channel
            # under this call. A cancellation of the caller itself still propagates.
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(worker.stop_grace_s):
                    await worker.wait()
            if worker.returncode is None:
                raise  # the worker is alive: the failure was something else
            worker = await self.worker_for(session_id)
            return await worker.client.call(session_id, tool, **parameters)

    async def cleanup_session(self, session_id: str) -> bool:
        """End the session on its worker and forget its route."""
        slot = self._routes.pop(session_id, None)
        if slot is None or slot.worker is None or session_id not in slot.sessions:
            return False
        slot.sessions.discard(session_id)
        try:
            return await slot.worker.client.cleanup_session(session_id)
        except MusterError:  # the worker is gone, and the session with it
            return False
