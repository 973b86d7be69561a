"""In every JSON reply and event, a value nobody set is null (lists [] and maps {}), never ""."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from tests.conftest import ServerProcess


def _empty_strings(node: Any, path: str = "") -> Iterator[str]:
    if node == "":
        yield path
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _empty_strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _empty_strings(value, f"{path}[{index}]")


def _replayed_events(http: httpx.Client) -> list[dict[str, Any]]:
    """The event log from the start, as /watch replays it, up to the newest event at this moment."""
    events: list[dict[str, Any]] = []
    with http.stream("GET", "/watch", params={"since": 0}, timeout=httpx.Timeout(10, read=2)) as stream:
        try:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line.removeprefix("data:")))
        except httpx.ReadTimeout:  # replayed everything; the stream now waits for new events
            pass
    return events


def test_unset_optional_fields_are_null_in_replies_and_events(shared_server: ServerProcess) -> None:
    """A service, a lease (file_path and plan_id given as ""), a graph service and an edge made with
    only their required fields answer null for every unset value, in replies and in the event log."""
    with httpx.Client(base_url=shared_server.http_url, timeout=10) as http:
        registered = http.post("/register", json={"name": "bare", "type": "tool", "url": "http://bare:1"}).json()
        service_id = registered["service_id"]
        reserved = http.post(
            "/reserve",
            json={"repo": "bare", "branch": "main", "fq_name": "bare.f", "kind": "function", "file_path": "",
                  "plan_id": ""},
        )
        assert reserved.status_code == 200, reserved.text
        assert http.put("/graph/services", json={"services": [{"service_id": "bare-a"}]}).status_code == 200
        edge = {"source_service_id": "bare-a", "target_service_id": "bare-b"}
        assert http.put("/graph/dependencies", json={"dependencies": [edge]}).status_code == 200
        replies = {
            "service": http.get(f"/services/{service_id}").json(),
            "lease": reserved.json(),
            "graph service": http.get("/graph/services/bare-a").json(),
            "edges": http.get("/graph/services/bare-a/dependencies").json(),
            "stats": http.get("/stats").json(),
        }
        events = _replayed_events(http)
    assert replies["service"]["instance_id"] is None and replies["service"]["p95_ms"] is None
    assert replies["lease"]["file_path"] is None and replies["lease"]["plan_id"] is None
    assert replies["lease"]["commit_sha"] is None and replies["graph service"]["team"] is None
    assert replies["edges"]["dependencies"][0]["protocol"] is None
    assert replies["service"]["caps"] == [] and replies["service"]["labels"] == {}
    for what, reply in replies.items():
        assert list(_empty_strings(reply)) == [], what
    kinds = {event["kind"] for event in events}
    assert {"catalog.registered", "leases.reserved", "graph.services_upserted"} <= kinds, kinds
    for event in events:
        assert list(_empty_strings(event)) == [], event["kind"]
