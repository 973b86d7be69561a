"""The graph on real SQLite and PostgreSQL: constraints, cascades, upserts, staleness, alerts, the index."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from muster.clock import FakeClock
from muster.errors import FailedPrecondition, Invalid, NotFound
from muster.graph.index import GraphIndex
from muster.graph.model import AlertUpdateInput, ListServicesQuery, TraverseQuery
from muster.graph.schema import cycle_alerts, dependencies, graph_services
from muster.graph.service import GraphService
from muster.store.engine import Store, Tx
from tests.integration.graph.conftest import put_edges, put_services


async def _count(store: Store, table: Any) -> int:
    async with store.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _raw_edge(graph: GraphService, **values: Any) -> None:
    async with graph.store.read() as conn:
        ids = {r.service_id: r.id for r in await conn.execute(select(graph_services.c.service_id, graph_services.c.id))}
    row = {
        "id": uuid.uuid4(),
        "source_id": ids["a"],
        "target_id": ids["b"],
        "communication_mode": "sync",
        "criticality": "hard",
        "discovery_source": "kubernetes",
        "confidence_score": 0.5,
        "last_observed_at": graph.store.clock.now(),
        "is_stale": False,
        "created_at": graph.store.clock.now(),
        "updated_at": graph.store.clock.now(),
    }
    row.update(values)
    if row.get("target_id") == "same":
        row["target_id"] = row["source_id"]

    async def op(tx: Tx) -> None:
        await tx.conn.execute(dependencies.insert().values(**row))

    await graph.store.write(op)


@pytest.mark.parametrize(
    "values",
    [
        {"target_id": "same"},
        {"criticality": "fatal"},
        {"communication_mode": "smoke"},
        {"discovery_source": "rumour"},
        {"confidence_score": 1.5},
        {"timeout_ms": 0},
        {"discovery_source": "manual"},  # duplicates the edge put below
    ],
)
async def test_database_enforces_edge_rules(graph: GraphService, values: dict[str, Any]) -> None:
    """CHECK and UNIQUE constraints refuse a bad edge even when the inputs are bypassed."""
    await put_edges(graph, ("a", "b"))
    with pytest.raises(IntegrityError):
        await _raw_edge(graph, **values)


async def test_database_refuses_unknown_criticality_for_services(graph: GraphService) -> None:
    """A service criticality outside the four levels is refused by the database."""

    async def op(tx: Tx) -> None:
        now = tx.now
        await tx.conn.execute(
            graph_services.insert().values(
                id=uuid.uuid4(),
                service_id="x",
                metadata={},
                criticality="vital",
                discovered=False,
                created_at=now,
                updated_at=now,
            )
        )

    with pytest.raises(IntegrityError):
        await graph.store.write(op)


async def test_delete_cascades_to_edges(graph: GraphService) -> None:
    """Deleting a service deletes every edge touching it, in the store and in the index."""
    await put_edges(graph, ("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"))
    await graph.delete_service("c")
    assert await _count(graph.store, dependencies) == 1
    assert graph.index.edge_count == 1
    with pytest.raises(NotFound):
        await graph.delete_service("c")


async def test_upsert_is_idempotent(graph: GraphService) -> None:
    """The same bulk upsert twice leaves the same rows with the same ids."""
    await put_services(graph, {"service_id": "a", "criticality": "critical", "team": "pay"})
    await put_edges(graph, ("a", "b"), ("b", "c"), timeout_ms=100)
    async with graph.store.read() as conn:
        before = sorted((str(r.id), r.criticality) for r in await conn.execute(select(dependencies)))
    second = await put_edges(graph, ("a", "b"), ("b", "c"), timeout_ms=100)
    async with graph.store.read() as conn:
        after = sorted((str(r.id), r.criticality) for r in await conn.execute(select(dependencies)))
    assert before == after
    assert second.discovered == []
    assert (await _count(graph.store, graph_services), await _count(graph.store, dependencies)) == (3, 2)


async def test_unknown_services_are_discovered_then_described(graph: GraphService) -> None:
    """An edge creates unknown services with discovered=true; describing one later clears the flag."""
    result = await put_edges(graph, ("web", "db"))
    assert result.discovered == ["db", "web"]
    assert (await graph.get_service("db")).discovered is True
    await put_services(graph, {"service_id": "db", "criticality": "high", "metadata": {"owner": "dba"}})
    db = await graph.get_service("db")
    assert (db.discovered, db.criticality, db.metadata) == (False, "high", {"owner": "dba"})


async def test_list_services_filters_and_pages(graph: GraphService) -> None:
    """Listing filters by team and criticality and pages in service_id order."""
    await put_services(
        graph,
        *[{"service_id": f"s{i}", "team": "core" if i % 2 else "edge", "criticality": "low"} for i in range(5)],
    )
    records, total = await graph.list_services(ListServicesQuery(team="edge", limit=2, offset=1))
    assert ([r.service_id for r in records], total) == (["s2", "s4"], 3)
    _, none = await graph.list_services(ListServicesQuery(criticality="critical"))
    assert none == 0


async def test_bulk_upsert_of_ten_thousand_edges(graph: GraphService) -> None:
    """A 10,000-edge call (20,000 new services) is chunked under the engines' parameter limits."""
    edges = [(f"src{i}", f"dst{i}") for i in range(10_000)]
    result = await put_edges(graph, *edges)
    assert (result.upserted, len(result.discovered)) == (10_000, 20_000)
    assert await _count(graph.store, dependencies) == 10_000
    assert graph.index.edge_count == 10_000


