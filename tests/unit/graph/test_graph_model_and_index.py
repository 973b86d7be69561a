"""Input rules, the alert life cycle, and the in-memory index under events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from muster.clock import FakeClock
from muster.errors import FailedPrecondition, Invalid
from muster.events.hub import Event
from muster.graph.index import GraphIndex
from muster.graph.model import (
    AlertUpdateInput,
    TraverseQuery,
    UpsertDependenciesInput,
    UpsertServicesInput,
    check_transition,
    service_id_can_exist,
)
from muster.validation import parse


def edge(source: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"source_service_id": source, "target_service_id": target, **extra}


def test_self_loop_rejected_naming_the_item() -> None:
    """An edge from a service to itself is refused, and the message names the item and the rule."""
    with pytest.raises(Invalid) as caught:
        parse(UpsertDependenciesInput, {"dependencies": [edge("a", "b"), edge("c", "c")]})
    assert caught.value.field == "dependencies[1]"
    assert "cannot depend on itself" in caught.value.rule


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"timeout_ms": 0}, "dependencies[0].timeout_ms"),
        ({"confidence_score": 1.5}, "dependencies[0].confidence_score"),
        ({"criticality": "fatal"}, "dependencies[0].criticality"),
        ({"discovery_source": "guess"}, "dependencies[0].discovery_source"),
        ({"communication_mode": "carrier-pigeon"}, "dependencies[0].communication_mode"),
        ({"surprise": 1}, "dependencies[0].surprise"),
    ],
)
def test_edge_rules_name_the_field(extra: dict[str, Any], field: str) -> None:
    """Each edge rule is checked before the store, with the offending field named."""
    with pytest.raises(Invalid) as caught:
        parse(UpsertDependenciesInput, {"dependencies": [edge("a", "b", **extra)]})
    assert field == caught.value.field


def test_duplicate_edges_in_one_call_rejected() -> None:
    """The same (source, target, discovery source) twice in one call is refused."""
    with pytest.raises(Invalid, match=r"appears at \[0\] and \[1\]"):
        parse(UpsertDependenciesInput, {"dependencies": [edge("a", "b"), edge("a", "b")]})


def test_bulk_bound() -> None:
    """More than 10,000 items in one call is refused."""
    services = [{"service_id": f"s{i}"} for i in range(10_001)]
    with pytest.raises(Invalid) as caught:
        parse(UpsertServicesInput, {"services": services})
    assert caught.value.field == "services"


def test_service_id_must_fit_in_a_path() -> None:
    """A service id with a slash is refused (it travels in URL paths)."""
    with pytest.raises(Invalid) as caught:
        parse(UpsertServicesInput, {"services": [{"service_id": "a/b"}]})
    assert caught.value.field == "services[0].service_id"


def test_traverse_depth_bounds() -> None:
    """Depth must lie in 1..10 and direction be one of three words."""
    with pytest.raises(Invalid, match="depth"):
        parse(TraverseQuery, {"service_id": "a", "depth": 11})
    with pytest.raises(Invalid, match="direction"):
        parse(TraverseQuery, {"service_id": "a", "direction": "sideways"})


def test_acknowledge_needs_a_name() -> None:
    """Acknowledging without acknowledged_by is refused."""
    with pytest.raises(Invalid, match="acknowledged_by is required"):
        parse(AlertUpdateInput, {"status": "acknowledged"})


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        ("open", "acknowledged", True),
        ("open", "resolved", True),
        ("acknowledged", "resolved", True),
        ("acknowledged", "acknowledged", False),
        ("resolved", "acknowledged", False),
        ("resolved", "resolved", False),
        ("acknowledged", "open", False),
    ],
)
def test_alert_transitions(current: str, new: str, allowed: bool) -> None:
    """open → acknowledged → resolved and open → resolved; nothing else."""
    if allowed:
        check_transition(current, new)
    else:
        with pytest.raises(FailedPrecondition):
            check_transition(current, new)


def _event(revision: int, kind: str, payload: dict[str, Any]) -> Event:
    return Event(revision, kind, "graph", payload, FakeClock().now())


def test_parallel_edges_count_once_with_strongest_live_criticality() -> None:
    """Two discovery sources for one pair: one adjacency entry, the strongest live criticality."""
    index = GraphIndex()
    index.apply(
        _event(
            1,
            "graph.dependencies_upserted",
            {
                "edges": [
                    ["a", "b", "manual", "soft"],
                    ["a", "b", "kubernetes", "hard"],
                ]
            },
        )
    )
    assert index.live_out == {"a": {"b": "hard"}}
    index.apply(_event(2, "graph.dependencies_marked_stale", {"edges": [["a", "b", "kubernetes"]]}))
    assert index.live_out == {"a": {"b": "soft"}}
    assert index.all_out == {"a": {"b": "hard"}}
    index.apply(_event(3, "graph.dependencies_marked_stale", {"edges": [["a", "b", "manual"]]}))
    assert (index.live_out, index.all_in) == ({}, {"b": {"a": "hard"}})
    assert index.strongly_connected_components() == []


def test_discovered_service_never_overrides_a_described_one() -> None:
    """An edge naming a described service keeps its criticality, in either event order."""
    index = GraphIndex()
    index.apply(_event(1, "graph.services_upserted", {"services": [["a", "critical"]]}))
    index.apply(
        _event(2, "graph.dependencies_upserted", {"discovered": ["a", "b"], "edges": [["a", "b", "manual", "hard"]]})
    )
    assert index.criticality == {"a": "critical", "b": "medium"}


def test_delete_removes_edges_both_ways_and_from_the_digraph() -> None:
    """Deleting a service drops its edges from every map and breaks its cycles."""
    index = GraphIndex()
    index.apply(
        _event(
            1,
            "graph.dependencies_upserted",
            {
                "edges": [
                    ["a", "b", "manual", "hard"],
                    ["b", "a", "manual", "hard"],
                    ["b", "c", "manual", "hard"],
                ]
            },
        )
    )
    assert [sorted(c) for c in index.strongly_connected_components()] == [["a", "b"]]
    index.apply(_event(2, "graph.service_deleted", {"service_id": "a"}))
    assert (index.live_out, index.live_in) == ({"b": {"c": "hard"}}, {"c": {"b": "hard"}})
    assert index.strongly_connected_components() == []
    assert index.edge_count == 1


def test_replaying_events_over_a_newer_snapshot_converges() -> None:
    """Events carry state, so applying them again on a later snapshot gives the same graph."""
    events = [
        _event(
            1, "graph.dependencies_upserted", {"edges": [["a", "b", "manual", "hard"], ["b", "c", "manual", "soft"]]}
        ),
        _event(2, "graph.service_deleted", {"service_id": "c"}),
        _event(3, "graph.dependencies_upserted", {"edges": [["b", "a", "manual", "degraded"]]}),
    ]
    fresh = GraphIndex()
    for event in events:
        fresh.apply(event)
    replayed = GraphIndex()
    for event in events:
        replayed.apply(event)
    for event in events:
        replayed.apply(event)
    assert sorted(fresh.edges()) == sorted(replayed.edges())
    assert fresh.criticality == replayed.criticality
    assert fresh.live_out == replayed.live_out


def test_components_are_kept_while_no_change_can_alter_them() -> None:
    """Re-observed edges, edges into or out of the cycle's dead ends and new services keep the components."""
    index = GraphIndex()
    index.apply(
        _event(
            1,
            "graph.dependencies_upserted",
            {"edges": [["a", "b", "manual", "hard"], ["b", "a", "manual", "hard"], ["b", "c", "manual", "hard"]]},
        )
    )
    assert [["a", "b"]] == index.strongly_connected_components()
    index.apply(_event(2, "graph.dependencies_upserted", {"edges": [["a", "b", "manual", "hard"]]}))
    index.apply(_event(3, "graph.dependencies_upserted", {"edges": [["a", "c", "kubernetes", "soft"]]}))
    index.apply(_event(4, "graph.dependencies_upserted", {"edges": [["c", "d", "manual", "hard"]]}))
    index.apply(_event(5, "graph.services_upserted", {"services": [["e", "low"]]}))
    assert index.components_cached
    assert [["a", "b"]] == index.strongly_connected_components()


