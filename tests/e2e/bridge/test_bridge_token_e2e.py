"""The bridge worker's door: loopback by default, a token file (or --insecure) beyond it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
from muster._proto.snakepit.bridge import snakepit_bridge_pb2_grpc as pb2_grpc
from muster.bridge.process import WorkerOptions, bridge_token
from muster.errors import Invalid


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}


def test_non_loopback_bind_needs_a_token_file_or_insecure(tmp_path: Path) -> None:
    """A worker bound beyond loopback without --token-file or --insecure refuses to start, naming both."""
    result = subprocess.run(
        [sys.executable, "-m", "muster.cli", "bridge", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, env=_env(), timeout=60,
    )
    assert 2 == result.returncode
    assert "--token-file" in result.stderr and "--insecure" in result.stderr
    assert "Traceback" not in result.stderr
    assert bridge_token(WorkerOptions(adapter="x", host="0.0.0.0", insecure=True)) is None
    assert bridge_token(WorkerOptions(adapter="x", host="::1")) is None
    with pytest.raises(Invalid, match="empty"):
        (tmp_path / "empty").write_text("")
        bridge_token(WorkerOptions(adapter="x", token_file=str(tmp_path / "empty")))


def test_token_file_gates_every_call(tmp_path: Path) -> None:
    """With --token-file, calls without the token are UNAUTHENTICATED and calls with it are served."""
    token_file = tmp_path / "bridge.token"
    token_file.write_text("s3cret-bridge-token\n")
    worker = subprocess.Popen(
        [sys.executable, "-m", "muster.cli", "bridge", "--port", "0", "--token-file", str(token_file),
         "--log-level", "warning"],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert line.startswith("GRPC_READY:"), line
        port = int(line.strip().rsplit(":", 1)[1])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb2_grpc.SnakepitBridgeStub(channel)
            for metadata in ((), (("authorization", "Bearer wrong"),)):
                with pytest.raises(grpc.RpcError) as refused:
                    stub.Ping(pb2.PingRequest(message="hi"), metadata=metadata, timeout=5)
                assert grpc.StatusCode.UNAUTHENTICATED == refused.value.code()
            good = (("authorization", "Bearer s3cret-bridge-token"),)
            reply = stub.Ping(pb2.PingRequest(message="hi"), metadata=good, timeout=5)
            assert "Pong: hi" == reply.message
    finally:
        worker.terminate()
        worker.wait(timeout=20)
