"""Bridge benchmark: one worker process, prepared gRPC frames from h2load, JSON on stdout.

    python bench/bridge_bench.py [--duration 5] [--concurrency 16] [--no-profile]

Measures, against one ``python -m muster.bridge`` worker (example adapter):

* ``Ping`` latency at low load (one call in flight), p50/p90/p99;
* the same Ping and ExecuteTool round again with the worker pinned to one CPU
  (``--cpus``) and the bare server pinned alike (``pinned``);
* ``ExecuteTool`` throughput of the ``echo`` (sync, run in a thread) and
  ``echo_async`` tools with 16 calls in flight, as a ratio to a bare grpc.aio
  unary server answering the same ``ExecuteTool`` request with the same
  generator in the same run (the bare server copies the parameter into the
  result: protobuf parsing and gRPC, nothing else);
* how long a variable update takes to reach 100 watchers, p50/p99, from the
  setter's send to each receipt, and the worker's CPU time per update: with
  one ``WatchVariables`` stream per watcher, the same from the bare server (a
  queue per watcher, nothing else) as the floor, and with the watchers
  multiplexed over one ``WatchVariablesMultiplexed`` stream per receiving
  process. The receivers are plain-HTTP/2 Node.js processes (see
  ``bridge_watch.py``), four by default;
* where the worker's extra time per call goes (py-spy on the worker, if
  installed), grouped by module.

The load generator is h2load (Debian's nghttp2-client), sending a prepared
gRPC frame; it runs in its own process. Every section records the 1-minute
load average (the machine may be shared). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _harness import grpc_frame, h2load_unary, machine  # beside this file (run as python bench/bridge_bench.py)
from bridge_watch import cpu_seconds, fanout, node_available  # beside this file

ADAPTER = "muster.bridge.examples.ExampleAdapter"
SERVICE = "snakepit.bridge.SnakepitBridge"
SESSION = "bench"
WARM_UP_S = 1


def progress(message: str) -> None:
    print(f"[bridge-bench] {message}", file=sys.stderr, flush=True)


# --- child processes -----------------------------------------------------------------------------


def start_and_wait_ready(args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("GRPC_READY:"):
        process.kill()
        raise SystemExit(f"{args} did not start: {line!r}")
    return process, int(line.removeprefix("GRPC_READY:"))


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def bare_server() -> None:
    """A bare grpc.aio server: ExecuteTool answers with the 'value' parameter, nothing else."""
    import grpc

    from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2

    async def execute(request: Any, context: Any) -> Any:
        return pb2.ExecuteToolResponse(success=True, result=request.parameters["value"])

    async def ping(request: Any, context: Any) -> Any:
        return pb2.PingResponse(message=request.message)

    watchers: set[asyncio.Queue[Any]] = set()

    async def set_variable(request: Any, context: Any) -> Any:
        update = pb2.VariableUpdate(variable_id="tick", variable=pb2.Variable(name="tick", value=request.value))
        for queue in watchers:
            queue.put_nowait(update)
        return pb2.SetVariableResponse(success=True)

    async def watch(request: Any, context: Any) -> Any:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1024)
        watchers.add(queue)
        try:
            yield pb2.VariableUpdate(variable_id="tick")
            while True:
                yield await queue.get()
        finally:
            watchers.discard(queue)

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ExecuteTool": grpc.unary_unary_rpc_method_handler(
                execute,
                request_deserializer=pb2.ExecuteToolRequest.FromString,
                response_serializer=pb2.ExecuteToolResponse.SerializeToString,
            ),
            "SetVariable": grpc.unary_unary_rpc_method_handler(
                set_variable,
                request_deserializer=pb2.SetVariableRequest.FromString,
                response_serializer=pb2.SetVariableResponse.SerializeToString,
            ),
            "WatchVariables": grpc.unary_stream_rpc_method_handler(
                watch,
                request_deserializer=pb2.WatchVariablesRequest.FromString,
                response_serializer=pb2.VariableUpdate.SerializeToString,
            ),
            "Ping": grpc.unary_unary_rpc_method_handler(
                ping,
                request_deserializer=pb2.PingRequest.FromString,
                response_serializer=pb2.PingResponse.SerializeToString,
            ),
        },
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"GRPC_READY:{port}", flush=True)
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()
    await server.stop(0)


# --- measurements --------------------------------------------------------------------------------


def h2load(port: int, pid: int, method: str, frame_path: Path, *, duration: float, connections: int, streams: int,
           requests: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Run h2load against one unary method; throughput, per-request latencies, server CPU per call."""
    cpu_before = cpu_seconds(pid)
    measured = h2load_unary(
        port, f"/{SERVICE}/{method}", frame_path, connections=connections, streams=streams, requests=requests,
        duration=duration, warm_up_s=WARM_UP_S,
    )  # fmt: skip
    cpu = cpu_seconds(pid) - cpu_before
    calls = measured["done"] + (0 if requests else measured["rps"] * WARM_UP_S)  # warm-up calls are not counted
    return {
        "load_average_1m": round(os.getloadavg()[0], 2),
        **{k: measured[k] for k in ("rps", "done", "failed", "p50_ms", "p90_ms", "p99_ms")},
        "server_cpu_us_per_call": round(cpu * 1e6 / calls, 1),
    }