def test_a_service_closing_a_loop_into_a_cycle_joins_it_in_place() -> None:
    """A service that hears only from a cycle and depends on it joins that component without a recomputation."""
    index = GraphIndex()
    index.apply(
        _event(
            1,
            "graph.dependencies_upserted",
            {"edges": [["b", "d", "manual", "hard"], ["d", "b", "manual", "hard"], ["d", "c", "manual", "hard"]]},
        )
    )
    held = index.strongly_connected_components()
    assert [["b", "d"]] == held
    index.apply(_event(2, "graph.dependencies_upserted", {"edges": [["c", "b", "manual", "hard"]]}))
    index.apply(_event(3, "graph.dependencies_upserted", {"edges": [["a", "d", "manual", "hard"]]}))
    index.apply(_event(4, "graph.dependencies_upserted", {"edges": [["b", "a", "manual", "hard"]]}))
    assert index.components_cached
    assert [["a", "b", "c", "d"]] == index.strongly_connected_components()
    assert [["b", "d"]] == held  # lists handed out earlier are not changed under their holder


def test_a_change_that_may_merge_or_split_components_drops_them() -> None:
    """An edge between two cycles, or a stale edge inside one, makes the next call compute them again."""
    index = GraphIndex()
    edges = [["a", "b"], ["b", "a"], ["x", "y"], ["y", "x"]]
    index.apply(_event(1, "graph.dependencies_upserted", {"edges": [[s, t, "manual", "hard"] for s, t in edges]}))
    assert [["a", "b"], ["x", "y"]] == sorted(index.strongly_connected_components())
    index.apply(_event(2, "graph.dependencies_upserted", {"edges": [["b", "x", "manual", "hard"]]}))
    assert not index.components_cached  # it might have closed a cycle (here it did not)
    assert [["a", "b"], ["x", "y"]] == sorted(index.strongly_connected_components())
    index.apply(_event(3, "graph.dependencies_upserted", {"edges": [["y", "a", "manual", "hard"]]}))
    assert not index.components_cached
    assert [["a", "b", "x", "y"]] == index.strongly_connected_components()
    index.apply(_event(4, "graph.dependencies_marked_stale", {"edges": [["b", "x", "manual"]]}))
    assert not index.components_cached
    assert [["a", "b"], ["x", "y"]] == sorted(index.strongly_connected_components())


