"""Graph algorithms over plain adjacency maps: pure functions, no I/O.

An adjacency map is ``{service_id: {neighbour_id: edge_criticality}}``. The
in-memory index hands out one map per direction (``out``: what a service
depends on; ``inc``: what depends on it), for live edges or for all edges. Two
edges between the same pair from different discovery sources count once, with
the strongest criticality among them.

* :func:`traverse`: breadth-first, with each reached service's distance and
  every edge followed from a service closer than ``depth``. ``both`` is the
  union of the upstream and the downstream traversals; it never changes
  direction mid-walk.
* :func:`strongly_connected_components`: iterative Tarjan, the reference the
  tests hold rustworkx to (the service uses rustworkx).
* :func:`cycle_candidates`: one candidate alert per component with more than
  one member: its sorted members, a key naming the member set, and as
  ``cycle_path`` the shortest cycle through the component's smallest member
  (neighbours taken in sorted order, so the same graph always gives the same
  path). The path starts at that smallest member; its last service depends on
  the first.
* :func:`impact`: everything that depends on a service, transitively, with the
  criticality of the strongest path to it, a path being as strong as its
  weakest edge.
* :func:`criticality_inversions`: a ``critical`` service with a live ``hard``
  edge to a ``low`` one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from muster.graph.model import CRITICALITY_RANK

__all__ = [
    "Adjacency",
    "CycleCandidate",
    "Impact",
    "Inversion",
    "Traversal",
    "criticality_inversions",
    "cycle_candidates",
    "impact",
    "members_key",
    "shortest_cycle_through",
    "strongly_connected_components",
    "traverse",
]

Adjacency = Mapping[str, Mapping[str, str]]
Edge = tuple[str, str, str]  # (source, target, criticality)
_RANKED = sorted(CRITICALITY_RANK, key=CRITICALITY_RANK.__getitem__, reverse=True)  # hard, degraded, soft


@dataclass(frozen=True, slots=True)
class Traversal:
    service_id: str
    direction: str
    depth: int
    # (service_id, distance, found_by) where found_by is "downstream", "upstream" or "both".
    services: list[tuple[str, int, str]]
    edges: list[Edge]

    def to_dict(self) -> dict[str, Any]:
        return {
            "service_id": self.service_id,
            "direction": self.direction,
            "depth": self.depth,
            "services": [{"service_id": s, "distance": d, "direction": how} for s, d, how in self.services],
            "edges": [{"source": s, "target": t, "criticality": c} for s, t, c in self.edges],
        }


def _bfs(adj: Adjacency, start: str, depth: int, *, reverse: bool) -> tuple[dict[str, int], list[Edge]]:
    distance = {start: 0}
    frontier = [start]
    edges: list[Edge] = []
    for hop in range(1, depth + 1):
        following: list[str] = []
        for node in frontier:
            neighbours = adj.get(node)
            if not neighbours:
                continue
            for other, criticality in neighbours.items():
                edges.append((other, node, criticality) if reverse else (node, other, criticality))
                if other not in distance:
                    distance[other] = hop
                    following.append(other)
        if not following:
            break
        frontier = following
    return distance, edges


def traverse(out: Adjacency, inc: Adjacency, start: str, direction: str, depth: int) -> Traversal:
    """Every service within ``depth`` hops of ``start`` (``start`` itself excluded) and the edges followed."""
    if direction == "downstream":
        found, edges = _bfs(out, start, depth, reverse=False)
        services = [(s, d, "downstream") for s, d in found.items() if s != start]
    elif direction == "upstream":
        found, edges = _bfs(inc, start, depth, reverse=True)
        services = [(s, d, "upstream") for s, d in found.items() if s != start]
    else:
        down, down_edges = _bfs(out, start, depth, reverse=False)
        up, up_edges = _bfs(inc, start, depth, reverse=True)
        services = []
        for s in down.keys() | up.keys():
            if s == start:
                continue
            in_down, in_up = down.get(s), up.get(s)
            if in_down is not None and in_up is not None:
                services.append((s, min(in_down, in_up), "both"))
            elif in_down is not None:
                services.append((s, in_down, "downstream"))
            else:
                assert in_up is not None
                services.append((s, in_up, "upstream"))
        edges = list(dict.fromkeys(down_edges + up_edges))
    services.sort(key=lambda item: (item[1], item[0]))
    return Traversal(start, direction, depth, services, edges)


# -- strongly connected components --------------------------------------------------------


def strongly_connected_components(nodes: Iterable[str], out: Adjacency) -> list[list[str]]:
    """Tarjan's algorithm without recursion; every node lands in exactly one component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, Any]] = [(root, iter(out.get(root, {})))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, neighbours = work[-1]
            advanced = False
            for other in neighbours:
                if other not in index:
                    index[other] = low[other] = counter
                    counter += 1
                    stack.append(other)
                    on_stack.add(other)
                    work.append((other, iter(out.get(other, {}))))
                    advanced = True
                    break
                if other in on_stack:
                    low[node] = min(low[node], index[other])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


