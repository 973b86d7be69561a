"""Every shell and Python block of README.md and docs/*.md runs as written, in order, against a real server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

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
    server = ServerProcess(data_dir=workdir / "muster-data", extra_args=server_args(text)).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "MUSTER_SERVER": server.http_url,  # the CLI's default server, on this run's port
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    run = DocRun(workdir, env, {"8080": server.http_port, "9090": server.grpc_port}, sys.executable)
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
