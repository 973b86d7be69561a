"""Traversal, strongly connected components, cycle normalisation, impact and findings on hand-made graphs."""

from __future__ import annotations

from muster.graph.algorithms import (
    criticality_inversions,
    cycle_candidates,
    impact,
    members_key,
    shortest_cycle_through,
    strongly_connected_components,
    traverse,
)


def build(
    *edges: tuple[str, str] | tuple[str, str, str],
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    out: dict[str, dict[str, str]] = {}
    inc: dict[str, dict[str, str]] = {}
    for edge in edges:
        source, target = edge[0], edge[1]
        criticality = edge[2] if len(edge) == 3 else "hard"
        out.setdefault(source, {})[target] = criticality
        inc.setdefault(target, {})[source] = criticality
    return out, inc


# a -> b -> d, a -> c -> d, d -> e
DIAMOND = build(("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e"))


def test_diamond_downstream_distances() -> None:
    """Downstream BFS gives each service its shortest hop count; d is reached once, at 2."""
    out, inc = DIAMOND
    result = traverse(out, inc, "a", "downstream", 3)
    assert (result.services) == [
        ("b", 1, "downstream"),
        ("c", 1, "downstream"),
        ("d", 2, "downstream"),
        ("e", 3, "downstream"),
    ]


def test_diamond_edges_followed() -> None:
    """Every edge followed from a service closer than depth is reported, both diamond arms included."""
    out, inc = DIAMOND
    result = traverse(out, inc, "a", "downstream", 2)
    assert {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")} == {(s, t) for s, t, _ in result.edges}


def test_depth_bounds_the_walk() -> None:
    """Depth 1 stops at direct dependencies."""
    out, inc = DIAMOND
    assert [s for s, _, _ in traverse(out, inc, "a", "downstream", 1).services] == ["b", "c"]


def test_upstream_reports_edges_in_dependency_direction() -> None:
    """Upstream walks incoming edges but reports each edge as source -> target."""
    out, inc = DIAMOND
    result = traverse(out, inc, "d", "upstream", 2)
    assert result.services == [("b", 1, "upstream"), ("c", 1, "upstream"), ("a", 2, "upstream")]
    assert {("b", "d"), ("c", "d"), ("a", "b"), ("a", "c")} == {(s, t) for s, t, _ in result.edges}


def test_both_is_union_not_zigzag() -> None:
    """From b, both = upstream {a} union downstream {d, e}; c (down from a) is never reached."""
    out, inc = DIAMOND
    result = traverse(out, inc, "b", "both", 3)
    assert result.services == [("a", 1, "upstream"), ("d", 1, "downstream"), ("e", 2, "downstream")]


def test_both_marks_services_reached_both_ways() -> None:
    """In a two-cycle, the other service is downstream and upstream: direction both, distance 1."""
    out, inc = build(("x", "y"), ("y", "x"))
    assert traverse(out, inc, "x", "both", 2).services == [("y", 1, "both")]


def test_unknown_start_reaches_nothing() -> None:
    """A service with no edges reaches nothing and follows no edge."""
    out, inc = DIAMOND
    result = traverse(out, inc, "lonely", "both", 5)
    assert (result.services, result.edges) == ([], [])


def test_scc_on_disconnected_parts() -> None:
    """Two separate cycles and an acyclic tail give two multi-member components and singletons."""
    out, _ = build(("a", "b"), ("b", "a"), ("c", "d"), ("d", "e"), ("e", "c"), ("e", "f"), ("g", "h"))
    components = strongly_connected_components(sorted({*out, "f", "h"}), out)
    assert {frozenset("ab"), frozenset("cde"), frozenset("f"), frozenset("g"), frozenset("h")} == {
        frozenset(c) for c in components
    }


def test_long_cycle_is_one_component_with_full_path() -> None:
    """A 200-service ring is one component and its cycle path is the whole ring from its smallest member."""
    names = [f"s{i:03d}" for i in range(200)]
    out, inc = build(*[(names[i], names[(i + 1) % 200]) for i in range(200)])
    [candidate] = cycle_candidates(strongly_connected_components(names, out), out, inc)
    assert names == candidate.cycle_path
    assert names == candidate.members


def test_cycle_path_rotated_to_smallest_member() -> None:
    """Whichever node the walk starts from, the path starts at the smallest member."""
    out, inc = build(("m", "z"), ("z", "b"), ("b", "m"))
    [candidate] = cycle_candidates([["z", "m", "b"]], out, inc)
    assert candidate.cycle_path == ["b", "m", "z"]


def test_cycle_path_is_a_shortest_cycle() -> None:
    """With a long and a short way back to a, the short one is chosen."""
    out, inc = build(("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("b", "a"))
    assert shortest_cycle_through("a", out, inc) == ["a", "b"]


def test_cycle_path_is_deterministic_among_equal_lengths() -> None:
    """Two cycles of equal length through a: the one through the smaller neighbour wins."""
    out, inc = build(("a", "c"), ("c", "a"), ("a", "b"), ("b", "a"))
    assert shortest_cycle_through("a", out, inc) == ["a", "b"]


def test_singletons_are_not_cycles() -> None:
    """Components of one member (no self-loops exist) produce no candidate."""
    out, inc = DIAMOND
    assert cycle_candidates([["a"], ["b"]], out, inc) == []


def test_members_key_ignores_order() -> None:
    """The same member set always gives the same key; a different set a different one."""
    assert members_key(["b", "a", "c"]) == members_key(["c", "b", "a"])
    assert members_key(["a", "b"]) != members_key(["a", "b", "c"])


def test_impact_weakest_path_criticality() -> None:
    """A path is as strong as its weakest edge; a service takes its strongest path."""
    # api -hard-> db; web -hard-> api; batch -soft-> db; report -hard-> batch; ui -degraded-> api
    _, inc = build(
        ("api", "db", "hard"),
        ("web", "api", "hard"),
        ("batch", "db", "soft"),
        ("report", "batch", "hard"),
        ("ui", "api", "degraded"),
        ("ui", "batch", "hard"),
    )
    result = impact(inc, "db")
    assert result.impacted == [
        ("api", 1, "hard"),
        ("batch", 1, "soft"),
        ("report", 2, "soft"),
        ("ui", 2, "degraded"),
        ("web", 2, "hard"),
    ]
    assert result.to_dict()["by_path_criticality"] == {"hard": 2, "degraded": 1, "soft": 2}


def test_impact_through_a_cycle_excludes_the_failed_service() -> None:
    """A cycle back to the failed service does not list the service itself."""
    _, inc = build(("a", "b"), ("b", "a"), ("c", "a"))
    assert sorted(s for s, _, _ in impact(inc, "a").impacted) == ["b", "c"]


def test_criticality_inversion_flags_only_hard_edges_to_low() -> None:
    """critical -hard-> low is flagged; soft edges and non-critical sources are not."""
    out, _ = build(("pay", "log", "hard"), ("pay", "cache", "soft"), ("shop", "log", "hard"))
    levels = {"pay": "critical", "log": "low", "cache": "low", "shop": "high"}
    assert [(f.service_id, f.depends_on) for f in criticality_inversions(levels, out)] == [("pay", "log")]
