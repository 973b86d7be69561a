"""Watch fan-out measurement for bench/bridge_bench.py: one update, many watchers, how long.

The receivers are Node.js processes speaking plain HTTP/2 (``bridge_watch_receiver.js``:
Node's built-in nghttp2 binding, no gRPC library), several of them, so the receiving
side costs ~10 µs per message and is not what is measured. Time is CLOCK_MONOTONIC on
both sides (system-wide on Linux): the setter notes ``time.monotonic_ns()`` just before
each ``SetVariable`` and a receiver notes ``process.hrtime`` when message n arrives, so
a delivery's latency is its arrival minus the send of update n. The worker's CPU time
per update (from /proc, so it does not depend on how busy the machine is) is reported
beside the latencies.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

RECEIVER = Path(__file__).with_name("bridge_watch_receiver.js")
SESSION = "bench"


def node_available() -> bool:
    return shutil.which("node") is not None


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, all threads, from the scheduler's nanosecond runtime counters.

    (/proc/PID/stat's utime and stime are tick samples: too coarse for bursts of a few ms.)
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _tick(nanos: int) -> Any:
    from google.protobuf import any_pb2

    return any_pb2.Any(type_url="type.googleapis.com/snakepit.integer", value=str(nanos).encode())


def fanout(port: int, pid: int, *, rpc: str, watchers: int, receivers: int, updates: int,
           gap_s: float = 0.02) -> dict[str, Any]:  # fmt: skip
    """``updates`` updates of variable 'tick', each reaching ``watchers`` watches over ``receivers`` processes.

    ``rpc`` is ``streams`` (one WatchVariables stream per watcher) or ``multiplexed`` (one
    WatchVariablesMultiplexed stream per receiver process, carrying its share of the watches).
    """
    import grpc

    from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
    from muster._proto.snakepit.bridge import snakepit_bridge_pb2_grpc as pb2_grpc

    target = f"127.0.0.1:{port}"
    per_receiver = watchers // receivers
    workdir = Path(tempfile.mkdtemp(prefix="bridge-watch-"))
    with grpc.insecure_channel(target) as channel:
        stub = pb2_grpc.SnakepitBridgeStub(channel)
        with contextlib.suppress(grpc.RpcError):  # the bare server has no sessions
            stub.InitializeSession(pb2.InitializeSessionRequest(session_id=SESSION))
        stub.SetVariable(pb2.SetVariableRequest(session_id=SESSION, variable_id="tick", value=_tick(0)))
        outputs = [workdir / f"receiver-{index}.json" for index in range(receivers)]
        processes = [
            subprocess.Popen(
                ["node", str(RECEIVER), rpc, target, str(per_receiver), str(updates), SESSION, str(output)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            for output in outputs
        ]
        try:
            for process in processes:
                assert process.stdout is not None
                assert process.stdout.readline().strip() == b"WATCHING", f"{rpc} receiver did not start"
            time.sleep(0.2)
            sends: list[int] = []
            cpu_before = cpu_seconds(pid)
            for _ in range(updates):
                sends.append(time.monotonic_ns())
                stub.SetVariable(pb2.SetVariableRequest(session_id=SESSION, variable_id="tick", value=_tick(sends[-1])))
                time.sleep(gap_s)  # one update at a time: latency, not a backlog
            cpu_per_update_ms = (cpu_seconds(pid) - cpu_before) * 1000 / updates
        finally:
            for process in processes:
                process.communicate(timeout=60)
    latencies: list[int] = []
    reached = 0
    for output in outputs:
        result = json.loads(output.read_text())
        for arrivals in result["arrivals"]:
            assert len(arrivals) == updates, f"a receiver saw {len(arrivals)} of {updates} updates"
            # A multiplexed message reaches every watch it names at once.
            counts = result["reached"] or [1] * updates
            for arrival, send, count in zip(arrivals, sends, counts, strict=True):
                latencies += [int(arrival) - send] * count
                reached += count
    shutil.rmtree(workdir, ignore_errors=True)
    assert reached == per_receiver * receivers * updates, f"{reached} deliveries, expected every watcher every update"
    latencies.sort()
    messages_per_update = watchers if rpc == "streams" else receivers
    return {
        "rpc": "WatchVariables" if rpc == "streams" else "WatchVariablesMultiplexed",
        "watchers": per_receiver * receivers,
        "receiver_processes": receivers,
        "messages_per_update": messages_per_update,
        "updates": updates,
        "deliveries": reached,
        "p50_ms": round(latencies[len(latencies) // 2] / 1e6, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] / 1e6, 2),
        "max_ms": round(latencies[-1] / 1e6, 2),
        "server_cpu_ms_per_update": round(cpu_per_update_ms, 2),
        "server_cpu_us_per_message": round(cpu_per_update_ms * 1000 / messages_per_update, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
