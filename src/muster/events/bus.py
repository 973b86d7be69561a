"""The fleet's bus: every event of the log, published to Kafka-protocol brokers and NATS JetStream.

One :class:`BusPublisher` runs in every process; only the monitor's leader publishes (the same lease,
``muster.store.leader``). Each configured sink follows the log on its own from a durable cursor, the
last revision the bus acknowledged, kept in the store under ``bus.<sink>``:

1. take the next batch after the cursor (at most ``--bus-batch`` events, in revision order);
2. hand it to the bus and wait until the bus acknowledged every message;
3. move the cursor past the acknowledged prefix, in a transaction fenced by the lease's epoch.

So a restart, a failover or a bus outage loses nothing, and repeats at most the one batch that was
in flight: a new leader resumes from the cursor the old one last wrote, and a stale leader that
wakes after a pause cannot move the cursor (the fence refuses it) and publishes nothing more (it
checks that it still holds the lease before each batch). A bus that is away stops nothing else:
its backlog waits in the event log and is published when it answers again. If the log's
retention prunes events a sink had not published, the sink skips them, a ``bus_events_dropped``
alert says which, and ``muster_bus_dropped_total`` counts them.

What a message carries is :func:`message_body`: the watch API's JSON for the event, plus
``timestamp`` (the event's time) and ``source: "muster"`` as seed 004's events carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import structlog
from prometheus_client import Counter

from muster._tasks import cancel_and_wait
from muster.catalog import store as q
from muster.catalog.model import AlertRecord
from muster.catalog.schema import alerts
from muster.catalog.service import SinkStatus
from muster.clock import isoformat
from muster.config import Settings
from muster.errors import Pruned, ResourceExhausted
from muster.events.hub import Event, EventHub, WatchFilter
from muster.identity.caller import set_current
from muster.identity.model import SYSTEM
from muster.store.engine import Tx
from muster.store.leader import Leadership, LeadershipLost

__all__ = [
    "BUS_DROPPED",
    "BUS_PUBLISHED",
    "NATS_STREAM",
    "BusPublisher",
    "KafkaSink",
    "NatsSink",
    "Sink",
    "configured_sinks",
    "message_body",
]

log = structlog.get_logger("muster.bus")

BUS_PUBLISHED = Counter("muster_bus_published_total", "Events the bus acknowledged, by sink", ["sink"])
BUS_DROPPED = Counter(
    "muster_bus_dropped_total", "Events the log's retention pruned before a sink published them", ["sink"]
)
NATS_STREAM = "MUSTER_EVENTS"
NATS_SUBJECT_PREFIX = "muster.events."
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
_STATUS_REFRESH_S = 1.0


def message_body(event: Event) -> bytes:
    """The JSON every sink publishes for ``event``."""
    body = event.to_dict()
    body["timestamp"] = isoformat(event.ts)
    body["source"] = "muster"
    return orjson.dumps(body)


def cursor_key(sink: str) -> str:
    return f"bus.{sink}"


class Sink(Protocol):
    """A bus: ``publish`` returns how many of the batch's events, from the first, the bus acknowledged."""

    name: str
    timeout: float

    async def open(self) -> None: ...

    async def publish(self, batch: list[Event]) -> int: ...

    async def close(self) -> None: ...


def _acknowledged_prefix(results: list[Any]) -> tuple[int, BaseException | None]:
    """How many results, from the first, succeeded; and the first failure."""
    for index, result in enumerate(results):
        if isinstance(result, BaseException):
            return index, result
    return len(results), None