# -- cycles ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CycleCandidate:
    members: list[str]
    key: str
    cycle_path: list[str]


def members_key(members: Iterable[str]) -> str:
    """A fixed-size name for a member set: the same set always gives the same key."""
    return hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()


def shortest_cycle_through(start: str, out: Adjacency, inc: Adjacency) -> list[str]:
    """The shortest cycle from ``start`` back to it (``[]`` if there is none), from ``start``.

    Among equally short cycles, the lexicographically smallest sequence wins, so
    the same graph always gives the same path whatever the order of its maps.
    Bidirectional breadth-first search (forward over ``out``, backward over
    ``inc``, always growing the smaller frontier) finds the length while
    touching only about the square root of what a one-sided search would in a
    large component; the path is then read off greedily from the two
    distance maps (see :func:`_smallest_cycle`). Any cycle through ``start``
    lies inside its strongly connected component, so no member set is needed.
    """
    forward, backward = {start: 0}, {start: 0}
    ahead, behind = [start], [start]
    reach_f = reach_b = 0  # depth of the last layer each side has fully discovered
    best = _UNREACHED
    while best > reach_f + reach_b or reach_f == 0 or reach_b == 0:
        grow_forward = bool(ahead) and (not behind or len(ahead) <= len(behind))
        if not ahead and not behind:
            break
        if grow_forward:
            ahead, found = _grow(ahead, out, forward, backward, start, reach_f + 1)
            reach_f = reach_f + 1 if ahead else _UNREACHED
        else:
            behind, found = _grow(behind, inc, backward, forward, start, reach_b + 1)
            reach_b = reach_b + 1 if behind else _UNREACHED
        best = min(best, found)
    if best >= _UNREACHED:
        return []
    return _smallest_cycle(start, best, out, forward, backward, reach_b)


_UNREACHED = 1 << 30


def _grow(
    frontier: list[str], adj: Adjacency, mine: dict[str, int], theirs: dict[str, int], start: str, depth: int
) -> tuple[list[str], int]:
    """Discover the next layer; return it and the shortest closed walk through ``start`` seen on the way."""
    best = _UNREACHED
    following: list[str] = []
    for node in frontier:
        for other in adj.get(node, ()):
            if other == start:  # an edge straight back (or out) to start closes a cycle
                best = min(best, depth)
            elif other not in mine:
                mine[other] = depth
                following.append(other)
                met = theirs.get(other)
                if met is not None:
                    best = min(best, depth + met)
    return following, best


