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
rustworkx as it is instead of rebuilding it per call.

The components themselves are kept until a change could alter them, so a
detection on a graph whose cycles did not change reads them instead of
recomputing them (a whole computation is ~0.1 s on 100,000 services /
400,000 edges; reading them back is free). Which changes can alter them:

* a new live pair ``a -> b`` closes a new cycle only through a path
  ``b ~> a``: not if ``a`` and ``b`` already share a component, and not if
  ``a`` has no incoming or ``b`` no outgoing live pair; and if everything
  ``a`` hears from is in ``b``'s component (or everything ``b`` depends on in
  ``a``'s), just ``a`` (or ``b``) joins that component, kept in place;
* a live pair that disappears can split only the component holding both
  ends; between two components it was on no cycle;
* a new service is a component of its own; a service removed from no
  component (with more than one member) leaves the others as they were.

Anything else drops the cached components, and the next detection computes
them again. Re-observing an existing edge changes nothing at all.
"""

from __future__ import annotations

import bisect
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
        # Service id by node number (a list: components come back as node numbers in no
        # particular order, and a list reads them faster than a dict); None where freed.
        self._name: list[str | None] = []
        # Components with more than one member (each in name order), and each node's
        # component number (-1: on its own); None when a change may have altered them.
        self._components: list[list[str]] | None = None
        self._component_of: np.ndarray = np.empty(0, dtype=np.int64)
        # (names in sorted order, rank of each node number), see _name_order; None after a removal.
        self._order: tuple[np.ndarray, np.ndarray] | None = None
        self._added: list[int] = []  # node numbers of services added since the order was built

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
        """Components of the live graph with more than one member, each in name order.

        Computed by rustworkx (in Rust) when a change may have altered them since
        the last call (see the module docstring), read back otherwise. The lists
        are shared with the index: callers must not change them.
        """
        if self._components is None:
            self._components = self._compute_components()
        return list(self._components)

    @property
    def components_cached(self) -> bool:
        """Whether the next :meth:`strongly_connected_components` reads them back instead of computing them."""
        return self._components is not None

    def _compute_components(self) -> list[list[str]]:
        """Components by rustworkx, put in name order through the rank table.

        Sorting 100,000 names in Python takes about as long as finding the
        components; ranks looked up and sorted as integers (numpy, which
        rustworkx depends on) do not.
        """
        found = [c for c in rx.strongly_connected_components(self.graph) if len(c) > 1]
        component_of = np.full(len(self._name), -1, dtype=np.int64)
        if not found:
            self._component_of = component_of
            return []
        names, rank = self._name_order()
        components: list[list[str]] = []
        for number, nodes in enumerate(found):
            numbers = np.asarray(nodes, dtype=np.int64)
            component_of[numbers] = number
            components.append(names[np.sort(rank[numbers])].tolist())
        self._component_of = component_of
        return components

    def _name_order(self) -> tuple[np.ndarray, np.ndarray]:
        """(every name in sorted order, each node number's position in it).

        Built by one sort of all names, then kept: services added since are
        merged in (their positions found by binary search, the others' shifted
        with numpy), so a new service costs no full sort. A removal, or more
        additions than an eighth of the table, builds it again.
        """
        if self._order is not None and self._added:
            if len(self._added) * 8 > len(self._order[0]):
                self._order = None
            else:
                self._order = self._merge_added(*self._order)
        self._added = []
        if self._order is None:
            labels = [name if name is not None else "" for name in self._name]  # "": a freed number
            by_name = np.fromiter(sorted(range(len(labels)), key=labels.__getitem__), dtype=np.int64, count=len(labels))
            rank = np.empty(len(labels), dtype=np.int64)
            rank[by_name] = np.arange(len(labels), dtype=np.int64)
            self._order = (np.array(labels, dtype=object)[by_name], rank)
        return self._order

    def _merge_added(self, names: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        added = sorted(self._added, key=self._name.__getitem__)  # type: ignore[arg-type]
        added_names = np.array([self._name[node] for node in added], dtype=object)
        positions = np.searchsorted(names, added_names)
        merged = np.empty(len(self._name), dtype=np.int64)
        merged[: len(rank)] = rank + np.searchsorted(positions, rank, side="right")
        merged[np.asarray(added, dtype=np.int64)] = positions + np.arange(len(added), dtype=np.int64)
        return np.insert(names, positions, added_names), merged

    def _component(self, node: int) -> int:
        return int(self._component_of[node]) if node < len(self._component_of) else -1

    def edges(self) -> Iterable[tuple[str, str, str, str, bool]]:
        for (source, target, discovery_source), (criticality, stale) in self._edges.items():
            yield source, target, discovery_source, criticality, stale

    # -- writing ------------------------------------------------------------------------

    def put_service(self, service_id: str, criticality: str) -> None:
        self.criticality[service_id] = _INTERN.get(criticality, criticality)
        if service_id not in self._node:
            node = self.graph.add_node(None)
            self._node[service_id] = node
            if node == len(self._name):
                self._name.append(service_id)
            else:
                self._name[node] = service_id
            if node < len(self._component_of):  # a number freed by a removed service
                self._component_of[node] = -1
            if self._order is not None:
                self._added.append(node)

    def ensure_service(self, service_id: str) -> None:
        """Add a service discovered through an edge, keeping it as it is if it exists."""
        if service_id not in self.criticality:
            self.put_service(service_id, "medium")

    def put_edge(self, source: str, target: str, discovery_source: str, criticality: str, stale: bool) -> None:
        if source not in self.criticality:
            self.put_service(source, "medium")
        if target not in self.criticality:
            self.put_service(target, "medium")
        key = (source, target, discovery_source)
        state = _STATES[(criticality, stale)]
        previous = self._edges.get(key)
        if previous is state:  # re-observed as it was: nothing derived changes
            return
        self._edges[key] = state
        if previous is None and target not in self.all_out.get(source, ()):
            # The pair's first edge (the bulk-load case): it alone decides the pair.
            criticality = state[0]
            self.all_out.setdefault(source, {})[target] = criticality
            self.all_in.setdefault(target, {})[source] = criticality
            if not stale:
                self.live_out.setdefault(source, {})[target] = criticality
                self.live_in.setdefault(target, {})[source] = criticality
                self._link(self._node[source], self._node[target])
            return
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
        self._name[node] = None
        self.graph.remove_node(node)
        self._order = None
        self._added = []
        # Its pairs are gone; had it shared a component, dropping them already dropped the components.

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
            self._link(a, b)
        elif live is None and has:
            self._unlink(a, b)

    def _link(self, a: int, b: int) -> None:
        """Add the live pair ``a -> b`` to the digraph, keeping the components current or dropping them."""
        if self._components is not None:
            self._components_after_link(a, b)
        self.graph.add_edge(a, b, None)

    def _components_after_link(self, a: int, b: int) -> None:
        """Keep the components through a new pair ``a -> b`` (before it is added), or drop them.

        A cycle through it needs a path ``b ~> a``. If every service ``a`` hears
        from sits in ``b``'s component C, every such path ends C -> a, so exactly
        ``a`` joins C (likewise ``b`` joins ``a``'s component if everything ``b``
        depends on sits there): a new service closing a loop into a cycle is
        kept current without computing the components again.
        """
        graph = self.graph
        of_a, of_b = self._component(a), self._component(b)
        if (of_a != -1 and of_a == of_b) or not graph.in_degree(a) or not graph.out_degree(b):
            return
        if of_a == -1 and of_b != -1 and all(self._component(p) == of_b for p in graph.predecessor_indices(a)):
            self._join(a, of_b)
        elif of_b == -1 and of_a != -1 and all(self._component(s) == of_a for s in graph.successor_indices(b)):
            self._join(b, of_a)
        else:
            self._components = None

    def _join(self, node: int, number: int) -> None:
        assert self._components is not None
        members = list(self._components[number])  # a new list: callers may hold the old one
        name = self._name[node]
        assert name is not None
        bisect.insort(members, name)
        self._components[number] = members
        if node >= len(self._component_of):
            grown = np.full(len(self._name), -1, dtype=np.int64)
            grown[: len(self._component_of)] = self._component_of
            self._component_of = grown
        self._component_of[node] = number

    def _unlink(self, a: int, b: int) -> None:
        """Remove the live pair ``a -> b``; only a pair inside one component can split it."""
        if self._components is not None:
            shared = self._component(a)
            if shared != -1 and shared == self._component(b):
                self._components = None
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