class KafkaSink:
    """Kafka protocol (Redpanda, Apache Kafka): an idempotent producer (unless told otherwise) with ``acks=all``.

    Key: the event's subject, so one subject's events stay in order in one partition. Headers:
    ``revision`` and ``kind``. Topics come from ``--kafka-topic-template`` and are created when absent.
    """

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        assert settings.kafka_brokers
        self.brokers = settings.kafka_brokers
        self.template = settings.kafka_topic_template
        self.partitions = settings.kafka_partitions
        self.replication = settings.kafka_replication
        self._options = _kafka_options(settings)
        self.idempotent = not settings.kafka_no_idempotence
        self.timeout = settings.bus_timeout
        if settings.log_level != "debug":
            # aiokafka logs every failed connection attempt at error level, with a traceback; Muster says
            # once per outage that the bus is away (bus.publish_failed), and retries.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        self._producer: Any = None
        self._topics: set[str] = set()

    def topic(self, event: Event) -> str:
        return self.template.format(context=event.kind.split(".", 1)[0], kind=event.kind)

    async def open(self) -> None:
        from aiokafka import AIOKafkaProducer

        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self.brokers,
            client_id="muster",
            acks="all",
            enable_idempotence=self.idempotent,
            linger_ms=2,
            request_timeout_ms=int(self.timeout * 1000),
            **self._options,
        )
        try:
            async with asyncio.timeout(self.timeout):
                await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await producer.stop()
            raise
        self._producer = producer
        self._topics = set()

    async def _ensure_topics(self, names: set[str]) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        missing = names - self._topics
        if not missing:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.brokers, client_id="muster", **self._options)
        await admin.start()
        try:
            present = set(await admin.list_topics())
            wanted = [
                NewTopic(name, num_partitions=self.partitions, replication_factor=self.replication)
                for name in sorted(missing - present)
            ]
            if wanted:
                response = await admin.create_topics(wanted)
                for name, code, *_ in getattr(response, "topic_errors", ()):
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise RuntimeError(f"the broker would not create topic {name} (error code {code})")
                log.info("bus.topics_created", sink=self.name, topics=[t.name for t in wanted])
        finally:
            await admin.close()
        self._topics |= missing

    async def publish(self, batch: list[Event]) -> int:
        producer = self._producer
        assert producer is not None, "open() first"
        topics = [self.topic(event) for event in batch]
        await self._ensure_topics(set(topics))
        futures = []
        for event, topic in zip(batch, topics, strict=True):
            futures.append(
                await producer.send(
                    topic,
                    value=message_body(event),
                    key=event.subject.encode(),
                    headers=[("revision", str(event.revision).encode()), ("kind", event.kind.encode())],
                )
            )
        acked, error = _acknowledged_prefix(await asyncio.gather(*futures, return_exceptions=True))
        if error is not None and acked == 0:
            raise error
        return acked

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await producer.stop()


def _kafka_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ca_file) if settings.kafka_ca_file is not None else None
        )
        if settings.kafka_cert_file is not None:
            context.load_cert_chain(str(settings.kafka_cert_file), str(settings.kafka_key_file))
        options["ssl_context"] = context
    if settings.kafka_sasl_mechanism is not None:
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    return options


class NatsSink:
    """NATS JetStream: stream ``MUSTER_EVENTS`` (subjects ``muster.events.>``), one message per event on
    ``muster.events.<kind>``, with ``Nats-Msg-Id`` = the revision, so JetStream drops a re-sent event
    (within the stream's duplicate window, two minutes unless the stream says otherwise)."""

    name = "nats"

    def __init__(self, settings: Settings) -> None:
        assert settings.nats_url
        self.url = settings.nats_url
        self.timeout = settings.bus_timeout
        self._nc: Any = None
        self._js: Any = None

    async def open(self) -> None:
        import nats
        from nats.js.errors import NotFoundError

        if self._nc is not None and not self._nc.is_closed:
            return
        # Muster reconnects itself (close, open, resume from the cursor); the client must not buffer
        # publishes across a reconnect of its own, which could reorder them.
        nc = await nats.connect(
            self.url, allow_reconnect=False, connect_timeout=self.timeout / 2, name="muster",
            error_cb=_quiet, disconnected_cb=_quiet_event, closed_cb=_quiet_event,
        )
        try:
            js = nc.jetstream(timeout=self.timeout, publish_async_max_pending=20_000)
            try:
                await js.stream_info(NATS_STREAM)
            except NotFoundError:
                await js.add_stream(name=NATS_STREAM, subjects=[NATS_SUBJECT_PREFIX + ">"])
                log.info("bus.stream_created", sink=self.name, stream=NATS_STREAM)
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._nc, self._js = nc, js

    async def publish(self, batch: list[Event]) -> int:
        js = self._js
        assert js is not None, "open() first"
        futures = []
        for event in batch:  # one coroutine, in order: JetStream stores them as sent
            futures.append(
                await js.publish_async(
                    NATS_SUBJECT_PREFIX + event.kind,
                    message_body(event),
                    headers={"Nats-Msg-Id": str(event.revision)},
                    stream=NATS_STREAM,
                )
            )
        await self._nc.flush(timeout=self.timeout)
        acked, error = _acknowledged_prefix(await asyncio.gather(*futures, return_exceptions=True))
        if error is not None and acked == 0:
            raise error
        return acked

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await nc.close()