async def test_mark_stale_by_age_and_revival(graph: GraphService, clock: FakeClock) -> None:
    """Edges not observed for N hours turn stale, leave live traversal, and come back when observed."""
    await put_edges(graph, ("a", "b"), ("b", "c"))
    clock.advance(3 * 3600)
    await put_edges(graph, ("b", "c"))
    assert await graph.mark_stale(2) == 1
    assert await graph.mark_stale(2) == 0
    live = await graph.traverse(TraverseQuery(service_id="a", depth=3))
    everything = await graph.traverse(TraverseQuery(service_id="a", depth=3, include_stale=True))
    assert ([s for s, _, _ in live.services], [s for s, _, _ in everything.services]) == ([], ["b", "c"])
    assert [r.is_stale for r in await graph.edges("a", outgoing=True, include_stale=True)] == [True]
    await put_edges(graph, ("a", "b"))
    assert [s for s, _, _ in (await graph.traverse(TraverseQuery(service_id="a"))).services] == ["b", "c"]


async def test_mark_stale_bounds(graph: GraphService) -> None:
    """older_than_hours must be positive and bounded."""
    for bad in (0, -1, float("nan"), 1e9):
        with pytest.raises(Invalid):
            await graph.mark_stale(bad)


async def test_updated_at_trigger_fills_forgotten_timestamps(graph: GraphService) -> None:
    """An UPDATE that does not set updated_at still moves it (the migration's trigger)."""
    await put_services(graph, {"service_id": "a"})
    before = (await graph.get_service("a")).updated_at

    async def op(tx: Tx) -> None:
        await tx.conn.execute(update(graph_services).where(graph_services.c.service_id == "a").values(team="t"))

    await graph.store.write(op)
    assert (await graph.get_service("a")).updated_at != before


async def test_cycle_alerts_dedupe_and_follow_component_changes(graph: GraphService) -> None:
    """Detect twice: one alert; the component grows: old alert resolved with a note, new one opened."""
    await put_edges(graph, ("b", "a"), ("a", "b"), ("x", "y"))
    first = await graph.detect_cycles()
    second = await graph.detect_cycles()
    assert ([a.cycle_path for a in first.opened], second.opened, len(second.unchanged)) == ([["a", "b"]], [], 1)
    await put_edges(graph, ("b", "c"), ("c", "a"))
    third = await graph.detect_cycles()
    [new] = third.opened
    [old] = third.resolved
    assert (new.members, new.cycle_path) == (["a", "b", "c"], ["a", "b"])
    assert old.id == first.opened[0].id
    assert f"superseded by alert {new.id}" in (old.resolution_notes or "")
    await graph.delete_service("a")
    fourth = await graph.detect_cycles()
    assert ([a.id for a in fourth.resolved], fourth.components) == ([new.id], 0)
    assert "no longer present" in (fourth.resolved[0].resolution_notes or "")
    assert [a.status for a in await graph.list_alerts(status=None, limit=10, offset=0)] == ["resolved", "resolved"]


async def test_database_keeps_one_unresolved_alert_per_member_set(graph: GraphService) -> None:
    """The partial unique index refuses a second unresolved alert with the same members."""
    await put_edges(graph, ("a", "b"), ("b", "a"))
    [alert] = (await graph.detect_cycles()).opened

    async def op(tx: Tx) -> None:
        row = (await tx.conn.execute(select(cycle_alerts).where(cycle_alerts.c.id == uuid.UUID(alert.id)))).one()
        values = dict(row._mapping)
        values["id"] = uuid.uuid4()
        await tx.conn.execute(cycle_alerts.insert().values(**values))

    with pytest.raises(IntegrityError):
        await graph.store.write(op)


