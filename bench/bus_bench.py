"""The fleet's bus: events per second published per sink, and the lag from an acknowledged write to a
consumer holding the event, at 1,000 writes/s. Prints JSON (docs/benchmarks.md records it).

Each sink publishes to a broker of the run's own (a private NATS with JetStream on disk; Tansu, a
Kafka-protocol broker, in memory) from one Muster process's real event log (SQLite by default, or
--database-url). Throughput: a backlog of --backlog events written first, then the time until the
sink's cursor (the bus acknowledged every event) reaches the head. Lag: one event per write, paced
at --rate writes/s for --seconds, each write's acknowledgement time against the time a consumer
thread in this process read that event from the broker.

    ./dev bench bus [--backlog 20000] [--rate 1000] [--seconds 10] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import emit, machine, progress  # beside this file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the suite's private brokers

from muster.catalog import store as q
from muster.errors import Unavailable
from muster.events.bus import BusPublisher, KafkaSink, NatsSink, cursor_key
from muster.server import build_runtime, close_runtime
from muster.store.engine import Tx
from muster.store.leader import Leadership
from muster.store.migrate import upgrade
from tests.brokers import KafkaConsumerThread, NatsConsumerThread, PrivateNats, Tansu
from tests.conftest import settings_for


async def _cursor(runtime: Any, sink: str) -> int:
    async with runtime.store.read() as conn:
        return int(await q.get_state(conn, cursor_key(sink)) or 0)


async def _emit(runtime: Any, count: int, prefix: str) -> None:
    async def op(tx: Tx) -> None:
        for i in range(count):
            tx.emit("bench.tick", f"{prefix}{i % 50}", {"i": i})

    await runtime.store.write(op)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _run_sink(name: str, database_url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    broker: Any = PrivateNats() if name == "nats" else Tansu()
    broker.start()
    workdir = Path(tempfile.mkdtemp(prefix=f"muster-bus-bench-{name}-"))
    url = database_url or f"sqlite+aiosqlite:///{workdir / 'muster.db'}"
    overrides = {"nats_url": broker.url} if name == "nats" else {
        "kafka_brokers": broker.brokers, "kafka_no_idempotence": True}  # Tansu: see tests/brokers.py
    settings = settings_for(url, workdir, event_retention_hours=0, **overrides)
    from muster.store.engine import Store

    store = Store(settings.resolved_database_url())
    await upgrade(store)
    await store.close()
    runtime = await build_runtime(settings)
    leadership = Leadership(runtime.store, lease_s=30)
    assert await leadership.try_acquire()
    sink: Any = NatsSink(settings) if name == "nats" else KafkaSink(settings)
    consumer: Any = NatsConsumerThread(broker.url) if name == "nats" else KafkaConsumerThread(
        broker.brokers, topics=("muster-bench",))
    publisher = BusPublisher(runtime.hub, leadership, [sink], batch=1000)
    try:
        # The cursor at the head, then a backlog, then the publisher: events/s until the cursor catches up.
        async def at_head(tx: Tx) -> None:
            await q.put_state(tx.conn, cursor_key(name), runtime.hub.position, tx.insert)

        await runtime.store.write(at_head)
        for chunk in range(0, args.backlog, 1000):
            await _emit(runtime, min(1000, args.backlog - chunk), "backlog")
        head = runtime.hub.position
        progress(f"{name}: publishing a backlog of {args.backlog} events")
        started = time.perf_counter()
        publisher.start()
        while await _cursor(runtime, name) < head:  # noqa: ASYNC110 - the cursor is a row in the store
            await asyncio.sleep(0.01)
        throughput = args.backlog / (time.perf_counter() - started)

        # Lag at a steady rate: one event per write, acknowledged time against consumed time.
        consumer.start()
        deadline = time.monotonic() + 60
        while head not in consumer.received.revisions() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the consumer has joined its group and read the backlog
        acked: dict[int, float] = {}
        refused: list[int] = []

        async def write(i: int) -> None:
            async def op(tx: Tx) -> None:
                tx.emit("bench.tick", f"lag{i % 50}", {"lag": i})

            try:
                await runtime.store.write(op)
            except Unavailable:  # the store could not keep up (this machine's 2 cores): counted, not fatal
                refused.append(i)
                return
            acked[i] = time.time()

        interval = 1 / args.rate
        progress(f"{name}: {args.rate} writes/s for {args.seconds} s")
        begin = time.perf_counter()
        total = int(args.rate * args.seconds)
        writes = []
        for i in range(total):  # open loop: each write starts on schedule, whatever the others do
            await asyncio.sleep(max(0.0, begin + i * interval - time.perf_counter()))
            writes.append(asyncio.create_task(write(i)))
        await asyncio.gather(*writes)
        achieved = total / (time.perf_counter() - begin)

        def got() -> dict[int, float]:
            return {m[3]["payload"]["lag"]: m[4] for m in list(consumer.received.messages) if "lag" in m[3]["payload"]}

        deadline = time.monotonic() + 30
        while len(got()) < len(acked) and time.monotonic() < deadline:  # noqa: ASYNC110 - another thread's list
            await asyncio.sleep(0.05)
        consumer.stop()
        received_at = got()
        lags = [(received_at[i] - t) * 1000 for i, t in acked.items() if i in received_at]
        return {
            "sink": name,
            "broker": "nats-server -js (file store)" if name == "nats" else "Tansu 0.6 (memory storage)",
            "published_events_per_s": round(throughput),
            "target_events_per_s": 10_000,
            "lag_writes_per_s": round(achieved),
            "lag_writes_acknowledged": len(acked),
            "lag_writes_refused_by_the_store": len(refused),
            "lag_ms": {"p50": round(_percentile(lags, 0.5), 2), "p99": round(_percentile(lags, 0.99), 2),
                       "max": round(max(lags), 2)},
            "target_lag_p99_ms": 100,
            "received": len(lags),
            "written": total,
        }
    finally:
        await publisher.close()
        await leadership.release()
        await close_runtime(runtime)
        broker.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--database-url", default=None, help="postgresql+asyncpg://... (default: SQLite)")
    parser.add_argument("--sinks", default="nats,kafka")
    args = parser.parse_args()
    from muster.logs import configure_logging

    configure_logging("warning", door="bench")  # stdout carries the JSON only
    results = []
    for name in args.sinks.split(","):
        results.append(asyncio.run(_run_sink(name, args.database_url, args)))
    emit({"benchmark": "bus", "date": time.strftime("%Y-%m-%d"), "machine": machine(),
          "store": "postgresql" if args.database_url else "sqlite", "sinks": results})


if __name__ == "__main__":
    main()
