"""The fleet's bus, end to end: real servers publish every revision of the log to a real NATS JetStream and a
real Kafka-protocol broker (Tansu), through (a) a normal run, (b) kill -9 of the publishing replica mid-stream,
(c) the bus stopped and restarted mid-stream. A consumer proves that no revision is missing, none is out of
order per subject, and duplicates stay within the documented bound (none at all on JetStream)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.brokers import KafkaConsumerThread, NatsConsumerThread, PrivateNats, Tansu, nats_server_binary, require_nats
from tests.conftest import ServerProcess, wait_for

LEASE_S = 2.0
BATCH = 200  # --bus-batch: a failover or an outage repeats at most this many events on Kafka
BUS_TIMEOUT_S = 1.5  # --bus-timeout


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_server_url"))


@pytest.fixture(params=["nats", "kafka"])
def bus(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "nats":
        if nats_server_binary() is None:
            require_nats()
        broker: Any = PrivateNats().start()
        broker.flags = ["--nats-url", broker.url]
        broker.consumer = lambda: NatsConsumerThread(broker.url)
    else:
        broker = Tansu().start()
        broker.flags = ["--kafka-brokers", broker.brokers, "--kafka-no-idempotence"]  # Tansu: see tests/brokers.py
        broker.consumer = lambda: KafkaConsumerThread(broker.brokers)
    broker.name = request.param
    try:
        yield broker
    finally:
        broker.destroy()


class Writer(threading.Thread):
    """Registers, reserves and deregisters through one replica's HTTP door until stopped."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.url, self.prefix = url, prefix
        self.stopping = threading.Event()
        self.acknowledged = 0
        self.failed = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as http:
            i = 0
            while not self.stopping.is_set():
                i += 1
                try:
                    body = {"name": f"{self.prefix}-{i % 7}", "type": "tool", "url": f"http://h{i}:1"}
                    service_id = http.post("/register", json=body).raise_for_status().json()["service_id"]
                    symbol = {"repo": self.prefix, "branch": "main", "fq_name": f"m.f{i % 5}", "kind": "function"}
                    http.post("/reserve", json=symbol | {"ttl_sec": 30})  # 409 when held: no event, fine
                    if i % 3 == 0:
                        http.post("/deregister", json={"service_id": service_id}).raise_for_status()
                    self.acknowledged += 1
                except httpx.HTTPError:
                    self.failed += 1
                    time.sleep(0.05)
                time.sleep(0.005)

    def finish(self) -> None:
        self.stopping.set()
        self.join(30)


def _bus_status(server: ServerProcess, sink: str) -> dict[str, Any] | None:
    try:
        stats = httpx.get(f"{server.http_url}/stats", timeout=5).json()
    except httpx.HTTPError:
        return None
    return next((b for b in stats["buses"] if b["sink"] == sink), None)


def _caught_up(server: ServerProcess, sink: str) -> int | None:
    """The published revision once the sink has no lag (and has published at least once)."""
    status = _bus_status(server, sink)
    if status is None or status["lag_revisions"] != 0:
        return None
    return int(status["published_revision"]) or None


def _start(server_factory: Any, data_dir: Path, store_url: str | None, bus: Any, name: str) -> ServerProcess:
    flags = [*bus.flags, "--leader-lease", str(LEASE_S), "--bus-batch", str(BATCH), "--bus-timeout", str(BUS_TIMEOUT_S)]
    return server_factory(data_dir=data_dir, database_url=store_url, log_name=f"{name}.log", extra_args=flags)


def _begin(server: ServerProcess, bus: Any, prefix: str) -> tuple[int, Any, Writer]:
    """The sink's starting revision, then a consumer and a writer running: the stream to check."""
    start = int(wait_for(lambda: _bus_status(server, bus.name), 10)["published_revision"])
    consumer = bus.consumer().start()
    writer = Writer(server.http_url, prefix)
    writer.start()
    return start, consumer, writer


def _leads(server: ServerProcess) -> bool:
    return '"leader.acquired"' in (server.log_path.read_text(errors="replace") if server.log_path else "")


def _verify(consumer: Any, server: ServerProcess, bus: Any, first: int, *, duplicates_at_most: int) -> int:
    """Wait until the consumer has every revision after ``first`` up to the head; check order and duplicates."""
    last = wait_for(lambda: _caught_up(server, bus.name), 30)
    wanted = set(range(first + 1, last + 1))
    with contextlib.suppress(AssertionError):
        wait_for(lambda: consumer.received.revisions() >= wanted, 30)
    consumer.stop()
    missing, violations, duplicates = consumer.received.check(first + 1, last)
    assert not missing, f"{len(missing)} never received: {sorted(missing)[:20]}; consumer: {consumer.errors[-3:]}"
    assert not violations, violations[:10]
    assert duplicates <= duplicates_at_most, f"{duplicates} duplicates"
    return last


