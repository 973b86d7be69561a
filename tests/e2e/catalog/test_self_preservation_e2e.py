"""A server cut off from its fleet's heartbeats evicts nobody, says so, and resumes when beats return."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import wait_for


def test_silence_of_most_of_the_fleet_enters_self_preservation(server_factory: Any) -> None:
    """12 services stop beating at once: no service_down, /stats and /metrics say self-preservation, discovery
    still lists all 12; 9 beat again: it is left, and only the 3 still silent are marked down."""
    # Sweeps 3 s apart: the fleet's last beats (one quick round, below) all fall silent between two sweeps,
    # however slowly the registrations before them went on a loaded machine.
    server = server_factory(monitor_interval=3)
    with httpx.Client(base_url=server.http_url, timeout=5) as http:
        ids = [http.post("/register", json={"name": f"fleet-{i}", "type": "service", "url": f"http://f{i}:1",
                                            "heartbeat_interval_s": 1, "ttl_s": 2}).json()["service_id"]
               for i in range(12)]
        for sid in ids:
            assert http.put("/heartbeat", json={"service_id": sid}).status_code == 200
        # From here nobody beats: the server is cut off from its fleet.
        wait_for(lambda: http.get("/stats").json()["self_preservation"])
        assert http.get("/alerts").json()["alerts"] == []
        assert 'muster_self_preservation{state="active"} 1.0' in http.get("/metrics").text
        assert len(http.get("/discover", params={"limit": 100}).json()["services"]) == 12

        def beat_nine() -> bool:
            for sid in ids[:9]:
                http.put("/heartbeat", json={"service_id": sid})
            return not http.get("/stats").json()["self_preservation"]

        wait_for(beat_nine)
        downs = wait_for(lambda: {a["service_id"] for a in http.get("/alerts").json()["alerts"]
                                if a["alert_type"] == "service_down"} or None)
        assert downs <= set(ids[9:])