async def test_alert_status_transitions(graph: GraphService) -> None:
    """open → acknowledged → resolved works; going back, or twice, is a failed precondition."""
    await put_edges(graph, ("a", "b"), ("b", "a"))
    [alert] = (await graph.detect_cycles()).opened
    acked = await graph.update_alert(alert.id, AlertUpdateInput(status="acknowledged", acknowledged_by="ana"))
    assert (acked.status, acked.acknowledged_by) == ("acknowledged", "ana")
    with pytest.raises(FailedPrecondition):
        await graph.update_alert(alert.id, AlertUpdateInput(status="acknowledged", acknowledged_by="bo"))
    done = await graph.update_alert(alert.id, AlertUpdateInput(status="resolved", resolution_notes="split the call"))
    assert (done.status, done.resolution_notes, done.resolved_at is not None) == ("resolved", "split the call", True)
    with pytest.raises(FailedPrecondition):
        await graph.update_alert(alert.id, AlertUpdateInput(status="resolved"))
    assert [a.id for a in await graph.list_alerts(status="resolved", limit=10, offset=0)] == [alert.id]
    # The cycle is still there: the next detection opens a fresh alert for it.
    assert len((await graph.detect_cycles()).opened) == 1
    with pytest.raises(NotFound):
        await graph.update_alert(str(uuid.uuid4()), AlertUpdateInput(status="resolved"))
    with pytest.raises(Invalid):
        await graph.update_alert("not-a-uuid", AlertUpdateInput(status="resolved"))


async def test_catalog_impact_hook(clocked_runtime: Any, graph: GraphService) -> None:
    """The catalog's impact provider lists the services upstream of a graph service, [] if unknown."""
    await put_edges(graph, ("web", "api"), ("api", "db"), ("batch", "db", "soft"))
    provider = clocked_runtime.catalog.impact_provider
    assert (sorted(provider("db")), provider("nobody")) == (["api", "batch", "web"], [])


async def _snapshot(store: Store) -> GraphIndex:
    from muster.graph import store as q

    index = GraphIndex()
    async with store.read() as conn:
        services, edges = await q.load_graph(conn)
    for service_id, criticality in services:
        index.put_service(service_id, criticality)
    for edge in edges:
        index.put_edge(*edge)
    return index


def _same(a: GraphIndex, b: GraphIndex) -> None:
    assert sorted(a.edges()) == sorted(b.edges())
    assert a.criticality == b.criticality
    assert (a.live_out, a.live_in, a.all_out, a.all_in) == (b.live_out, b.live_in, b.all_out, b.all_in)
    assert sorted(map(sorted, a.strongly_connected_components())) == sorted(
        map(sorted, b.strongly_connected_components())
    )


async def _workload(graph: GraphService, clock: FakeClock) -> None:
    await put_edges(graph, ("a", "b"), ("b", "c"), ("c", "a"), ("c", "d", "soft"), ("e", "d"))
    await put_edges(graph, ("a", "b", "soft"), discovery_source="kubernetes")
    await put_services(graph, {"service_id": "d", "criticality": "low"}, {"service_id": "a", "criticality": "critical"})
    clock.advance(7200)
    await put_edges(graph, ("e", "d"), ("d", "f"), ("a", "d"))
    await graph.mark_stale(1)
    await graph.delete_service("b")
    await put_edges(graph, ("f", "e"), ("e", "f"))


async def test_index_matches_the_store(graph: GraphService, clock: FakeClock) -> None:
    """After a mixed workload, the live index equals an index rebuilt from the store."""
    await _workload(graph, clock)
    _same(await _snapshot(graph.store), graph.index)


async def test_two_runtimes_share_one_database_through_the_log(
    clocked_runtime: Any, graph: GraphService, clock: FakeClock, db_url: str, tmp_path: Any
) -> None:
    """A second process's index follows the first's writes through the event log, to the same graph."""
    from muster.server import build_runtime, close_runtime
    from tests.conftest import settings_for as make_settings

    await put_edges(graph, ("pre", "existing"))
    other = await build_runtime(make_settings(db_url, tmp_path / "other"), clock=clock)
    try:
        await _workload(graph, clock)
        await other.hub.advance_to(await other.hub.head())
        other_graph: GraphService = other.contexts["graph"].service
        _same(graph.index, other_graph.index)
        _same(await _snapshot(graph.store), other_graph.index)
        assert [f.service_id for f in await other_graph.findings()] == ["a"]
        # And back: a write through the second is seen by the first.
        await put_edges(other_graph, ("z", "y"))
        await clocked_runtime.hub.advance_to(await clocked_runtime.hub.head())
        assert "z" in graph.index
    finally:
        await close_runtime(other)


