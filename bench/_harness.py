"""Shared benchmark plumbing: start a real `muster serve`, run wrk, sample RSS, print JSON."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    http_url: str
    grpc_target: str
    data_dir: Path

    def door_pids(self) -> dict[str, int]:
        """The HTTP door is the `muster serve` process itself; the gRPC door is its child."""
        import psutil

        pids = {"http": self.process.pid}
        for child in psutil.Process(self.process.pid).children(recursive=True):
            if "grpc" in child.cmdline():
                pids["grpc"] = child.pid
        return pids

    def cpu_seconds(self, door: str) -> float:
        import psutil

        times = psutil.Process(self.door_pids()[door]).cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> dict[str, float]:
        import psutil

        parent = psutil.Process(self.process.pid)
        rows = {"http door (muster serve)": parent.memory_info().rss}
        for child in parent.children(recursive=True):
            door = child.cmdline()[-1] if child.cmdline() else str(child.pid)
            rows[f"{door} door"] = child.memory_info().rss
        return {k: round(v / 2**20, 1) for k, v in rows.items()}


@contextmanager
def muster_server(*, database_url: str | None = None, extra: list[str] | None = None) -> Iterator[Server]:
    data_dir = Path(tempfile.mkdtemp(prefix="muster-bench-"))
    http_port, grpc_port = free_port(), free_port()
    args = [sys.executable, "-m", "muster.cli", "serve", "--data-dir", str(data_dir), "--http-port", str(http_port),
            "--grpc-port", str(grpc_port), "--log-level", "warning", *(extra or [])]
    if database_url:
        args += ["--database-url", database_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=(data_dir / "log").open("wb"),
                               start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", data_dir)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{server.http_url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not become ready")
        time.sleep(0.5)  # let the gRPC door finish starting too
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(data_dir, ignore_errors=True)


def wrk(url: str, *, connections: int, seconds: int, script: str | None = None, threads: int = 1) -> dict[str, Any]:
    """Run wrk with latency percentiles; returns requests/s, errors and p50/p99 in ms."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        args[1:1] = ["-s", script]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def pct(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(match.group(1)), match.group(2)  # type: ignore[union-attr]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": round(rps), "p50_ms": pct("50"), "p99_ms": pct("99"),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else None}


def python_speed_ns() -> dict[str, float]:
    """Nanoseconds per iteration of one fixed pure-Python loop: median and best of seven rounds.

    This shared virtual machine runs the same code at very different speeds from one moment to the
    next (47 to 330 ns per iteration seen within minutes) and from day to day, in CPU time, not only in
    wall time. The figure, taken at the start of a run, says what state the machine was in.
    """
    rounds = []
    for _ in range(7):
        began, total = time.perf_counter(), 0
        for i in range(1_000_000):
            total += i
        rounds.append((time.perf_counter() - began) * 1000)  # ms per 10^6 iterations = ns per iteration
    rounds.sort()
    return {"median": round(rounds[3], 1), "best": round(rounds[0], 1)}


def machine() -> dict[str, Any]:
    import psutil

    return {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "python_loop_ns": python_speed_ns(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))


def grpc_frame(message: Any) -> bytes:
    """One length-prefixed gRPC message, as h2load sends it as a request body."""
    payload = message.SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def h2load_unary(
    port: int,
    path: str,
    frame_path: Path,
    *,
    connections: int,
    streams: int,
    requests: int | None = None,
    duration: float = 0,
    warm_up_s: float = 1,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run h2load (a C HTTP/2 client, Debian's nghttp2-client) against one unary gRPC method.

    ``path`` is ``/package.Service/Method``; every request sends the same prepared frame. Returns the
    rate, counts and per-request latency percentiles (from h2load's log, in ms). h2load sees HTTP
    statuses, not gRPC ones: check the frame with one real call first.
    """
    with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as log:
        log_path = Path(log.name)
    command = [
        "h2load", f"-c{connections}", f"-m{streams}", "-t1", f"--log-file={log_path}",
        "-d", str(frame_path), "-H", "content-type: application/grpc", "-H", "te: trailers",
    ]  # fmt: skip
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command += [f"-n{requests}"] if requests else [f"-D{max(1, round(duration))}", f"--warm-up-time={warm_up_s}"]
    command.append(f"http://127.0.0.1:{port}{path}")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", output).group(1))  # type: ignore[union-attr]
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", output)
    assert done is not None, output
    micros = sorted(int(line.split("\t")[2]) for line in log_path.read_text().splitlines() if line.count("\t") >= 2)
    log_path.unlink()
    return {
        "rps": rate,
        "done": int(done.group(1)),
        "failed": int(done.group(3)),
        "p50_ms": micros[len(micros) // 2] / 1000,
        "p90_ms": micros[int(len(micros) * 0.9)] / 1000,
        "p99_ms": micros[int(len(micros) * 0.99)] / 1000,
        "max_ms": micros[-1] / 1000,
    }
