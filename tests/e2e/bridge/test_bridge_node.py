"""A client that is not Python-generated code: Node.js with @grpc/grpc-js loading the .proto at run time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[3]
NODE_CLIENT = ROOT / "tests" / "node"
PROTO = ROOT / "proto" / "snakepit" / "bridge" / "snakepit_bridge.proto"

pytestmark = pytest.mark.node


# CI sets MUSTER_REQUIRE_NODE=1: there a missing Node.js or a failed npm install fails the run.
_REQUIRE_NODE = os.environ.get("MUSTER_REQUIRE_NODE") == "1"


def _unavailable(reason: str) -> NoReturn:
    if _REQUIRE_NODE:
        pytest.fail(f"MUSTER_REQUIRE_NODE=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the client's pinned packages installed (npm install on first use)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed for the Node.js client test (CI has them); install Node.js 18+")
    if not (NODE_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        try:
            subprocess.run(
                [npm, "install", "--no-audit", "--no-fund"],
                cwd=NODE_CLIENT,
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.CalledProcessError as exc:
            _unavailable(f"npm install of the Node.js client's packages failed (no registry?): {exc.stderr[-500:]}")
        except subprocess.TimeoutExpired:
            _unavailable("npm install of the Node.js client's packages took over 300 s (no registry?)")
    return node


def test_node_client_drives_a_worker(node: str, worker_target: str) -> None:
    """Node.js speaks the protocol from the .proto alone: ping, session, variables, tools, streams, watch."""
    result = subprocess.run(
        [node, str(NODE_CLIENT / "bridge_client.js"), worker_target, str(PROTO)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert answers["ping"] == "Pong: hello from node"
    assert (answers["initialized"], "add" in answers["tools"]) == (True, True)
    assert answers["get"] == {"type": "integer", "value": 42, "source": "ELIXIR"}
    assert answers["refused"] == {"success": False, "error_message": "t: max is 2, got 3.5"}
    assert answers["add"] == {"type": "integer", "value": 42}
    assert answers["fail"] == {"success": False, "error_message": "ValueError: nope"}
    assert answers["stream"] == [0, 1, 2, "final:ok"]
    assert answers["watch"] == [[42, "INITIAL"], [43, "ELIXIR"]]
    assert answers["cleanup"] == [True, False]
