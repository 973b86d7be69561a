"""The graph's application service: the one implementation behind HTTP and gRPC.

Writes (bulk upserts, deletes, staleness, alerts) commit with their events
before they return; reads that must be fast (traversal, impact, cycle
detection, findings) are answered from the in-memory :class:`GraphIndex`,
which the event log keeps current in every process. Listings that return
whole records (services, edges, alerts) read the store.

Events (kind prefix ``graph.``). Bulk writes emit one event per chunk of up to
``EVENT_CHUNK`` rows, carrying compact rows, never one event per row:

* ``graph.services_upserted``        ``{"services": [[service_id, criticality], ...]}``
* ``graph.dependencies_upserted``    ``{"discovered": [service_id, ...],
  "edges": [[source, target, discovery_source, criticality], ...]}``
* ``graph.dependencies_marked_stale`` ``{"edges": [[source, target, discovery_source], ...]}``
* ``graph.service_deleted``          ``{"service_id": ...}`` (its edges went with it)
* ``graph.alert_opened`` / ``graph.alert_updated``   the alert
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import structlog

from muster.errors import Invalid, NotFound
from muster.events.hub import Event, EventHub
from muster.graph import alert_store as qa
from muster.graph import store as q
from muster.graph.algorithms import (
    CycleCandidate,
    Impact,
    Inversion,
    Traversal,
    criticality_inversions,
    cycle_candidates,
    impact,
    traverse,
)
from muster.graph.index import GraphIndex
from muster.graph.model import (
    MAX_LIST_LIMIT,
    MAX_OFFSET,
    AlertUpdateInput,
    CycleAlertRecord,
    DependencyRecord,
    GraphServiceRecord,
    ListServicesQuery,
    TraverseQuery,
    UpsertDependenciesInput,
    UpsertServicesInput,
    check_transition,
    require_existable,
)
from muster.identity import caller
from muster.identity.model import require_owner
from muster.store.engine import Store, Tx

__all__ = ["EVENT_CHUNK", "CycleReport", "GraphService", "Upserted"]

log = structlog.get_logger("muster.graph")
EVENT_CHUNK = 5000
MAX_STALE_HOURS = 24 * 365 * 10


@dataclass(frozen=True, slots=True)
class Upserted:
    upserted: int
    discovered: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"upserted": self.upserted, "discovered": self.discovered}


@dataclass(frozen=True, slots=True)
class CycleReport:
    components: int
    opened: list[CycleAlertRecord]
    unchanged: list[CycleAlertRecord]
    resolved: list[CycleAlertRecord]

    def to_dict(self) -> dict[str, Any]:
        return {
            "components": self.components,
            "opened": [a.to_dict() for a in self.opened],
            "unchanged": [a.to_dict() for a in self.unchanged],
            "resolved": [a.to_dict() for a in self.resolved],
        }


def _chunked(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + EVENT_CHUNK] for i in range(0, len(items), EVENT_CHUNK)]


def _alert_uuid(alert_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(alert_id)
    except ValueError:
        raise Invalid("alert_id", "must be a UUID such as 2f1c...-...") from None


class GraphService:
    def __init__(self, store: Store, hub: EventHub) -> None:
        self.store = store
        self.hub = hub
        self.index = GraphIndex()
        hub.add_applier(self._apply)

    def _apply(self, event: Event) -> None:
        if event.kind.startswith("graph."):
            self.index.apply(event)

    async def load(self) -> None:
        """Fill the index from the store (before the hub starts following)."""
        async with self.store.read() as conn:
            services, edges = await q.load_graph(conn)
        for service_id, criticality in services:
            self.index.put_service(service_id, criticality)
        for source, target, discovery_source, criticality, stale in edges:
            self.index.put_edge(source, target, discovery_source, criticality, stale)
        log.info("graph.loaded", services=len(services), edges=len(edges))

    # -- writes ------------------------------------------------------------------------

    async def upsert_services(self, data: UpsertServicesInput) -> Upserted:
        items = data.services

        async def op(tx: Tx) -> Upserted:
            await q.upsert_services(tx.conn, tx.insert, items, tx.now, tx.actor)
            for chunk in _chunked(items):
                rows = [[s.service_id, s.criticality] for s in chunk]
                tx.emit("graph.services_upserted", "services", {"services": rows})
            return Upserted(len(items), [])

        return await self.store.write(op)

    async def upsert_dependencies(self, data: UpsertDependenciesInput) -> Upserted:
        items = data.dependencies

        async def op(tx: Tx) -> Upserted:
            names = {i.source_service_id for i in items} | {i.target_service_id for i in items}
            ids, created = await q.ensure_services(tx.conn, tx.insert, names, tx.now, tx.actor)
            await q.upsert_edges(tx.conn, tx.insert, items, ids, tx.now)
            chunks = _chunked(items)
            for number, chunk in enumerate(chunks):
                edges = [[i.source_service_id, i.target_service_id, i.discovery_source, i.criticality] for i in chunk]
                payload: dict[str, Any] = {"edges": edges}
                if number == 0:
                    payload["discovered"] = created
                tx.emit("graph.dependencies_upserted", "dependencies", payload)
            return Upserted(len(items), created)

        return await self.store.write(op)

    async def delete_service(self, service_id: str) -> None:
        require_existable(service_id)
        principal = caller.current()  # the op runs in the store's writer task: read the caller here

        async def op(tx: Tx) -> None:
            existing = await q.get_service(tx.conn, service_id)
            if existing is not None:
                require_owner(principal, existing.owner, f"graph service {service_id}")
            if existing is None or not await q.delete_service(tx.conn, service_id):
                raise NotFound(f"graph service {service_id} does not exist", field="service_id")
            tx.emit("graph.service_deleted", service_id, {"service_id": service_id})

        await self.store.write(op)

    async def mark_stale(self, older_than_hours: float) -> int:
        if not 0 < older_than_hours <= MAX_STALE_HOURS:
            raise Invalid("older_than_hours", f"must be greater than 0 and at most {MAX_STALE_HOURS}")

        async def op(tx: Tx) -> int:
            marked = await q.mark_stale(tx.conn, tx.now - timedelta(hours=older_than_hours), tx.now)
            for chunk in _chunked(marked):
                tx.emit("graph.dependencies_marked_stale", "dependencies", {"edges": [list(e) for e in chunk]})
            return len(marked)

        return await self.store.write(op)

    # -- reads from the store --------------------------------------------------------------

    async def get_service(self, service_id: str) -> GraphServiceRecord:
        require_existable(service_id)
        async with self.store.read() as conn:
            record = await q.get_service(conn, service_id)
        if record is None:
            raise NotFound(f"graph service {service_id} does not exist", field="service_id")
        return record

    async def list_services(self, query: ListServicesQuery) -> tuple[list[GraphServiceRecord], int]:
        async with self.store.read() as conn:
            return await q.list_services(
                conn, team=query.team, criticality=query.criticality, limit=query.limit, offset=query.offset
            )

    async def edges(self, service_id: str, *, outgoing: bool, include_stale: bool) -> list[DependencyRecord]:
        require_existable(service_id)
        async with self.store.read() as conn:
            if not await q.service_exists(conn, service_id):
                raise NotFound(f"graph service {service_id} does not exist", field="service_id")
            return await q.list_edges(conn, service_id, outgoing=outgoing, include_stale=include_stale)

    # -- reads from memory -------------------------------------------------------------------

    async def _known(self, service_id: str) -> None:
        """Raise NotFound unless the service exists (catching up with the log if another process made it)."""
        if service_id in self.index:
            return
        require_existable(service_id)
        async with self.store.read() as conn:
            exists = await q.service_exists(conn, service_id)
        if exists:
            await self._catch_up()
        if service_id not in self.index:
            raise NotFound(f"graph service {service_id} does not exist", field="service_id")

    async def traverse(self, query: TraverseQuery) -> Traversal:
        await self._known(query.service_id)
        out, inc = self.index.adjacency(include_stale=query.include_stale)
        return traverse(out, inc, query.service_id, query.direction, query.depth)

    async def impact(self, service_id: str) -> Impact:
        await self._known(service_id)
        return impact(self.index.live_in, service_id)

    def impacted_services(self, service_name: str) -> list[str]:
        """The catalog's hook: graph services impacted if ``service_name`` goes down ([] if unknown)."""
        if service_name not in self.index:
            return []
        return [s for s, _, _ in impact(self.index.live_in, service_name).impacted]

    async def findings(self) -> list[Inversion]:
        """Criticality inversions of the live graph, as of the log's head (other processes' changes included)."""
        await self._catch_up()
        return criticality_inversions(self.index.criticality, self.index.live_out)

    async def _catch_up(self) -> None:
        """Apply every event committed so far, by any process, before a decision that must see them all."""
        await self.hub.advance_to(await self.hub.head())

    def cycle_candidates(self) -> list[CycleCandidate]:
        return cycle_candidates(self.index.strongly_connected_components(), self.index.live_out, self.index.live_in)

    # -- cycle alerts ---------------------------------------------------------------------------

    async def detect_cycles(self) -> CycleReport:
        """One unresolved alert per component of the live graph; alerts of vanished components resolve.

        The components come from this process's index, caught up with the log first: a process that had
        not yet applied another's new edge would otherwise resolve the alert that edge opened.
        """
        await self._catch_up()
        candidates = self.cycle_candidates()

        async def op(tx: Tx) -> CycleReport:
            by_key = await qa.unresolved_alerts(tx.conn)
            opened: list[CycleAlertRecord] = []
            unchanged: list[CycleAlertRecord] = []
            successor: dict[str, CycleAlertRecord] = {}
            for candidate in candidates:
                if candidate.key in by_key:
                    # Same key, same member set: the stored list is this sorted one.
                    unchanged.append(replace(by_key.pop(candidate.key), members=candidate.members))
                    continue
                alert = await qa.insert_alert(
                    tx.conn, tx.insert, key=candidate.key, members=candidate.members,
                    cycle_path=candidate.cycle_path, now=tx.now,
                )
                if alert is None:  # another replica opened it in the meantime
                    continue
                opened.append(alert)
                tx.emit("graph.alert_opened", alert.id, alert.to_dict())
                for member in candidate.members:
                    successor[member] = alert
            resolved: list[CycleAlertRecord] = []
            for stale in by_key.values():
                current = await qa.get_alert(tx.conn, uuid.UUID(stale.id))
                assert current is not None
                heir = next((successor[m] for m in current.members if m in successor), None)
                note = (
                    f"cycle component changed; superseded by alert {heir.id} ({len(heir.members)} services)"
                    if heir is not None
                    else "cycle no longer present in the live graph"
                )
                if await qa.resolve_alert(tx.conn, uuid.UUID(stale.id), note, tx.now):
                    record = replace(
                        current, status="resolved", resolution_notes=note, resolved_at=tx.now, updated_at=tx.now
                    )
                    resolved.append(record)
                    tx.emit("graph.alert_updated", record.id, record.to_dict())
            return CycleReport(len(candidates), opened, unchanged, resolved)

        return await self.store.write(op)

    async def list_alerts(self, *, status: str | None, limit: int, offset: int) -> list[CycleAlertRecord]:
        if status is not None and status not in ("open", "acknowledged", "resolved"):
            raise Invalid("status", "must be one of open, acknowledged, resolved")
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise Invalid("limit", f"must be between 1 and {MAX_LIST_LIMIT}")
        if not 0 <= offset <= MAX_OFFSET:
            raise Invalid("offset", f"must be between 0 and {MAX_OFFSET}")
        async with self.store.read() as conn:
            return await qa.list_alerts(conn, status=status, limit=limit, offset=offset)

    async def update_alert(self, alert_id: str, data: AlertUpdateInput) -> CycleAlertRecord:
        key = _alert_uuid(alert_id)

        async def op(tx: Tx) -> CycleAlertRecord:
            current = await qa.get_alert(tx.conn, key, for_update=True)
            if current is None:
                raise NotFound(f"cycle alert {alert_id} does not exist", field="alert_id")
            check_transition(current.status, data.status)
            values: dict[str, Any] = {"status": data.status, "updated_at": tx.now}
            if data.acknowledged_by is not None:
                values["acknowledged_by"] = data.acknowledged_by
            if data.resolution_notes is not None:
                values["resolution_notes"] = data.resolution_notes
            if data.status == "resolved":
                values["resolved_at"] = tx.now
            record = await qa.update_alert(tx.conn, key, values)
            tx.emit("graph.alert_updated", record.id, record.to_dict())
            return record

        return await self.store.write(op)
