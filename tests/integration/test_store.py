"""The store's group commit and the hub's NOTIFY handling, on real SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, insert, select, text

from muster.events.hub import WatchFilter
from muster.leases.schema import leases
from muster.store.engine import Tx
from muster.store.schema import events


class _Boom(Exception):
    pass


def _lease_row(tx: Tx, name: str) -> dict[str, Any]:
    return {
        "repo": "r",
        "branch": "main",
        "fq_name": name,
        "kind": "function",
        "file_path": "",
        "status": "reserved",
        "reserved_at": tx.now,
        "expires_at": tx.now + timedelta(minutes=5),
        "updated_at": tx.now,
    }


async def _count(runtime: Any, table: Any) -> int:
    async with runtime.store.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_an_op_that_fails_after_writing_is_undone_alone_in_its_group(runtime: Any) -> None:
    """Ops queued together commit together, except one that wrote and then raised: only its writes vanish."""

    def op(name: str, fail: bool) -> Any:
        async def run(tx: Tx) -> str:
            await tx.conn.execute(insert(leases).values(**_lease_row(tx, name)))
            tx.emit("test.wrote", name, {"name": name})
            if fail:
                raise _Boom(name)
            return name

        return run

    outcomes = await asyncio.gather(
        *(runtime.store.write(op(f"s{i}", fail=i % 3 == 0)) for i in range(30)), return_exceptions=True
    )

    assert 10 == sum(isinstance(o, _Boom) for o in outcomes)
    assert 20 == await _count(runtime, leases)
    async with runtime.store.read() as conn:
        written = sorted((await conn.execute(select(events.c.subject).where(events.c.kind == "test.wrote"))).scalars())
    assert sorted(f"s{i}" for i in range(30) if i % 3) == written


async def test_a_lone_op_that_fails_after_writing_leaves_nothing(runtime: Any) -> None:
    """A group of one op that wrote and raised is rolled back whole: no row, no event, the error surfaces."""

    async def run(tx: Tx) -> None:
        await tx.conn.execute(insert(leases).values(**_lease_row(tx, "alone")))
        tx.emit("test.wrote", "alone", {})
        raise _Boom("alone")

    with pytest.raises(_Boom):
        await runtime.store.write(run)

    assert 0 == await _count(runtime, leases)
    async with runtime.store.read() as conn:
        assert 0 == (await conn.execute(select(func.count()).where(events.c.kind == "test.wrote"))).scalar_one()

    async def fine(tx: Tx) -> None:  # and the writer goes on
        tx.emit("test.after", "x", {})

    await runtime.store.write(fine)


@pytest.mark.parametrize("engine_name", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_a_write_after_postgres_dropped_the_writer_connection_succeeds(runtime: Any, db_url: str) -> None:
    """The writer keeps its connection without a ping per group; one the server closed is replaced, no write lost."""

    async def backend_pid(tx: Tx) -> int:
        return int((await tx.conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())

    pid = await runtime.store.write(backend_pid)
    admin = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()

    async def emit(tx: Tx) -> int:
        tx.emit("test.after_drop", "x", {})
        return await backend_pid(tx)

    assert pid != await runtime.store.write(emit)
    async with runtime.store.read() as conn:
        assert 1 == (await conn.execute(select(func.count()).where(events.c.kind == "test.after_drop"))).scalar_one()


@pytest.mark.parametrize("engine_name", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_the_hub_does_not_read_back_its_own_commits(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Own commits are applied from memory; their NOTIFY (carrying the revision) triggers no read of the log."""
    hub, store = runtime.hub, runtime.store
    reads = 0
    original_read = store.read

    def counting_read() -> Any:
        nonlocal reads
        reads += 1
        return original_read()

    monkeypatch.setattr(store, "read", counting_read)

    async def emit(tx: Tx) -> None:
        tx.emit("test.own", "x", {})

    for _ in range(20):
        await store.write(emit)
    await asyncio.sleep(0.1)  # every NOTIFY has arrived and settled

    assert hub.position == await _head(original_read)
    # The hub's safety-net poll (once a second on PostgreSQL) may fall inside the window.
    assert reads <= 1


