"""Property tests: traversal, SCC (rustworkx and the pure Tarjan) and cycle paths agree with networkx."""

from __future__ import annotations

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from muster.clock import FakeClock
from muster.events.hub import Event
from muster.graph.algorithms import cycle_candidates, strongly_connected_components, traverse
from muster.graph.index import GraphIndex

NODES = [f"n{i}" for i in range(12)]
edges_strategy = st.lists(
    st.tuples(st.sampled_from(NODES), st.sampled_from(NODES)).filter(lambda e: e[0] != e[1]),
    max_size=40,
    unique=True,
)


def _index(edges: list[tuple[str, str]]) -> GraphIndex:
    index = GraphIndex()
    for name in NODES:
        index.put_service(name, "medium")
    payload = {"edges": [[s, t, "manual", "hard"] for s, t in edges]}
    index.apply(Event(1, "graph.dependencies_upserted", "dependencies", payload, FakeClock().now()))
    return index


def _digraph(edges: list[tuple[str, str]]) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(NODES)
    graph.add_edges_from(edges)
    return graph


@settings(max_examples=150, deadline=None)
@given(edges_strategy, st.sampled_from(NODES), st.integers(1, 5))
def test_traversal_matches_networkx(edges: list[tuple[str, str]], start: str, depth: int) -> None:
    """Distances downstream, upstream and both equal networkx shortest path lengths with the same cutoff."""
    index = _index(edges)
    graph = _digraph(edges)
    down = nx.single_source_shortest_path_length(graph, start, cutoff=depth)
    up = nx.single_source_shortest_path_length(graph.reverse(), start, cutoff=depth)
    for direction, expected in (
        ("downstream", down),
        ("upstream", up),
        ("both", {n: min(d for d in (down.get(n), up.get(n)) if d is not None) for n in down.keys() | up.keys()}),
    ):
        result = traverse(index.live_out, index.live_in, start, direction, depth)
        assert {n: d for n, d in expected.items() if n != start} == {s: d for s, d, _ in result.services}
    followed = {(s, t) for s, t, _ in traverse(index.live_out, index.live_in, start, "downstream", depth).edges}
    assert {(u, v) for u, v in graph.edges if u in down and down[u] < depth} == followed


@settings(max_examples=150, deadline=None)
@given(edges_strategy)
def test_scc_matches_networkx(edges: list[tuple[str, str]]) -> None:
    """rustworkx (the index) and the pure Tarjan find exactly networkx's strongly connected components."""
    index = _index(edges)
    expected = {frozenset(c) for c in nx.strongly_connected_components(_digraph(edges)) if len(c) > 1}
    assert expected == {frozenset(c) for c in index.strongly_connected_components()}
    pure = strongly_connected_components(NODES, index.live_out)
    assert expected == {frozenset(c) for c in pure if len(c) > 1}
    assert sorted(NODES) == sorted(n for c in pure for n in c)


@settings(max_examples=150, deadline=None)
@given(edges_strategy)
def test_cycle_path_is_a_real_shortest_cycle(edges: list[tuple[str, str]]) -> None:
    """Each cycle path is a cycle of the graph, starts at its component's smallest member, and is shortest."""
    graph = _digraph(edges)
    index = _index(edges)
    for candidate in cycle_candidates(index.strongly_connected_components(), index.live_out, index.live_in):
        path = candidate.cycle_path
        assert candidate.members[0] == path[0] == min(path)
        assert all(graph.has_edge(a, b) for a, b in zip(path, path[1:] + path[:1], strict=True))
        shortest_back = min(
            nx.shortest_path_length(graph, path[0], p) + 1
            for p in graph.predecessors(path[0])
            if p in candidate.members
        )
        assert shortest_back == len(path)


def _reference_cycle(start: str, graph: nx.DiGraph) -> list[str]:
    """The lexicographically smallest shortest cycle through ``start``: BFS, neighbours in sorted order."""
    parent: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(graph.successors(node)):
                if other == start:
                    path = [node]
                    while (previous := parent[path[-1]]) is not None:
                        path.append(previous)
                    return path[::-1]
                if other not in parent:
                    parent[other] = node
                    following.append(other)
        frontier = following
    return []


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(20, 300), st.floats(1.0, 3.0))
def test_cycle_path_is_the_smallest_shortest_cycle_on_larger_graphs(seed: int, size: int, degree: float) -> None:
    """On sparse random graphs (long cycles, deep searches) the bidirectional search gives the reference path."""
    graph = nx.gnm_random_graph(size, int(size * degree), seed=seed, directed=True)
    graph = nx.relabel_nodes(graph, {n: f"s{n:03d}" for n in graph})
    out = {n: {m: "hard" for m in graph.successors(n)} for n in graph}
    inc = {n: {m: "hard" for m in graph.predecessors(n)} for n in graph}
    components = [c for c in nx.strongly_connected_components(graph) if len(c) > 1]
    for candidate in cycle_candidates(components, out, inc):
        assert _reference_cycle(candidate.members[0], graph) == candidate.cycle_path


# One change to the index: an edge (re)observed, an edge marked stale, a service deleted or (re)described.
# Names the graph starts without, sorting between and around the others: edges naming them add services.
_NEWCOMERS = ["a0", "n05", "n55", "z9", "n1a", "n10b"]
_names = st.sampled_from(NODES + _NEWCOMERS)
_sources = st.sampled_from(["manual", "kubernetes"])
_change = st.one_of(
    st.tuples(st.just("edge"), _names, _names, _sources),
    st.tuples(st.just("stale"), _names, _names, _sources),
    st.tuples(st.just("delete"), st.sampled_from(NODES), st.just(""), st.just("")),
    st.tuples(st.just("service"), st.sampled_from(NODES), st.just(""), st.just("")),
)


@settings(max_examples=200, deadline=None)
@given(edges_strategy, st.lists(st.lists(_change, max_size=6), max_size=8))
def test_kept_components_match_networkx_after_every_change(
    edges: list[tuple[str, str]], rounds: list[list[tuple[str, str, str, str]]]
) -> None:
    """Components (kept or recomputed, members in name order) equal networkx's on the live graph after any changes."""
    index = _index(edges)
    for changes in rounds:
        index.strongly_connected_components()  # computed or read back; the changes below may drop them
        for kind, a, b, source in changes:
            if kind == "edge" and a != b:
                index.put_edge(a, b, source, "hard", False)
            elif kind == "stale":
                index.mark_stale(a, b, source)
            elif kind == "delete":
                index.remove_service(a)
            elif kind == "service":
                index.put_service(a, "high")
        live = nx.DiGraph()
        live.add_nodes_from(index.criticality)
        live.add_edges_from((s, t) for s, targets in index.live_out.items() for t in targets)
        expected = sorted(sorted(c) for c in nx.strongly_connected_components(live) if len(c) > 1)
        assert expected == sorted(index.strongly_connected_components())
