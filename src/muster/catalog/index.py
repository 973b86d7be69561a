"""The catalog's in-memory index: discovery without touching the store.

It is built from a snapshot at start and then kept current by the event log
(``catalog.*`` events carry the full state they change), so every process
answers ``discover`` from memory. Heartbeat metrics (load, p95, queue depth)
are soft state: they arrive from local heartbeats at once and from other
processes through a periodic refresh (see ``CatalogService``).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from muster.catalog.model import DiscoverQuery, ServiceRecord
from muster.clock import parse_isoformat
from muster.events.hub import Event

__all__ = ["CatalogIndex", "record_from_dict"]


def record_from_dict(data: dict[str, Any]) -> ServiceRecord:
    registered_at = parse_isoformat(data["registered_at"])
    assert registered_at is not None
    return ServiceRecord(
        service_id=data["service_id"],
        name=data["name"],
        type=data["type"],
        role=data["role"],
        url=data["url"],
        caps=list(data["caps"]),
        labels=dict(data["labels"]),
        ctx_limit=data.get("ctx_limit"),
        cost_hint_usd_per_1k=data.get("cost_hint_usd_per_1k"),
        heartbeat_interval_s=int(data["heartbeat_interval_s"]),
        ttl_s=int(data["ttl_s"]),
        status=data["status"],
        registered_at=registered_at,
        last_heartbeat_ts=parse_isoformat(data.get("last_heartbeat_ts")),
        p95_ms=data.get("p95_ms"),
        queue_depth=data.get("queue_depth"),
        load=data.get("load"),
        owner=data.get("owner", "anonymous"),
        instance_id=data.get("instance_id"),
    )


_CACHE_ENTRIES = 4096


class CatalogIndex:
    """Records by id plus secondary sets by name, type, role and capability.

    ``discover`` answers repeated queries from a small result cache. Any change
    of membership, status or role bumps ``generation`` and so invalidates every
    cached answer at once: a cached answer never includes an instance that is
    down or gone. Only the *order* (load and p95 move with every heartbeat) may
    be up to ``rank_ttl`` seconds old.
    """

    def __init__(self, *, rank_ttl: float = 1.0) -> None:
        self.by_id: dict[str, ServiceRecord] = {}
        self.generation = 0
        self.rank_ttl = rank_ttl
        self._cache: dict[tuple[object, ...], tuple[int, float, list[ServiceRecord]]] = {}
        self._by_name: defaultdict[str, set[str]] = defaultdict(set)
        self._by_type: defaultdict[str, set[str]] = defaultdict(set)
        self._by_role: defaultdict[str, set[str]] = defaultdict(set)
        self._by_cap: defaultdict[str, set[str]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, service_id: str) -> ServiceRecord | None:
        return self.by_id.get(service_id)

    def put(self, record: ServiceRecord) -> None:
        self.generation += 1
        old = self.by_id.get(record.service_id)
        if old is not None:
            self._unlink(old)
        self.by_id[record.service_id] = record
        self._by_name[record.name].add(record.service_id)
        self._by_type[record.type].add(record.service_id)
        self._by_role[record.role].add(record.service_id)
        for cap in record.caps:
            self._by_cap[cap].add(record.service_id)

    def remove(self, service_id: str) -> ServiceRecord | None:
        self.generation += 1
        old = self.by_id.pop(service_id, None)
        if old is not None:
            self._unlink(old)
        return old

    def _unlink(self, record: ServiceRecord) -> None:
        for table, key in (
            (self._by_name, record.name),
            (self._by_type, record.type),
            (self._by_role, record.role),
            *((self._by_cap, cap) for cap in record.caps),
        ):
            members = table.get(key)
            if members is not None:
                members.discard(record.service_id)
                if not members:
                    del table[key]

    def set_role(self, service_id: str, role: str) -> None:
        record = self.by_id.get(service_id)
        if record is not None and record.role != role:
            self.generation += 1
            self._by_role[record.role].discard(service_id)
            record.role = role
            self._by_role[role].add(service_id)

    def set_status(self, service_id: str, status: str) -> None:
        record = self.by_id.get(service_id)
        if record is not None and record.status != status:
            self.generation += 1
            record.status = status

    def discover(self, query: DiscoverQuery) -> list[ServiceRecord]:
        """Matching records, best first (lowest load, then p95), at most ``query.limit``."""
        key = (query.name, query.type, query.role, tuple(sorted(query.cap)), tuple(sorted(query.label)),
               query.status, query.limit)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] == self.generation and now - cached[1] < self.rank_ttl:
            return cached[2]
        result = self._discover(query)
        if len(self._cache) >= _CACHE_ENTRIES:
            self._cache.clear()
        self._cache[key] = (self.generation, now, result)
        return result

    def _discover(self, query: DiscoverQuery) -> list[ServiceRecord]:
        candidates: list[set[str]] = []
        if query.name is not None:
            candidates.append(self._by_name.get(query.name, set()))
        if query.type is not None:
            candidates.append(self._by_type.get(query.type, set()))
        if query.role is not None:
            candidates.append(self._by_role.get(query.role, set()))
        candidates.extend(self._by_cap.get(cap, set()) for cap in query.cap)
        pool: Iterable[ServiceRecord]
        if candidates:
            candidates.sort(key=len)
            ids = candidates[0].intersection(*candidates[1:]) if len(candidates) > 1 else candidates[0]
            pool = (self.by_id[sid] for sid in ids)
            if query.status is None and not query.label:
                # name, type, role and caps are settled by the sets above: only liveness is left.
                matching: Iterable[ServiceRecord] = (r for r in pool if r.status != "down")
                return heapq.nsmallest(query.limit, matching, key=ServiceRecord.rank)
        else:
            pool = self.by_id.values()
        matching = (record for record in pool if record.matches(query))
        return heapq.nsmallest(query.limit, matching, key=ServiceRecord.rank)

    def status_counts(self) -> Counter[str]:
        return Counter(record.status for record in self.by_id.values())

    def apply(self, event: Event) -> None:
        """Bring the index up to date with one ``catalog.*`` event."""
        payload = event.payload
        if event.kind == "catalog.registered":  # a new instance, or one registered again (same id): replaced
            self.put(record_from_dict(payload["service"]))
        elif event.kind == "catalog.deregistered":
            self.remove(payload["service_id"])
        elif event.kind == "catalog.promoted":
            self.set_role(payload["service_id"], payload["role"])
        elif event.kind == "catalog.status_changed":
            record = self.by_id.get(payload["service_id"])
            if record is not None:
                self.set_status(record.service_id, payload["status"])
                seen = parse_isoformat(payload.get("last_heartbeat_ts"))
                if seen is not None and (record.last_heartbeat_ts is None or seen > record.last_heartbeat_ts):
                    record.last_heartbeat_ts = seen