@pytest.mark.parametrize("engine_name", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_the_hub_reads_what_another_process_notifies(runtime: Any, db_url: str) -> None:
    """A NOTIFY from another connection with a newer revision makes the hub read the log and apply it."""
    watch = runtime.hub.watch(None, WatchFilter(kind_prefix="test.other"))
    seen = asyncio.create_task(anext(watch))
    await asyncio.sleep(0)  # the watcher is registered
    other = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        async with other.transaction():
            head = await other.fetchval("SELECT coalesce(max(revision), 0) FROM events")
            await other.execute(
                "INSERT INTO events (revision, kind, subject, payload, ts) VALUES ($1, 'test.other', 'x', '{}', now())",
                head + 1,
            )
            await other.execute("SELECT pg_notify('muster_events', $1)", str(head + 1))
    finally:
        await other.close()

    event = await asyncio.wait_for(seen, timeout=0.9)  # well inside the 1 s safety-net poll
    assert head + 1 == event.revision
    await watch.aclose()


@pytest.mark.parametrize("engine_name", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_the_hub_listens_again_after_postgres_dropped_its_connection(runtime: Any, db_url: str) -> None:
    """With its listening connection killed, the hub still follows the log (poll), then listens again."""
    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    admin = await asyncpg.connect(dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", runtime.hub._listener.get_server_pid())

        async def append_and_notify(kind: str) -> int:
            async with admin.transaction():
                revision = 1 + await admin.fetchval("SELECT coalesce(max(revision), 0) FROM events")
                await admin.execute(
                    "INSERT INTO events (revision, kind, subject, payload, ts) VALUES ($1, $2, 'x', '{}', now())",
                    revision,
                    kind,
                )
                await admin.execute("SELECT pg_notify('muster_events', $1)", str(revision))
            return revision

        async def applied(revision: int) -> None:
            watch = runtime.hub.watch(revision - 1, WatchFilter(kind_prefix="test."))
            try:
                assert revision == (await anext(watch)).revision
            finally:
                await watch.aclose()

        await asyncio.wait_for(applied(await append_and_notify("test.while_lost")), timeout=5)
        await asyncio.sleep(1.5)  # the next poll round makes a new listening connection
        assert not runtime.hub._listener.is_closed()
        await asyncio.wait_for(applied(await append_and_notify("test.listening")), timeout=0.9)
    finally:
        await admin.close()


async def _head(read: Any) -> int:
    async with read() as conn:
        return int((await conn.execute(select(func.coalesce(func.max(events.c.revision), 0)))).scalar_one())


async def test_a_writer_paused_inside_a_transaction_gives_its_locks_back(store: Any) -> None:
    """PostgreSQL: a writer session idle inside a transaction (its process paused) is ended after
    IDLE_IN_TRANSACTION_S, so its row locks stall other writers no longer; readers are not bounded so."""
    from muster.store.engine import IDLE_IN_TRANSACTION_S

    if store.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time by design; a paused writer holds the file lock")
    async with store.read_engine.connect() as reader:
        assert (await reader.execute(text("SHOW idle_in_transaction_session_timeout"))).scalar_one() == "0"
    async with store.write_engine.connect() as paused:
        shown = (await paused.execute(text("SHOW idle_in_transaction_session_timeout"))).scalar_one()
        assert shown == f"{int(IDLE_IN_TRANSACTION_S)}s"
        await paused.execute(text("SELECT pg_advisory_xact_lock(4242)"))  # a lock held by the transaction
        await asyncio.sleep(IDLE_IN_TRANSACTION_S + 0.5)
        async with store.write_engine.connect() as other:
            assert (await other.execute(text("SELECT pg_try_advisory_xact_lock(4242)"))).scalar_one()
        with pytest.raises(Exception):  # noqa: B017 - the server ended the session; the driver's error varies
            await paused.execute(text("SELECT 1"))


async def test_an_urgent_write_goes_ahead_of_the_queued_ones(runtime: Any) -> None:
    """With 2,000 writes queued, an urgent one joins the next group: it commits before most of them."""
    order: list[str] = []

    def op(name: str) -> Any:
        async def run(tx: Tx) -> None:
            tx.emit("test.tick", name, {})
            order.append(name)

        return run

    queued = [asyncio.ensure_future(runtime.store.write(op(f"q{i}"))) for i in range(2000)]
    await asyncio.sleep(0)  # they are all in the queue
    await runtime.store.write(op("urgent"), urgent=True)
    await asyncio.gather(*queued)
    assert len(order) == 2001 and order.index("urgent") < 2 * 256  # within the first two groups