async def test_traversal_sees_another_process_write_at_once(
    clocked_runtime: Any, graph: GraphService, clock: FakeClock, db_url: str, tmp_path: Any
) -> None:
    """A service another process just created is found: the reader catches up with the log first."""
    from muster.server import build_runtime, close_runtime
    from tests.conftest import settings_for as make_settings

    other = await build_runtime(make_settings(db_url, tmp_path / "other2"), clock=clock)
    try:
        await put_edges(other.contexts["graph"].service, ("fresh", "dep"))
        result = await graph.traverse(TraverseQuery(service_id="fresh"))
        assert [s for s, _, _ in result.services] == ["dep"]
    finally:
        await close_runtime(other)


async def test_postgres_triggers_and_partial_indexes_exist(graph: GraphService, engine_name: str) -> None:
    """The seed's partial indexes exist (the source-side live index on PostgreSQL only); triggers on both."""
    async with graph.store.read() as conn:
        if engine_name == "postgresql":
            rows = await conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename LIKE 'graph_%'"))
            indexes = {r.indexname: r.indexdef for r in rows}
            triggers = {r[0] for r in await conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))}
        else:
            rows = await conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
            indexes = {r.name: r.sql or "" for r in rows}
            found = await conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
            triggers = {r[0] for r in found}
    partial = {name for name, sql in indexes.items() if " WHERE " in sql}
    assert {
        "ix_graph_services_team",
        "ix_graph_services_discovered",
        "ix_graph_dependencies_target_live",
        "ix_graph_dependencies_stale",
        "ix_graph_cycle_alerts_status",
        "ix_graph_cycle_alerts_unresolved_members",
    } <= partial
    assert ("ix_graph_dependencies_source_live" in partial) == (engine_name == "postgresql")
    # Migration 0004: the unique key's prefix and a four-valued column earned no index of their own.
    assert not {"ix_graph_dependencies_source_id_target_id", "ix_graph_dependencies_discovery_source"} & set(indexes)
    assert {"graph_services_updated_at", "graph_dependencies_updated_at", "graph_cycle_alerts_updated_at"} <= triggers


async def test_a_lagging_process_detects_cycles_as_of_the_log_head(graph: GraphService, second_graph: Any) -> None:
    """Detection in a process that has not applied another's new cycle yet keeps that cycle's alert open."""
    await put_edges(graph, ("loop-a", "loop-b"), ("loop-b", "loop-a"))
    opened = (await graph.detect_cycles()).opened
    again = await second_graph.detect_cycles()  # its hub has not run since
    assert ([a.id for a in again.unchanged], again.resolved, again.opened) == ([opened[0].id], [], [])


async def test_deleting_a_service_while_edges_to_it_are_written_is_never_a_store_error(
    graph: GraphService, second_graph: Any
) -> None:
    """Upserts naming a service and deletes of it, from two processes at once: each succeeds or is NotFound."""
    import asyncio

    for round_ in range(15):
        await put_edges(graph, (f"src{round_}", "victim"))
        outcomes = await asyncio.gather(
            *(put_edges(graph, (f"src{round_}-{i}", "victim")) for i in range(4)),
            second_graph.delete_service("victim"),
            return_exceptions=True,
        )
        assert all(not isinstance(o, BaseException) or isinstance(o, NotFound) for o in outcomes), outcomes


async def test_concurrent_upserts_report_each_discovered_service_once(graph: GraphService, second_graph: Any) -> None:
    """Two processes naming the same unknown services at once: each service is reported discovered once."""
    import asyncio

    for round_ in range(10):
        edges = [(f"d{round_}-a", f"d{round_}-b"), (f"d{round_}-b", f"d{round_}-c")]
        first, second = await asyncio.gather(put_edges(graph, *edges), put_edges(second_graph, *edges))
        assert sorted(first.discovered + second.discovered) == [f"d{round_}-{x}" for x in "abc"]


async def test_mark_stale_leaves_an_edge_observed_while_it_ran(graph: GraphService, engine_name: str) -> None:
    """An edge observed (committed) between mark-stale's read and its update stays live."""
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    if engine_name != "postgresql":
        pytest.skip("SQLite writers are serial: no other write can land between the read and the update")
    await put_edges(graph, ("old-src", "old-dst"))
    graph.store.clock.advance(3 * 3600)  # type: ignore[attr-defined]
    engine = create_async_engine(graph.store.url)
    try:
        async with engine.connect() as conn:
            await conn.execute(
                update(dependencies).values(last_observed_at=graph.store.clock.now())
            )  # an upsert's observation, not yet committed: mark-stale's update waits for its row lock
            marking = asyncio.create_task(graph.mark_stale(1))
            await asyncio.sleep(0.3)
            await conn.commit()
        assert await marking == 0
    finally:
        await engine.dispose()
    async with graph.store.read() as conn:
        assert (await conn.execute(select(dependencies.c.is_stale))).scalars().all() == [False]
