"""Run the shell and Python blocks of a Markdown page, in order, the way a reader pastes them.

A page is a list of fenced blocks. ``bash``/``sh``/``shell`` blocks run in one
bash session per page (variables and ``cd`` carry over from block to block, as
in a terminal; ``set -eo pipefail``); ``python`` blocks run as scripts from the
same working directory with the same environment. A block fenced as ``text``
right after a runnable block is what that block prints: the output must match
it, where ``…`` stands for any text and whitespace is not compared (JSON may be
shown pretty where the server prints it compact).

The page can say how a block runs, in an HTML comment on the line before it
(invisible once rendered):

``<!-- doc-test: skip: REASON -->``
    not run (it starts a second server, needs Docker, or is the suite itself).
``<!-- doc-test: background until=TEXT -->``
    started in the background (a server), the page continues once its output
    holds TEXT; it is stopped when the page ends.
``<!-- doc-test: timeout=S -->``
    a block that never ends by itself (a live stream) is stopped after S seconds,
    which counts as success.
``<!-- doc-test: fails -->``
    the block shows a refusal: ``curl`` may answer an HTTP error.
``<!-- doc-test: file=NAME -->``
    the block is a file the page asks the reader to save (``mytools.py``): it is
    written to NAME in the working directory, not run.

Everywhere else ``curl`` fails on an HTTP error (``--fail-with-body``), so an
example that meets a 404 fails the page. Pages name the default ports; the
runner serves each page from a fresh server on free ports and rewrites
``:8080`` and ``:9090`` in blocks to those. A page whose server flags name NATS (``:4222``) or a
Kafka broker (``:9092``) gets a private one of each (tests/brokers.py), its port rewritten likewise.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Block", "DocRun", "blocks_of", "matches", "server_args"]

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*doc-test:\s*(.*?)\s*-->\s*$")
_KINDS = {"bash": "shell", "sh": "shell", "shell": "shell", "python": "python", "py": "python"}


@dataclass
class Block:
    """One runnable block of a page, with what the page says about it."""

    kind: str  # "shell" or "python"
    code: str
    line: int  # where it starts in the page (1-based), for messages
    expected: str | None = None  # the ``text`` block right after it
    skip: str | None = None
    background_until: str | None = None
    timeout: float | None = None
    fails: bool = False
    file: str | None = None  # written to this name instead of being run


def blocks_of(markdown: str) -> list[Block]:
    """The runnable blocks of a page, in order, each with its marker and expected output."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    marker = ""
    previous: Block | None = None  # the runnable block the next ``text`` block would belong to
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        marked = _MARKER.match(lines[i])
        if marked:
            if not marked.group(1).startswith("server"):  # page-level: see server_args
                marker = marked.group(1)
            i += 1
            continue
        if not opening:
            if lines[i].strip():
                previous = None  # prose between a block and a text block: that text is not its output
            i += 1
            continue
        info, start = opening.group(1).lower(), i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        body = "\n".join(lines[start:end]) + "\n"
        if info in _KINDS:
            previous = _block(_KINDS[info], body, start, marker)
            blocks.append(previous)
        elif info == "text" and previous is not None and previous.expected is None:
            previous.expected = body
            previous = None
        else:
            previous = None
        marker = ""
        i = end + 1
    return blocks


def server_args(markdown: str) -> list[str]:
    """``<!-- doc-test: server --auth -->``: the flags the page's server is started with."""
    for line in markdown.splitlines():
        marked = _MARKER.match(line)
        if marked and marked.group(1).startswith("server"):
            return shlex.split(marked.group(1).removeprefix("server"))
    return []


def _block(kind: str, code: str, line: int, marker: str) -> Block:
    block = Block(kind=kind, code=code, line=line)
    if marker == "skip" or marker.startswith("skip:"):
        block.skip = marker.partition(":")[2].strip() or "marked skip"
    elif marker.startswith("background until="):
        block.background_until = marker.partition("until=")[2].strip()
    elif marker.startswith("timeout="):
        block.timeout = float(marker.removeprefix("timeout="))
    elif marker == "fails":
        block.fails = True
    elif marker.startswith("file="):
        block.file = marker.removeprefix("file=").strip()
    elif marker:
        raise ValueError(f"line {line}: unknown doc-test marker {marker!r}")
    return block


def matches(expected: str, actual: str) -> bool:
    """Does ``actual`` read as ``expected``, with ``…`` for any text and whitespace ignored?"""
    pieces = ["".join(piece.split()) for piece in expected.split("…")]
    pattern = ".*?".join(re.escape(piece) for piece in pieces)
    return re.fullmatch(pattern, "".join(actual.split()), re.DOTALL) is not None


