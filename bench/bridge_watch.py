"""Watch fan-out measurement for bench/bridge_bench.py: one update, many watchers, how long.

The receivers are Node.js processes speaking plain HTTP/2 (``bridge_watch_client.js``:
Node's built-in nghttp2 binding, no gRPC library), several of them, so the receiving side
costs ~15 µs per message and is not what is measured. The setter is h2load, sending one
``SetVariable`` every ``gap_s`` (see ``_set_ticks`` for why not a Python or Node client).
Both sides use the wall clock at microsecond resolution: h2load logs when it submitted
request n, a receiver notes when message n arrives on each of its watches, and a delivery's
latency is the difference. The worker's CPU time per update (from /proc schedstat, so it
does not depend on how busy the machine is) is reported beside the latencies.
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

CLIENT = Path(__file__).with_name("bridge_watch_client.js")
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


def _set_ticks(port: int, updates: int, gap_s: float, workdir: Path) -> list[int]:
    """``updates`` SetVariable calls of 'tick', ``gap_s`` apart, sent by h2load; their send times (ns since the epoch).

    h2load (C, nghttp2) stamps each request as it submits it; a Python gRPC client took ~1.5 ms
    and Node's http2 client ~1 ms between their timestamp and the server seeing the request here,
    where h2load's whole round trip took ~0.3 ms: they would have measured themselves.
    """
    from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2

    payload = pb2.SetVariableRequest(session_id=SESSION, variable_id="tick", value=_tick(1)).SerializeToString()
    frame = workdir / "set.bin"
    frame.write_bytes(b"\x00" + len(payload).to_bytes(4, "big") + payload)
    log = workdir / "set.log"
    subprocess.run(
        ["h2load", "-c1", "-m1", "-t1", f"-n{updates}", f"--rps={round(1 / gap_s)}", f"--log-file={log}",
         "-d", str(frame), "-H", "content-type: application/grpc", "-H", "te: trailers",
         f"http://127.0.0.1:{port}/snakepit.bridge.SnakepitBridge/SetVariable"],
        check=True,
        capture_output=True,
        timeout=60 + updates * gap_s,
    )  # fmt: skip
    rows = [line.split("\t") for line in log.read_text().splitlines() if line.count("\t") >= 2]
    assert len(rows) == updates and all(row[1] == "200" for row in rows), f"SetVariable by h2load: {rows[:3]}"
    return sorted(int(row[0]) * 1000 for row in rows)


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
                ["node", str(CLIENT), rpc, target, str(per_receiver), str(updates), SESSION, str(output)],
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
            cpu_before = cpu_seconds(pid)
            sends = _set_ticks(port, updates, gap_s, workdir)
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
