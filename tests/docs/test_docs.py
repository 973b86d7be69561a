"""Every shell and Python block of README.md and docs/*.md runs as written, in order, against a real server."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import PrivateNats, Tansu
from tests.conftest import ServerProcess
from tests.docs.harness import DocRun, blocks_of, matches, server_args

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_run_as_written(page: Path, tmp_path: Path) -> None:
    """The page's examples succeed top to bottom on a fresh server and print what the page shows."""
    text = page.read_text()
    blocks = [b for b in blocks_of(text) if b.skip is None]
    if not blocks:
        pytest.skip(f"{page.name} has no runnable blocks")
    workdir = tmp_path / "reader"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(Path(sys.executable).parent.parent)  # as in a clone after ./dev serve
    ports: dict[str, int] = {}
    brokers: list[Any] = []
    args = server_args(text)
    if any(":4222" in arg for arg in args):  # the page's bus: private brokers on their own ports
        brokers.append(PrivateNats().start())
        ports["4222"] = brokers[-1].port
    if any(":9092" in arg for arg in args):
        brokers.append(Tansu().start())
        ports["9092"] = brokers[-1].port
    args = [re.sub(r"(?<=:)(4222|9092)\b", lambda m: str(ports[m.group(1)]), arg) for arg in args]
    try:
        server = ServerProcess(data_dir=workdir / "muster-data", extra_args=args).start()
    except Exception:
        for broker in brokers:
            broker.destroy()
        raise
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "MUSTER_SERVER": server.http_url,  # the CLI's default server, on this run's port
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    run = DocRun(workdir, env, {"8080": server.http_port, "9090": server.grpc_port} | ports, sys.executable)
    run.start()
    try:
        for block in blocks:
            output = run.run(block)
            if block.expected is not None:
                assert matches(block.expected, output), (
                    f"{page.name}, the block at line {block.line} printed:\n{output}\n"
                    f"--- the page shows ---\n{block.expected}"
                )
    finally:
        run.close()
        server.stop()
        for broker in brokers:
            broker.destroy()