async def _quiet(exc: Exception) -> None:
    """nats-py logs each connection error with a traceback; Muster reports the failed publish itself."""
    log.debug("bus.nats_error", error=repr(exc))


async def _quiet_event() -> None:
    return None


def configured_sinks(settings: Settings) -> list[Sink]:
    sinks: list[Sink] = []
    if settings.kafka_brokers:
        sinks.append(KafkaSink(settings))
    if settings.nats_url:
        sinks.append(NatsSink(settings))
    return sinks


class BusPublisher:
    """Publishes the event log to ``sinks`` while this process holds ``leadership``."""

    def __init__(
        self,
        hub: EventHub,
        leadership: Leadership,
        sinks: list[Sink],
        *,
        batch: int = 1000,
        start: str = "now",
        timeout: float = 10.0,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.hub = hub
        self.leadership = leadership
        self.sinks = sinks
        self.batch = batch
        self.start_at = start
        self.timeout = timeout
        self._sleep = sleep
        self._tasks: list[asyncio.Task[None]] = []
        # The last cursor this process knows of per sink (its own writes while leading, read otherwise).
        self.cursors: dict[str, int] = {}
        self._read_at = 0.0

    def start(self) -> None:
        for sink in self.sinks:
            self._tasks.append(asyncio.create_task(self._follow(sink), name=f"muster-bus-{sink.name}"))

    async def close(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        for sink in self.sinks:
            await sink.close()

    # -- status -------------------------------------------------------------------

    async def status(self) -> list[SinkStatus]:
        """Each sink's cursor and lag; the cursors are read from the store at most once a second."""
        if self.sinks and time.monotonic() - self._read_at >= _STATUS_REFRESH_S:
            async with self.hub.store.read() as conn:
                for sink in self.sinks:
                    value = await q.get_state(conn, cursor_key(sink.name))
                    if value is not None:
                        self.cursors[sink.name] = max(int(value), self.cursors.get(sink.name, 0))
            self._read_at = time.monotonic()
        return self.snapshot()

    def snapshot(self) -> list[SinkStatus]:
        """As :meth:`status`, from what this process knows already (no store read)."""
        head = self.hub.position
        result = []
        for sink in self.sinks:
            cursor = self.cursors.get(sink.name, head)
            result.append(SinkStatus(sink.name, cursor, max(head - cursor, 0)))
        return result

    def lags(self) -> dict[str, float]:
        return {status.sink: float(status.lag_revisions) for status in self.snapshot()}

    # -- publishing ---------------------------------------------------------------

    async def _follow(self, sink: Sink) -> None:
        set_current(SYSTEM)
        failures = 0
        reported_at = 0.0
        while True:
            if not self.leadership.held:
                await sink.close()
                await self._sleep(0.25)
                continue
            try:
                await self._publish(sink)
                failures = 0
            except asyncio.CancelledError:
                raise
            except LeadershipLost:
                await sink.close()
            except Exception as exc:  # the bus (or the store) is away: the backlog waits in the log
                await sink.close()
                failures += 1
                if time.monotonic() - reported_at >= 5.0:  # one line per outage stretch, not per retry
                    log.warning("bus.publish_failed", sink=sink.name, error=repr(exc), attempts=failures)
                    reported_at = time.monotonic()
                await self._sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S)) - 1])

    async def _cursor(self, sink: Sink) -> int:
        store = self.hub.store
        async with store.read() as conn:
            value = await q.get_state(conn, cursor_key(sink.name))
        if value is not None:
            return int(value)
        # A sink that never published: from now, or from the oldest event kept.
        first = self.hub.position
        if self.start_at == "oldest":
            first = (oldest - 1) if (oldest := await self.hub.oldest()) is not None else 0
        await self._move_cursor(sink, first)
        log.info("bus.cursor_created", sink=sink.name, after_revision=first, start=self.start_at)
        return first

    async def _move_cursor(self, sink: Sink, revision: int) -> None:
        async def op(tx: Tx) -> None:
            await self.leadership.fence(tx)
            await q.put_state(tx.conn, cursor_key(sink.name), revision, tx.insert)

        # Urgent: the next batch waits on it, and it must not queue behind a saturated request load.
        await self.hub.store.write(op, urgent=True)
        self.cursors[sink.name] = revision

    async def _publish(self, sink: Sink) -> None:
        """Publish from the cursor until leadership ends (returns) or something fails (raises)."""
        cursor = await self._cursor(sink)
        self.cursors[sink.name] = cursor
        await sink.open()
        log.info("bus.publishing", sink=sink.name, after_revision=cursor, epoch=self.leadership.epoch)
        while self.leadership.held:
            try:
                cursor = await self._publish_from(sink, cursor)
            except Pruned:
                cursor = await self._skip_pruned(sink, cursor)
            except ResourceExhausted:  # fell a whole watch queue behind: read from the log again
                continue
            else:
                return

    async def _publish_from(self, sink: Sink, cursor: int) -> int:
        """Follow the log after ``cursor``; returns (the cursor) when leadership lapses."""
        batches = self.hub.watch_batches(cursor, WatchFilter(), most=self.batch)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                if not self.leadership.held:
                    return cursor
                async with asyncio.timeout(self.timeout):
                    acked = await sink.publish(batch)
                if acked:
                    await self._move_cursor(sink, batch[acked - 1].revision)
                    cursor = batch[acked - 1].revision
                    BUS_PUBLISHED.labels(sink=sink.name).inc(acked)
                if acked < len(batch):
                    raise RuntimeError(f"the bus acknowledged {acked} of {len(batch)} events; resending the rest")
        return cursor

    async def _skip_pruned(self, sink: Sink, cursor: int) -> int:
        """Retention pruned events after ``cursor`` before they were published: alert, count, go on."""
        oldest = await self.hub.oldest()
        if oldest is None or oldest <= cursor + 1:
            return cursor
        dropped = oldest - cursor - 1
        log.error("bus.events_dropped", sink=sink.name, after_revision=cursor, oldest_kept=oldest, count=dropped)

        async def op(tx: Tx) -> None:
            await self.leadership.fence(tx)
            values: dict[str, Any] = {
                "alert_type": "bus_events_dropped",
                "service_id": f"bus:{sink.name}",
                "service_name": sink.name,
                "missed_beats": 0,
                "last_seen": None,
                "action": "skipped",
                "ts": tx.now,
                "details": {"sink": sink.name, "after_revision": cursor, "oldest_kept": oldest, "dropped": dropped},
                "actor": tx.actor,
            }
            alert_id = (await tx.conn.execute(alerts.insert().returning(alerts.c.alert_id), values)).scalar_one()
            record = AlertRecord(alert_id=int(alert_id), **values)
            tx.emit("catalog.alert", record.service_id, record.to_dict())
            await q.put_state(tx.conn, cursor_key(sink.name), oldest - 1, tx.insert)

        await self.hub.store.write(op)
        BUS_DROPPED.labels(sink=sink.name).inc(dropped)
        self.cursors[sink.name] = oldest - 1
        return oldest - 1