def test_services_added_after_a_detection_take_their_place_in_name_order() -> None:
    """Newcomers merged into the kept name order (no full sort) come out in name order, before, between and after."""
    names = [f"s{i:02d}" for i in range(0, 80, 2)]
    ring = [[a, b, "manual", "hard"] for a, b in zip(names, names[1:] + names[:1], strict=True)]
    index = GraphIndex()
    index.apply(_event(1, "graph.dependencies_upserted", {"edges": ring}))
    assert [names] == index.strongly_connected_components()
    newcomers = ["a", "s01", "s33", "s34x", "s99"]
    joins = [e for n in newcomers for e in ([names[0], n, "manual", "hard"], [n, names[1], "manual", "hard"])]
    index.apply(_event(2, "graph.dependencies_upserted", {"edges": joins}))
    assert index._added  # the merge, not a rebuild, puts them in order
    assert [sorted(names + newcomers)] == index.strongly_connected_components()


def test_a_loop_through_a_second_newcomer_is_not_taken_for_a_join() -> None:
    """If the cycle also reaches the service through another outsider, that one joins too: recomputed, not patched."""
    index = GraphIndex()
    edges = [["b", "d"], ["d", "b"], ["d", "a"], ["d", "p"], ["p", "a"]]
    index.apply(_event(1, "graph.dependencies_upserted", {"edges": [[s, t, "manual", "hard"] for s, t in edges]}))
    assert [["b", "d"]] == index.strongly_connected_components()
    index.apply(_event(2, "graph.dependencies_upserted", {"edges": [["a", "b", "manual", "hard"]]}))
    assert [["a", "b", "d", "p"]] == index.strongly_connected_components()


def test_a_way_back_through_a_second_newcomer_is_not_taken_for_a_join() -> None:
    """The mirror case: the new dependency's target reaches the cycle also through an outsider, which joins too."""
    index = GraphIndex()
    edges = [["a", "d"], ["d", "a"], ["b", "d"], ["b", "p"], ["p", "d"]]
    index.apply(_event(1, "graph.dependencies_upserted", {"edges": [[s, t, "manual", "hard"] for s, t in edges]}))
    assert [["a", "d"]] == index.strongly_connected_components()
    index.apply(_event(2, "graph.dependencies_upserted", {"edges": [["a", "b", "manual", "hard"]]}))
    assert [["a", "b", "d", "p"]] == index.strongly_connected_components()


@pytest.mark.parametrize(
    ("service", "field"),
    [
        ({"metadata": {"big": 2**70}}, "services[0].metadata"),
        ({"metadata": {"deep": json.loads("[" * 300 + "]" * 300)}}, "services[0].metadata"),
        ({"metadata": {"nul": "a\x00b"}}, "services[0].metadata"),
        ({"metadata": {"nan": float("nan")}}, "services[0].metadata"),
        ({"team": "a\x00b"}, "services[0].team"),
    ],
)
def test_json_and_text_that_an_engine_cannot_store_are_invalid(service: dict[str, Any], field: str) -> None:
    """Integers past 64 bits, deep nesting, NUL and NaN are refused up front, not a 500 from the store."""
    with pytest.raises(Invalid) as caught:
        parse(UpsertServicesInput, {"services": [{"service_id": "s", **service}]})
    assert caught.value.field == field


def test_ids_no_service_can_have_are_known_without_the_database() -> None:
    """A NUL, a slash or 201 characters cannot be a service id."""
    assert service_id_can_exist("checkout-1")
    assert not any(service_id_can_exist(x) for x in ("a\x00b", "a/b", "x" * 201, ""))