def _smallest_cycle(
    start: str, length: int, out: Adjacency, forward: dict[str, int], backward: dict[str, int], reach_b: int
) -> list[str]:
    """The lexicographically smallest cycle of ``length`` through ``start``, from the search's distance maps.

    A node at position ``i`` of a shortest cycle is exactly ``i`` hops from
    ``start`` and ``length - i`` hops back to it. From position ``split`` on,
    the backward map knows the way back, so the walk takes the smallest
    successor one hop closer to ``start``. Before ``split``, the positions on a
    shortest cycle are found by working back from ``split`` through the
    forward layers; the walk takes the smallest successor among them.
    """
    split = max(1, length - reach_b)
    on_cycle: list[set[str]] = [set() for _ in range(split + 1)]
    on_cycle[split] = {
        node for node, d in forward.items() if d == split and backward.get(node) == length - split
    }
    for position in range(split - 1, 0, -1):
        later = on_cycle[position + 1]
        on_cycle[position] = {
            node for node, d in forward.items() if d == position and not later.isdisjoint(out.get(node, ()))
        }
    path = [start]
    for position in range(1, split + 1):
        path.append(min(other for other in out.get(path[-1], ()) if other in on_cycle[position]))
    for position in range(split + 1, length):
        remaining = length - position
        path.append(min(other for other in out.get(path[-1], ()) if backward.get(other) == remaining))
    return path


def cycle_candidates(
    components: Iterable[Iterable[str]], out: Adjacency, inc: Adjacency
) -> list[CycleCandidate]:
    """One candidate per component with more than one member, ordered by smallest member."""
    candidates: list[CycleCandidate] = []
    for component in components:
        members = sorted(component)
        if len(members) < 2:
            continue
        path = shortest_cycle_through(members[0], out, inc)
        candidates.append(CycleCandidate(members, members_key(members), path))
    candidates.sort(key=lambda c: c.members[0])
    return candidates


# -- impact ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Impact:
    service_id: str
    # (service_id, distance, path_criticality)
    impacted: list[tuple[str, int, str]]

    def to_dict(self) -> dict[str, Any]:
        counts = {name: 0 for name in _RANKED}
        for _, _, criticality in self.impacted:
            counts[criticality] += 1
        return {
            "service_id": self.service_id,
            "total": len(self.impacted),
            "by_path_criticality": counts,
            "impacted": [
                {"service_id": s, "distance": d, "path_criticality": c} for s, d, c in self.impacted
            ],
        }


def impact(inc: Adjacency, failed: str) -> Impact:
    """Everything upstream of ``failed``, with hop distance and weakest-path criticality.

    A path is as strong as its weakest edge; a service's ``path_criticality`` is
    that of its strongest path to ``failed``. So ``hard`` means a chain of hard
    dependencies all the way: it goes down too. Found with one breadth-first
    pass per criticality level, strongest first.
    """
    distance, _ = _bfs(inc, failed, len(inc) + 1, reverse=True)
    strongest: dict[str, str] = {}
    for level in _RANKED:
        floor = CRITICALITY_RANK[level]
        seen = {failed}
        frontier = [failed]
        while frontier:
            following: list[str] = []
            for node in frontier:
                for other, criticality in inc.get(node, {}).items():
                    if other not in seen and CRITICALITY_RANK[criticality] >= floor:
                        seen.add(other)
                        following.append(other)
                        strongest.setdefault(other, level)
            frontier = following
    strongest.pop(failed, None)
    rows = [(s, distance[s], c) for s, c in strongest.items()]
    rows.sort(key=lambda row: (row[1], row[0]))
    return Impact(failed, rows)


# -- findings ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inversion:
    service_id: str
    depends_on: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "criticality_inversion",
            "service_id": self.service_id,
            "service_criticality": "critical",
            "depends_on": self.depends_on,
            "dependency_criticality": "low",
            "edge_criticality": "hard",
            "message": f"critical service {self.service_id} has a hard dependency on low-criticality "
            f"{self.depends_on}",
        }


def criticality_inversions(criticality: Mapping[str, str], out: Adjacency) -> list[Inversion]:
    """Every live ``hard`` edge from a ``critical`` service to a ``low`` one, sorted."""
    found = [
        Inversion(service, target)
        for service, level in criticality.items()
        if level == "critical"
        for target, edge in out.get(service, {}).items()
        if edge == "hard" and criticality.get(target) == "low"
    ]
    found.sort(key=lambda f: (f.service_id, f.depends_on))
    return found
