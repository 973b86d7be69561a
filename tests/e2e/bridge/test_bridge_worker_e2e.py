"""The supervisor: Worker lifecycle, WorkerPool routing and crash replacement, no orphans, the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
from muster._proto.snakepit.bridge import snakepit_bridge_pb2_grpc as pb2_grpc
from muster.bridge import ToolFailed, Worker, WorkerPool, values
from muster.bridge.client import BridgeClient
from muster.bridge.examples import ExampleAdapter
from muster.bridge.process import parse_cpus
from muster.errors import ResourceExhausted, Unavailable

SUPERVISOR = Path(__file__).with_name("supervisor_script.py")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - non-Linux fallback
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


async def wait_until_gone(pid: int) -> bool:
    """Poll until the pid is gone (or give up after a generous while); whether it went."""
    for _ in range(300):
        if not pid_alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_worker_serves_an_initialised_session() -> None:
    """A Worker starts the process, waits for GRPC_READY, and its session is ready for calls."""
    async with Worker(ExampleAdapter) as worker:
        pong = await worker.ping("hi")
        info = await worker.call("session_info")
        assert (pong, info["session_id"], info["pid"]) == ("Pong: hi", worker.session_id, worker.pid)


async def test_worker_exit_cleans_up_the_session_and_leaves_no_process() -> None:
    """Leaving the Worker cleans up its session (a watch on it ends OK) and the process is gone."""
    async with Worker(ExampleAdapter) as worker:
        await worker.client.set_variable(worker.session_id, "x", 1)
        observer = BridgeClient.connect(worker.target)
        call = observer.stub.WatchVariables(pb2.WatchVariablesRequest(session_id=worker.session_id))
        await call.read()
        pid = worker.pid
    assert await call.read() is grpc.aio.EOF
    assert (await call.code(), worker.returncode) == (grpc.StatusCode.OK, 0)
    await observer.aclose()
    assert not pid_alive(pid)


async def test_tool_failures_surface_as_tool_failed() -> None:
    """Worker.call raises ToolFailed carrying the tool's exception type and message."""
    async with Worker(ExampleAdapter) as worker:
        with pytest.raises(ToolFailed) as caught:
            await worker.call("fail", message="bad input")
    assert (caught.value.error_type, caught.value.message) == ("ValueError", "ValueError: bad input")


async def test_worker_that_cannot_start_is_unavailable() -> None:
    """An adapter that cannot be imported makes Worker fail with Unavailable, leaving no process."""
    worker = Worker("no_such_module.Adapter")
    with pytest.raises(Unavailable, match="exited with 2 before GRPC_READY"):
        await worker.start()
    assert worker.returncode == 2


async def test_silent_worker_times_out_and_is_stopped(tmp_path: Path) -> None:
    """A process that never prints GRPC_READY fails the start with Unavailable after ready_timeout_s and is stopped."""
    silent = tmp_path / "silent-python"
    silent.write_text("#!/bin/sh\nexec sleep 60\n")
    silent.chmod(0o755)
    worker = Worker(ExampleAdapter, python=str(silent), ready_timeout_s=0.5, stop_grace_s=5)
    with pytest.raises(Unavailable, match=r"sent no GRPC_READY within 0\.5s"):
        await worker.start()
    assert worker.returncode == -signal.SIGTERM


async def test_no_orphan_when_the_supervisor_is_killed() -> None:
    """A worker whose supervisor is SIGKILLed exits on its own."""
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable, str(SUPERVISOR), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert supervisor.stdout is not None
    worker_pid = int((await supervisor.stdout.readline()).decode())
    assert pid_alive(worker_pid)
    supervisor.kill()
    await supervisor.wait()
    assert await wait_until_gone(worker_pid)


async def test_pool_routes_a_session_to_the_same_worker() -> None:
    """Each session always runs on one worker, sessions are spread over the pool, and routes are bounded."""
    async with WorkerPool(2, ExampleAdapter, max_sessions=4) as pool:
        pids = {}
        for session in ("s1", "s2", "s3", "s4"):
            first = await pool.call(session, "session_info")
            second = await pool.call(session, "session_info")
            assert first["pid"] == second["pid"]
            pids[session] = first["pid"]
        assert len(set(pids.values())) == 2
        with pytest.raises(ResourceExhausted):
            await pool.call("s5", "session_info")
        assert await pool.cleanup_session("s1") is True
        assert (await pool.call("s5", "add", a=1)) == 2