def unary_round(
    worker: subprocess.Popen[bytes],
    worker_port: int,
    bare: subprocess.Popen[bytes],
    bare_port: int,
    ping_path: Path,
    frames: dict[str, tuple[Any, Path]],
    options: argparse.Namespace,
) -> dict[str, Any]:
    """One round: Ping and ExecuteTool on the bare server and the worker, back to back (same conditions)."""
    ping = {"connections": 1, "streams": 1, "requests": 3000, "duration": 0}
    load = {"connections": 1, "streams": options.concurrency, "duration": options.duration}
    measured = {
        "ping_bare": h2load(bare_port, bare.pid, "Ping", ping_path, **ping),
        "ping": h2load(worker_port, worker.pid, "Ping", ping_path, **ping),
        "echo_bare": h2load(bare_port, bare.pid, "ExecuteTool", frames["echo"][1], **load),
    }
    for tool in ("echo", "echo_async"):
        run = h2load(worker_port, worker.pid, "ExecuteTool", frames[tool][1], **load)
        run["ratio_to_bare"] = round(run["rps"] / measured["echo_bare"]["rps"], 3)
        run["extra_us_per_call"] = round(1e6 / run["rps"] - 1e6 / measured["echo_bare"]["rps"], 1)
        measured[f"execute_tool_{tool}"] = run
    return measured


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds, with the targets."""

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    def pick(key: str, field: str) -> list[float]:
        return [float(round_[key][field]) for round_ in rounds]

    return {
        "ping_p50_ms": {"worker": median(pick("ping", "p50_ms")), "bare": median(pick("ping_bare", "p50_ms")),
                        "target": 0.3},
        "ping_server_cpu_us_per_call": {"worker": median(pick("ping", "server_cpu_us_per_call")),
                                        "bare": median(pick("ping_bare", "server_cpu_us_per_call"))},
        "execute_tool_echo_ratio": {"per_round": pick("execute_tool_echo", "ratio_to_bare"),
                                    "median": median(pick("execute_tool_echo", "ratio_to_bare")), "target": 0.6},
        "execute_tool_echo_async_ratio": {"per_round": pick("execute_tool_echo_async", "ratio_to_bare"),
                                          "median": median(pick("execute_tool_echo_async", "ratio_to_bare"))},
        "execute_tool_server_cpu_us_per_call": {
            "bare": median(pick("echo_bare", "server_cpu_us_per_call")),
            "echo": median(pick("execute_tool_echo", "server_cpu_us_per_call")),
            "echo_async": median(pick("execute_tool_echo_async", "server_cpu_us_per_call")),
        },
        "load_average_1m": pick("ping", "load_average_1m"),
    }  # fmt: skip


def pinned_round(ping_path: Path, frames: dict[str, tuple[Any, Path]], options: argparse.Namespace) -> dict[str, Any]:
    """The same round with the worker on one CPU (``--cpus``) and the bare server pinned alike.

    At one call in flight, most of a call's latency is waking threads on the other core; pinned,
    the worker trades throughput (one core for gRPC's threads and the loop) for that latency.
    """
    cpu = str(options.pinned_cpu)
    progress(f"pinned round: worker --cpus {cpu}, bare server on CPU {cpu}")
    worker, worker_port = start_and_wait_ready(
        [sys.executable, "-m", "muster.bridge", "--port", "0", "--adapter", ADAPTER, "--cpus", cpu]
    )
    try:
        bare, bare_port = start_and_wait_ready([sys.executable, __file__, "--bare-server", "--bare-cpus", cpu])
        try:
            check_answers(bare_port, frames["echo"][0], bare=True)
            check_answers(worker_port, frames["echo"][0], bare=False)
            measured = unary_round(worker, worker_port, bare, bare_port, ping_path, frames, options)
        finally:
            stop(bare)
    finally:
        stop(worker)
    return {
        "cpu": options.pinned_cpu,
        "ping_p50_ms": {"worker": measured["ping"]["p50_ms"], "bare": measured["ping_bare"]["p50_ms"], "target": 0.3},
        "ping_p99_ms": {"worker": measured["ping"]["p99_ms"], "bare": measured["ping_bare"]["p99_ms"]},
        "execute_tool_rps": {"bare": measured["echo_bare"]["rps"], "echo": measured["execute_tool_echo"]["rps"],
                             "echo_async": measured["execute_tool_echo_async"]["rps"]},
        "execute_tool_echo_ratio": measured["execute_tool_echo"]["ratio_to_bare"],
        "round": measured,
    }  # fmt: skip


def check_answers(port: int, frame_request: Any, bare: bool) -> None:
    """One real call with the Python stub: the frame h2load sends gets a successful answer."""
    import grpc

    from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
    from muster._proto.snakepit.bridge import snakepit_bridge_pb2_grpc as pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb2_grpc.SnakepitBridgeStub(channel)
        if not bare:
            stub.InitializeSession(pb2.InitializeSessionRequest(session_id=SESSION))
        response = stub.ExecuteTool(frame_request)
        assert response.success and response.result.value == b'"hello"', response


OUR_MODULES = {
    "muster/bridge/values.py": "values: Any encode/decode (orjson)",
    "muster/bridge/adapter.py": "argument binding and type checks",
    "muster/bridge/service.py": "service layer (session lookup, tool dispatch, outcome)",
    "muster/bridge/session.py": "service layer (session lookup, tool dispatch, outcome)",
    "muster/bridge/context.py": "service layer (session lookup, tool dispatch, outcome)",
    "muster/bridge/server.py": "servicer: request/response protos",
    "muster/bridge/messages.py": "servicer: request/response protos",
}
HAND_OFF = ("run_in_executor", "concurrent/futures", "threading.py")


def _classify(stack: str) -> str:
    frames = stack.split(";")
    if not frames[0].startswith("_run_module_as_main"):
        if any("concurrent/futures/thread.py" in frame for frame in frames):
            return "tool thread: the echo call and its future"
        return "grpc poller thread"
    for frame in reversed(frames):  # the innermost frame of ours (or the hand-off) names the cost
        if any(marker in frame for marker in HAND_OFF):
            return "event loop: hand-off to the tool thread (run_in_executor, futures)"
        for module, label in OUR_MODULES.items():
            if module in frame:
                return "event loop: " + label
    return "event loop: grpc.aio + asyncio (what the bare server also pays)"


def profile_worker(pid: int, seconds: float) -> dict[str, Any] | None:
    """py-spy samples (active threads only) of the worker under load, grouped by where the time goes."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return None
    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as raw:
        raw_path = Path(raw.name)
    subprocess.run(
        [py_spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "500", "-f", "raw", "-o", str(raw_path),
         "--nonblocking"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    groups: Counter[str] = Counter()
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if count_text.isdigit():
            groups[_classify(stack)] += int(count_text)
    raw_path.unlink()
    total = sum(groups.values()) or 1
    return {
        "active_samples": total,
        "share_pct": {label: round(100 * count / total, 1) for label, count in groups.most_common()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput run (default 5)")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight (default 16)")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--watch-only", action="store_true", help="only the watch fan-out (no Ping/ExecuteTool rounds)")
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare-cpus", help=argparse.SUPPRESS)
    parser.add_argument(
        "--pinned-cpu", type=int,
        help="CPU for the pinned round (worker --cpus N, bare server pinned alike; default the last usable)",
    )  # fmt: skip
    parser.add_argument("--no-pinned", action="store_true", help="skip the pinned round")
    parser.add_argument("--receivers", type=int, default=4, help="watch receiver processes (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="unary rounds, bare and worker back to back (default 3)")
    options = parser.parse_args()
    if options.bare_server:
        if options.bare_cpus:
            from muster.bridge.process import parse_cpus, pin_to_cpus

            pin_to_cpus(parse_cpus(options.bare_cpus))
        asyncio.run(bare_server())
        return 0
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found: apt-get install -y nghttp2-client")

    from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
    from muster.bridge import values

    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "generator": "h2load (nghttp2-client), 1 thread, prepared gRPC frames",
        "concurrency": options.concurrency,
    }
    workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    frames = {}
    for tool in ("echo", "echo_async"):
        request = pb2.ExecuteToolRequest(
            session_id=SESSION, tool_name=tool, parameters={"value": values.encode("hello")}
        )
        frames[tool] = (request, workdir / f"{tool}.bin")
        frames[tool][1].write_bytes(grpc_frame(request))
    ping_path = workdir / "ping.bin"
    ping_path.write_bytes(grpc_frame(pb2.PingRequest(message="hi")))

    progress("starting the worker and the bare server")
    worker, worker_port = start_and_wait_ready(
        [sys.executable, "-m", "muster.bridge", "--port", "0", "--adapter", ADAPTER]
    )
    bare, bare_port = start_and_wait_ready([sys.executable, __file__, "--bare-server"])
    try:
        check_answers(bare_port, frames["echo"][0], bare=True)
        for tool in frames:
            check_answers(worker_port, frames[tool][0], bare=False)

        streams = options.concurrency
        rounds: list[dict[str, Any]] = []
        for number in range(1, 0 if options.watch_only else options.rounds + 1):
            progress(f"round {number}/{options.rounds}: Ping (1 in flight), then ExecuteTool ({streams} in flight, "
                     f"{options.duration}s each), bare server and worker back to back")  # fmt: skip
            rounds.append(unary_round(worker, worker_port, bare, bare_port, ping_path, frames, options))
        results["unary_rounds"] = rounds
        if rounds:
            results["unary_summary"] = summarise(rounds)
        if rounds and not options.no_pinned and hasattr(os, "sched_getaffinity"):
            if options.pinned_cpu is None:
                options.pinned_cpu = max(os.sched_getaffinity(0))
            results["pinned"] = pinned_round(ping_path, frames, options)

        if not node_available():
            progress("node not found: skipping the watch fan-out (its receivers are Node.js processes)")
        for key, port, pid, rpc in (
            ("watch_fanout", worker_port, worker.pid, "streams"),
            ("watch_fanout_bare", bare_port, bare.pid, "streams"),
            ("watch_fanout_multiplexed", worker_port, worker.pid, "multiplexed"),
        ):
            if not node_available():
                break
            progress(f"{key}: one update to {options.watchers} watchers ({rpc}), {options.updates} updates")
            results[key] = fanout(port, pid, rpc=rpc, watchers=options.watchers, receivers=options.receivers,
                                  updates=options.updates)  # fmt: skip
            results[key]["target_p99_ms"] = 5.0

        if not options.no_profile and not options.watch_only:
            for tool in ("echo", "echo_async"):
                progress(f"profiling the worker under ExecuteTool {tool} load (py-spy)")
                load = subprocess.Popen(
                    ["h2load", "-c1", f"-m{streams}", "-t1", "-D6", "-d", str(frames[tool][1]),
                     "-H", "content-type: application/grpc", "-H", "te: trailers",
                     f"http://127.0.0.1:{worker_port}/{SERVICE}/ExecuteTool"],
                    stdout=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(0.5)
                results[f"profile_{tool}"] = profile_worker(worker.pid, 4) or "py-spy not installed"
                load.wait()
    finally:
        stop(worker)
        stop(bare)
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
