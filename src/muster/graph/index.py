"""The in-memory graph index: what traversal, impact, cycles and findings read.

Built from a snapshot of the store at start, then kept current by the event
log: every ``graph.*`` event carries the state it sets (not a delta to add),
so replaying events on top of a later snapshot converges to the same graph,
and every process (the HTTP and gRPC doors, N replicas on one PostgreSQL)
holds the same index a poll interval after a commit. The process that wrote
sees its own write at once (``Store.write`` returns after the hub applied it).

Per edge ``(source, target, discovery_source)`` it keeps the criticality and
the stale flag. Per pair it derives the strongest criticality of its live
edges and of all its edges, kept as four adjacency maps (live/all, out/in),
and a rustworkx digraph of the live pairs for strongly connected components.
That digraph is kept current edge by edge, so cycle detection hands it to
rustworkx as it is instead of rebuilding it per call; components come back
as node numbers and are put in name order through a rank table (every
service's position in name order), built again only after the set of
services changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import rustworkx as rx

from muster.events.hub import Event
from muster.graph.model import CRITICALITY_RANK

__all__ = ["GraphIndex"]

_DISCOVERY_SOURCES = ("manual", "otel_service_graph", "kubernetes", "service_mesh")
# Edge states are one of six values: share them instead of storing 400k tuples.
_STATES = {(c, s): (c, s) for c in CRITICALITY_RANK for s in (False, True)}
_INTERN = {c: c for c in CRITICALITY_RANK}


class GraphIndex:
    def __init__(self) -> None:
        self.criticality: dict[str, str] = {}
        self._edges: dict[tuple[str, str, str], tuple[str, bool]] = {}
        self.live_out: dict[str, dict[str, str]] = {}
        self.live_in: dict[str, dict[str, str]] = {}
        self.all_out: dict[str, dict[str, str]] = {}
        self.all_in: dict[str, dict[str, str]] = {}
        self.graph: rx.PyDiGraph = rx.PyDiGraph(multigraph=False)
        self._node: dict[str, int] = {}
        self._name: dict[int, str] = {}
        # (names in sorted order, rank of each node number); None after the service set changed.
        self._order: tuple[np.ndarray, np.ndarray] | None = None

    # -- reading --------------------------------------------------------------------

    def __contains__(self, service_id: object) -> bool:
        return service_id in self.criticality

    def __len__(self) -> int:
        return len(self.criticality)

    @property
    def edge_count(self) -> int:
        return len(self._edges)

    def adjacency(self, *, include_stale: bool) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        """``(out, inc)`` maps over live edges, or over all edges."""
        if include_stale:
            return self.all_out, self.all_in
        return self.live_out, self.live_in

    def strongly_connected_components(self) -> list[list[str]]:
        """Components of the live graph with more than one member, each in name order (rustworkx, in Rust).

        Sorting 100,000 names in Python takes longer than finding the components;
        ranks looked up and sorted as integers (numpy, which rustworkx depends on) do not.
        """
        components = [c for c in rx.strongly_connected_components(self.graph) if len(c) > 1]
        if not components:
            return []
        names, rank = self._name_order()
        return [names[np.sort(rank[np.asarray(c, dtype=np.int64)])].tolist() for c in components]

    def _name_order(self) -> tuple[np.ndarray, np.ndarray]:
        if self._order is None:
            names = sorted(self._node)
            rank = np.full(max(self._name, default=0) + 1, -1, dtype=np.int64)
            rank[np.fromiter((self._node[n] for n in names), dtype=np.int64, count=len(names))] = np.arange(
                len(names), dtype=np.int64
            )
            self._order = (np.array(names, dtype=object), rank)
        return self._order

    def edges(self) -> Iterable[tuple[str, str, str, str, bool]]:
        for (source, target, discovery_source), (criticality, stale) in self._edges.items():
            yield source, target, discovery_source, criticality, stale

    # -- writing ------------------------------------------------------------------------

    def put_service(self, service_id: str, criticality: str) -> None:
        self.criticality[service_id] = _INTERN.get(criticality, criticality)
        if service_id not in self._node:
            node = self.graph.add_node(None)
            self._node[service_id] = node
            self._name[node] = service_id
            self._order = None

    def ensure_service(self, service_id: str) -> None:
        """Add a service discovered through an edge, keeping it as it is if it exists."""
        if service_id not in self.criticality:
            self.put_service(service_id, "medium")

    def put_edge(self, source: str, target: str, discovery_source: str, criticality: str, stale: bool) -> None:
        self.ensure_service(source)
        self.ensure_service(target)
        self._edges[(source, target, discovery_source)] = _STATES[(criticality, stale)]
        self._settle_pair(source, target)

    def mark_stale(self, source: str, target: str, discovery_source: str) -> None:
        state = self._edges.get((source, target, discovery_source))
        if state is not None and not state[1]:
            self._edges[(source, target, discovery_source)] = _STATES[(state[0], True)]
            self._settle_pair(source, target)

    def remove_service(self, service_id: str) -> None:
        if self.criticality.pop(service_id, None) is None:
            return
        for target in list(self.all_out.get(service_id, ())):
            self._drop_pair(service_id, target)
        for source in list(self.all_in.get(service_id, ())):
            self._drop_pair(source, service_id)
        node = self._node.pop(service_id)
        del self._name[node]
        self.graph.remove_node(node)
        self._order = None

    def _drop_pair(self, source: str, target: str) -> None:
        for discovery_source in _DISCOVERY_SOURCES:
            self._edges.pop((source, target, discovery_source), None)
        self._settle_pair(source, target)

    def _settle_pair(self, source: str, target: str) -> None:
        """Recompute the pair's strongest live and overall criticality from its edges."""
        live: str | None = None
        any_: str | None = None
        for discovery_source in _DISCOVERY_SOURCES:
            state = self._edges.get((source, target, discovery_source))
            if state is None:
                continue
            criticality, stale = state
            if any_ is None or CRITICALITY_RANK[criticality] > CRITICALITY_RANK[any_]:
                any_ = criticality
            if not stale and (live is None or CRITICALITY_RANK[criticality] > CRITICALITY_RANK[live]):
                live = criticality
        _set(self.all_out, source, target, any_)
        _set(self.all_in, target, source, any_)
        _set(self.live_out, source, target, live)
        _set(self.live_in, target, source, live)
        a, b = self._node.get(source), self._node.get(target)
        if a is None or b is None:
            return
        has = self.graph.has_edge(a, b)
        if live is not None and not has:
            self.graph.add_edge(a, b, None)
        elif live is None and has:
            self.graph.remove_edge(a, b)

    # -- the event log ----------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        payload: dict[str, Any] = event.payload
        kind = event.kind
        if kind == "graph.services_upserted":
            for service_id, criticality in payload["services"]:
                self.put_service(service_id, criticality)
        elif kind == "graph.dependencies_upserted":
            for service_id in payload.get("discovered", ()):
                self.ensure_service(service_id)
            for source, target, discovery_source, criticality in payload["edges"]:
                self.put_edge(source, target, discovery_source, criticality, False)
        elif kind == "graph.dependencies_marked_stale":
            for source, target, discovery_source in payload["edges"]:
                self.mark_stale(source, target, discovery_source)
        elif kind == "graph.service_deleted":
            self.remove_service(payload["service_id"])


def _set(adjacency: dict[str, dict[str, str]], a: str, b: str, value: str | None) -> None:
    if value is None:
        neighbours = adjacency.get(a)
        if neighbours is not None:
            neighbours.pop(b, None)
            if not neighbours:
                del adjacency[a]
    else:
        adjacency.setdefault(a, {})[b] = value