_STRICT_CURL = 'curl() { command curl --fail-with-body -sS "$@"; }'
_LENIENT_CURL = 'curl() { command curl -sS "$@"; }'
_PORTS = re.compile(r"(?<=:)(8080|9090|4222|9092)\b")


@dataclass
class DocRun:
    """One page's bash session, against one server, in one working directory."""

    workdir: Path
    env: dict[str, str]
    ports: dict[str, int]  # "8080" / "9090" -> the server's
    python: str
    log: list[str] = field(default_factory=list)
    _shell: subprocess.Popen[str] | None = None
    _background: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _count: int = 0

    def localize(self, code: str) -> str:
        return _PORTS.sub(lambda m: str(self.ports.get(m.group(1), m.group(1))), code)

    def start(self) -> None:
        self._shell = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._send(f"set -eo pipefail\n{_STRICT_CURL}\n")

    def _send(self, text: str) -> None:
        assert self._shell is not None and self._shell.stdin is not None
        self._shell.stdin.write(text)
        self._shell.stdin.flush()

    def run(self, block: Block) -> str:
        """Run one block; its output (stdout and stderr). Raises AssertionError when it fails."""
        self._count += 1
        code = self.localize(block.code)
        if block.file is not None:
            (self.workdir / block.file).write_text(code)
            return ""
        script = self.workdir / f".doc-block-{self._count}.{'py' if block.kind == 'python' else 'sh'}"
        script.write_text(code)
        if block.background_until is not None:
            return self._run_background(block, script)
        if block.kind == "python":
            command = f"{shlex.quote(self.python)} {shlex.quote(str(script))} < /dev/null"
        else:  # the shell reads the page from its stdin: a block must not read what follows it
            command = f"source {shlex.quote(str(script))} < /dev/null"
        if block.fails:
            command = f"{_LENIENT_CURL}; {command}; {_STRICT_CURL}"
        if block.timeout is not None:
            runner = self.python if block.kind == "python" else "bash"
            command = (
                f"export -f curl; timeout {block.timeout} {runner} {shlex.quote(str(script))} < /dev/null"
                " || { status=$?; [ $status -eq 124 ]; }"
            )
        sentinel = f"__doc_block_{self._count}_done__"
        self._send(f"{command}\necho {sentinel}\n")
        return self._read_until(sentinel, block)

    def _read_until(self, sentinel: str, block: Block) -> str:
        assert self._shell is not None and self._shell.stdout is not None
        output: list[str] = []
        while True:
            line = self._shell.stdout.readline()
            if line == "":  # the shell exited: a command failed under set -e
                self._shell.wait(timeout=10)
                raise AssertionError(
                    f"the block at line {block.line} failed (exit {self._shell.returncode}):\n"
                    f"{self.localize(block.code)}\n--- it printed ---\n{''.join(output)[-4000:]}"
                )
            if line.rstrip("\n").endswith(sentinel):  # output without a final newline runs into it
                output.append(line.rstrip("\n").removesuffix(sentinel))
                return "".join(output)
            output.append(line)

    def _run_background(self, block: Block, script: Path) -> str:
        out = script.with_suffix(".log")
        runner = [self.python, str(script)] if block.kind == "python" else ["bash", str(script)]
        with out.open("wb") as sink:
            process = subprocess.Popen(
                runner, cwd=self.workdir, env=self._shell_env(), stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._background.append(process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = out.read_text(errors="replace")
            if block.background_until and block.background_until in text:
                return text
            if process.poll() is not None:
                raise AssertionError(f"the background block at line {block.line} exited:\n{text[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"the background block at line {block.line} never printed {block.background_until!r}")

    def _shell_env(self) -> dict[str, str]:
        """The session's exported variables now (a background block sees what the page exported so far)."""
        dump = self.workdir / ".doc-env"
        self._count += 1
        sentinel = f"__doc_env_{self._count}__"
        self._send(f"env -0 > {shlex.quote(str(dump))}\necho {sentinel}\n")
        self._read_until(sentinel, Block(kind="shell", code="env", line=0))
        pairs = (item.split("=", 1) for item in dump.read_bytes().decode().split("\0") if "=" in item)
        return dict(pairs)

    def close(self) -> None:
        for process in self._background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        if self._shell is not None and self._shell.poll() is None:
            with_stdin = self._shell.stdin
            if with_stdin is not None:
                with_stdin.close()
            try:
                self._shell.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._shell.pid, signal.SIGKILL)
                self._shell.wait()
        if self._shell is not None and self._shell.stdout is not None:
            self._shell.stdout.close()