async def test_pool_replaces_a_crashed_worker() -> None:
    """A pool worker killed with SIGKILL is replaced; its sessions run on the replacement."""
    async with WorkerPool(2, ExampleAdapter) as pool:
        victim = (await pool.call("doomed", "session_info"))["pid"]
        os.kill(victim, signal.SIGKILL)
        after = await pool.call("doomed", "session_info")
        assert after["pid"] != victim
        assert pool.restarts == 1
        assert len(pool.workers) == 2 and victim not in {worker.pid for worker in pool.workers}


def test_cli_refuses_an_unknown_adapter() -> None:
    """`python -m muster.bridge` with an unimportable adapter exits 2 with a message naming it."""
    result = subprocess.run(
        [sys.executable, "-m", "muster.bridge", "--adapter", "no_such_module.Adapter"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "adapter: cannot import module 'no_such_module'" in result.stderr


def test_cli_stops_gracefully_on_sigterm() -> None:
    """A serving worker announces GRPC_READY:<port> and exits 0 on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "muster.bridge", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    process.send_signal(signal.SIGTERM)
    assert (line.startswith("GRPC_READY:"), int(line.split(":")[1]) > 0) == (True, True)
    assert process.wait(timeout=30) == 0
    process.stdout.close()


SLOW_ADAPTER = """
import time
from muster.bridge import Adapter, tool

class Slow(Adapter):
    @tool
    def nap(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds
"""


def test_sigterm_does_not_wait_past_the_grace_for_a_running_sync_tool(tmp_path: Path) -> None:
    """A sync tool still sleeping when the stop grace ends does not hold the worker's exit."""
    (tmp_path / "slow_adapter.py").write_text(SLOW_ADAPTER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "muster.bridge", "--port", "0", "--adapter", "slow_adapter.Slow", "--stop-grace", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline().decode().split(":")[1])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb2_grpc.SnakepitBridgeStub(channel)
        stub.InitializeSession(pb2.InitializeSessionRequest(session_id="s"), timeout=10)
        call = stub.ExecuteTool.future(
            pb2.ExecuteToolRequest(session_id="s", tool_name="nap", parameters={"seconds": values.encode(120.0)})
        )
        time.sleep(0.5)  # the tool is running
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0  # not 120 s
        assert call.exception(timeout=10) is not None
    process.stdout.close()


def thread_cpus(pid: int) -> dict[int, set[int]]:
    """The CPUs each thread of ``pid`` may run on (``Cpus_allowed_list`` of every task)."""
    allowed: dict[int, set[int]] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                allowed[int(task)] = set(parse_cpus(line.split(":", 1)[1].strip()))
    return allowed


linux_only = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")


@linux_only
async def test_cli_cpus_pins_every_thread_of_the_worker() -> None:
    """`--cpus N` puts every thread of the worker (gRPC's own too) on CPU N, and it still serves."""
    cpu = max(os.sched_getaffinity(0))
    async with Worker(ExampleAdapter, cpus=[cpu]) as worker:
        assert await worker.ping("pinned") == "Pong: pinned"
        threads = thread_cpus(worker.pid)
        assert len(threads) > 1 and all(cpus == {cpu} for cpus in threads.values())


@linux_only
@pytest.mark.parametrize(("value", "message"), [("x", "argument --cpus: 'x' is not a CPU list"),
                                                ("4096", "cpus: [4096] must be a non-empty subset")])  # fmt: skip
def test_cli_refuses_a_bad_cpu_list(value: str, message: str) -> None:
    """A malformed list, or CPUs this process may not use, exit 2 with a message naming --cpus."""
    result = subprocess.run(
        [sys.executable, "-m", "muster.bridge", "--port", "0", "--cpus", value],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


@linux_only
async def test_pool_pin_cpus_gives_each_slot_its_cpu_also_after_a_restart() -> None:
    """WorkerPool(pin_cpus=True): slot i runs on the i-th usable CPU, round robin, and so does its replacement."""
    usable = sorted(os.sched_getaffinity(0))
    async with WorkerPool(2, ExampleAdapter, pin_cpus=True) as pool:
        for index, worker in enumerate(pool.workers):
            assert all(cpus == {usable[index % len(usable)]} for cpus in thread_cpus(worker.pid).values())
        first = (await pool.call("on-slot-0", "session_info"))["pid"]  # the first session goes to slot 0
        assert first == pool.workers[0].pid
        os.kill(first, signal.SIGKILL)
        replacement = (await pool.call("on-slot-0", "session_info"))["pid"]  # waits for the replacement
        assert replacement != first and pool.restarts == 1
        assert all(cpus == {usable[0]} for cpus in thread_cpus(replacement).values())