def test_every_revision_is_published_once_in_order(server_factory: Any, tmp_path: Path, store_url: str | None,
                                                   bus: Any) -> None:
    """A normal run: each revision reaches the bus exactly once, with the watch API's JSON, `source` and
    `timestamp`, in revision order per subject; /stats and /metrics show the sink caught up."""
    server = _start(server_factory, tmp_path / "a", store_url, bus, "a")
    start, consumer, writer = _begin(server, bus, "normal")
    time.sleep(3)
    writer.finish()
    assert writer.acknowledged > 20 and writer.failed == 0
    last = _verify(consumer, server, bus, start, duplicates_at_most=0)
    body = next(m[3] for m in consumer.received.messages if m[2] == "catalog.registered")
    assert body["source"] == "muster" and body["timestamp"] == body["ts"]
    assert {"revision", "kind", "subject", "payload", "ts", "actor"} <= set(body)
    # The same over the gRPC door, through the CLI.
    shown = subprocess.run([sys.executable, "-m", "muster.cli", "status", "--server", f"grpc://{server.grpc_target}",
                            "--json"], capture_output=True, text=True, check=True, timeout=30).stdout
    assert {"sink": bus.name, "published_revision": last, "lag_revisions": 0} in json.loads(shown)["buses"]
    metrics = httpx.get(f"{server.http_url}/metrics").text
    assert f'muster_bus_lag_revisions{{sink="{bus.name}"}} 0.0' in metrics
    name = f'muster_bus_published_total{{sink="{bus.name}"}}'
    published = [line for line in metrics.splitlines() if line.startswith(name)]
    assert published and float(published[0].split()[-1]) == last - start


def test_a_killed_publisher_is_replaced_from_the_cursor(server_factory: Any, tmp_path: Path, store_url: str | None,
                                                        bus: Any) -> None:
    """kill -9 of the publishing replica mid-stream: the other replica takes over from the durable cursor;
    nothing is missing or out of order, duplicates at most one batch (none on JetStream, by Nats-Msg-Id)."""
    shared = tmp_path / "shared"
    first = _start(server_factory, shared, store_url, bus, "first")
    wait_for(lambda: _leads(first), 10)
    second = _start(server_factory, shared, store_url, bus, "second")
    start, consumer, writer = _begin(second, bus, "failover")
    time.sleep(2)
    assert first.process is not None
    os.killpg(first.process.pid, signal.SIGKILL)
    wait_for(lambda: _leads(second), LEASE_S * 1.25 + 10)
    time.sleep(2)
    writer.finish()
    assert writer.failed == 0
    _verify(consumer, second, bus, start, duplicates_at_most=0 if bus.name == "nats" else BATCH)


def test_the_bus_stopped_and_restarted_mid_stream(server_factory: Any, tmp_path: Path, store_url: str | None,
                                                  bus: Any) -> None:
    """The bus goes away mid-stream while writes go on: frozen (SIGSTOP) for longer than --bus-timeout, then
    (NATS, whose JetStream is on disk) killed and restarted. Muster stays ready, the backlog waits in the log,
    and the consumer still gets every revision in order."""
    server = _start(server_factory, tmp_path / "a", store_url, bus, "a")
    start, consumer, writer = _begin(server, bus, "outage")
    time.sleep(1)
    outages = [("frozen", bus.pause, bus.resume)]
    if bus.durable:  # Tansu's memory storage would lose what it holds: see tests/brokers.py
        outages.append(("killed", bus.kill, bus.start))
    for _, stop, back in outages:
        stop()
        time.sleep(2 * BUS_TIMEOUT_S)
        assert httpx.get(f"{server.http_url}/ready").status_code == 200
        status = _bus_status(server, bus.name)
        assert status is not None and status["lag_revisions"] > 0  # the backlog waits in the log
        back()
        time.sleep(1)
    writer.finish()
    assert writer.failed == 0
    _verify(consumer, server, bus, start, duplicates_at_most=0 if bus.name == "nats" else 2 * BATCH)
    log = server.log_path.read_text(errors="replace") if server.log_path else ""
    assert '"bus.publish_failed"' in log and "Traceback" not in log
