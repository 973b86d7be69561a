"""The catalog over real HTTP and gRPC against `muster serve` processes on free ports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from muster._proto.muster.v1 import catalog_pb2 as pb
from muster._proto.muster.v1 import catalog_pb2_grpc as pb_grpc
from muster.client import KeepAlive, MusterClient
from muster.errors import Invalid, NotFound
from tests.conftest import ServerProcess

SEED_REGISTRATION = {
    "name": "test-service",
    "type": "model",
    "role": "experimental",
    "url": "http://127.0.0.1:8888",
    "caps": ["infer"],
    "ctx_limit": 32768,
    "heartbeat_interval_s": 60,
    "ttl_s": 90,
}


def test_seed_walkthrough_over_http(shared_server: ServerProcess) -> None:
    """Register, discover by name / type+role / cap, heartbeat and stats, exactly as the seed's curl steps."""
    with httpx.Client(base_url=shared_server.http_url) as http:
        reply = http.post("/register", json=SEED_REGISTRATION)
        assert reply.status_code == 200
        body = reply.json()
        assert {"service_id", "registered_at"} == set(body)
        sid = body["service_id"]
        for params in ({"name": "test-service"}, {"type": "model", "role": "experimental"}, {"cap": "infer"}):
            found = http.get("/discover", params=params).json()["services"]
            assert sid in [s["service_id"] for s in found]
        beat = http.put(
            "/heartbeat", json={"service_id": sid, "status": "ok", "p95_ms": 123.4, "queue_depth": 2, "load": 0.35}
        )
        assert beat.status_code == 200
        stats = http.get("/stats").json()
        assert {"total_services", "healthy_services", "degraded_services", "down_services", "last_check",
                "replicas", "self_preservation", "buses"} == set(stats)
        assert stats["replicas"] == 1
        assert stats["buses"] == []  # no bus configured
        assert stats["healthy_services"] >= 1
        assert http.get("/health").status_code == 200
        assert http.get(f"/services/{sid}").json()["load"] == 0.35


def test_bad_input_is_422_naming_the_field_and_never_500(shared_server: ServerProcess) -> None:
    """Every malformed request gets a 4xx with the field and the rule; none is a 500."""
    cases: list[tuple[str, str, Any]] = [
        ("POST", "/register", {**SEED_REGISTRATION, "type": "robot"}),
        ("POST", "/register", {**SEED_REGISTRATION, "ttl_s": 0}),
        ("POST", "/register", {**SEED_REGISTRATION, "caps": "infer"}),
        ("POST", "/register", {"name": "x"}),
        ("POST", "/register", [1, 2, 3]),
        ("PUT", "/heartbeat", {"service_id": "x", "status": "down"}),
        ("PUT", "/heartbeat", {"service_id": "x", "load": "heavy"}),
        ("POST", "/promote", {"service_id": "x", "role": "boss"}),
        ("GET", "/discover?label=zone", None),
        ("GET", "/discover?limit=0", None),
        ("GET", "/alerts?since=yesterday", None),
        ("GET", "/services?status=sleeping", None),
    ]
    with httpx.Client(base_url=shared_server.http_url) as http:
        for method, path, body in cases:
            reply = http.request(method, path, json=body) if body is not None else http.request(method, path)
            assert reply.status_code == 422, (path, body, reply.text)
            detail = reply.json()
            assert detail["error"] == "invalid_argument" and detail["field"] and detail["message"], detail
        garbage = http.post("/register", content=b"{not json", headers={"content-type": "application/json"})
        assert garbage.status_code == 422
        huge = http.post("/register", content=b"x" * 2_000_000, headers={"content-type": "application/json"})
        assert huge.status_code == 413
        assert http.put("/heartbeat", json={"service_id": "no-such-id"}).status_code == 404
        assert http.get("/services/no-such-id").status_code == 404
        assert http.post("/deregister", json={"service_id": "no-such-id"}).status_code == 404
    field_named = httpx.post(f"{shared_server.http_url}/register", json={**SEED_REGISTRATION, "ttl_s": 0}).json()
    assert field_named["field"] == "ttl_s" and field_named["message"] == "ttl_s: must be at least 1"


def test_grpc_operations_and_status_codes(shared_server: ServerProcess) -> None:
    """The gRPC door does what the HTTP door does, with INVALID_ARGUMENT and NOT_FOUND for bad calls."""
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        stub = pb_grpc.CatalogStub(channel)
        reply = stub.Register(pb.RegisterRequest(name="grpc-svc", type="tool", url="grpc://10.0.0.1:50051", caps=["x"]))
        sid = reply.service_id
        assert reply.registered_at.seconds > 0
        stub.Heartbeat(pb.HeartbeatRequest(service_id=sid, load=0.2))
        found = stub.Discover(pb.DiscoverRequest(type="tool", cap=["x"]))
        assert sid in [s.service_id for s in found.services]
        assert stub.Promote(pb.PromoteRequest(service_id=sid, role="canary")).role == "canary"
        with pytest.raises(grpc.RpcError) as caught:
            stub.Register(pb.RegisterRequest(name="grpc-svc", type="robot", url="grpc://h:1"))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "type: must be one of 'model', 'tool', 'agent' or 'service'"
        with pytest.raises(grpc.RpcError) as caught:  # the same words as the HTTP door's
            stub.Register(pb.RegisterRequest(name="-grpc", type="tool", url="grpc://h:1"))
        allowed = "may hold letters, digits and . _ : / @ -, starting with a letter or digit"
        assert caught.value.details() == f"name: {allowed}"
        with pytest.raises(grpc.RpcError) as caught:
            stub.Heartbeat(pb.HeartbeatRequest(service_id="nope"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        beats = [pb.HeartbeatRequest(service_id=sid)] * 3 + [pb.HeartbeatRequest(service_id="nope")]
        beats.append(pb.HeartbeatRequest(service_id=sid, status="bogus"))
        batches = [pb.HeartbeatBatch(beats=beats), pb.HeartbeatBatch(beats=[pb.HeartbeatRequest(service_id=sid)])]
        replies = list(stub.HeartbeatStream(iter(batches)))
        assert [[r.found for r in b.replies] for b in replies] == [[True, True, True, False, True], [True]]
        # Only "unknown" asks for a new registration; a bad beat names its error instead.
        assert [(r.error_code, r.error_field) for r in replies[0].replies[3:]] == [
            ("not_found", "service_id"), ("invalid_argument", "status")
        ]
        assert stub.Deregister(pb.DeregisterRequest(service_id=sid)).deregistered


def test_grpc_health_and_reflection(shared_server: ServerProcess) -> None:
    """The standard health service answers SERVING and reflection lists Muster's services."""
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(
            health_pb2.HealthCheckRequest(service="muster.v1.Catalog")
        ).status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"muster.v1.Catalog", "muster.v1.Events", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_client_over_both_transports(shared_server: ServerProcess, transport: str) -> None:
    """MusterClient gives the same results and the same exception classes over gRPC and HTTP."""
    url = f"grpc://{shared_server.grpc_target}" if transport == "grpc" else shared_server.http_url
    async with await MusterClient.connect(url) as client:
        reply = await client.register(name=f"client-{transport}", type="agent", url="http://h:1", labels={"z": "1"})
        await client.heartbeat(reply.service_id, load=0.5)
        found = await client.discover(name=f"client-{transport}", label=["z=1"])
        assert [reply.service_id] == [r.service_id for r in found]
        assert (await client.promote(reply.service_id, "production")).role == "production"
        with pytest.raises(NotFound):
            await client.get_service("missing")
        with pytest.raises(Invalid) as caught:
            await client.discover(limit=5000)
        assert caught.value.field == "limit"
        with pytest.raises(Invalid) as caught:  # a naive time is ambiguous on either door
            await client.alerts(since=datetime(2026, 1, 1))
        assert caught.value.field == "since"
        await client.alerts(since=datetime(2026, 1, 1, tzinfo=UTC))
        await client.deregister(reply.service_id)
        with pytest.raises(NotFound):
            await client.heartbeat(reply.service_id)
    with pytest.raises(RuntimeError):
        await client.stats()


async def test_keepalive_reregisters_after_deregistration(shared_server: ServerProcess) -> None:
    """KeepAlive registers, beats, and registers again once the server forgets it."""
    async with await MusterClient.connect(f"grpc://{shared_server.grpc_target}") as client:
        async with KeepAlive(client, name="kept", type="service", url="http://h:2", heartbeat_interval_s=1,
                             ttl_s=5, beat_every=0.1) as alive:
            first = alive.service_id
            assert first is not None
            await client.deregister(first)
            for _ in range(100):
                if alive.registrations == 2:
                    break
                await asyncio.sleep(0.05)
            assert alive.registrations == 2 and alive.service_id != first
        with pytest.raises(NotFound):
            await client.get_service(alive.service_id or "")


async def test_watch_over_grpc_and_sse_resumes_without_gaps(shared_server: ServerProcess) -> None:
    """Both watch doors replay from a revision; resuming at the last seen revision repeats nothing."""
    async with await MusterClient.connect(f"grpc://{shared_server.grpc_target}") as grpc_client, \
            await MusterClient.connect(shared_server.http_url) as http_client:
        reply = await grpc_client.register(name="watched", type="tool", url="http://h:3")
        for client in (grpc_client, http_client):
            revisions: list[int] = []
            async for event in client.watch(since=0, subject_prefix=reply.service_id):
                revisions.append(event.revision)
                break
            await grpc_client.promote(reply.service_id, "canary")
            async for event in client.watch(since=revisions[-1], subject_prefix=reply.service_id):
                assert event.revision > revisions[-1] and event.kind == "catalog.promoted"
                break
    with httpx.stream("GET", f"{shared_server.http_url}/watch", params={"subject": reply.service_id},
                      headers={"Last-Event-ID": "0"}, timeout=10) as stream:
        lines = []
        for line in stream.iter_lines():
            lines.append(line)
            if line.startswith("data:"):
                break
    assert any(line.startswith("id: ") for line in lines)
    assert json.loads(lines[-1][5:])["kind"] == "catalog.registered"


def test_metrics_cover_both_doors(shared_server: ServerProcess) -> None:
    """/metrics aggregates the HTTP and gRPC processes: requests, latency, beats, sweeps, services by status."""
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        pb_grpc.CatalogStub(channel).GetStats(pb.GetStatsRequest())
    httpx.put(f"{shared_server.http_url}/heartbeat", json={"service_id": "metrics-probe"})
    text = httpx.get(f"{shared_server.http_url}/metrics").text
    for needle in (
        'muster_grpc_requests_total{code="OK",rpc="Catalog/GetStats"}',
        'muster_http_requests_total{method="PUT",route="/heartbeat",status="404"}',
        "muster_http_request_duration_seconds_bucket",
        "muster_grpc_request_duration_seconds_bucket",
        'muster_heartbeats_received_total{door="http",outcome="unknown"}',
        'muster_monitor_sweeps_total{outcome="ok"}',
        'muster_services{status="ok"}',
    ):
        assert needle in text, needle


def beat_counts(http_url: str) -> dict[tuple[str, str], float]:
    """``muster_heartbeats_received_total`` by (door, outcome), from /metrics."""
    counts: dict[tuple[str, str], float] = {}
    for line in httpx.get(f"{http_url}/metrics").text.splitlines():
        if line.startswith("muster_heartbeats_received_total{"):
            labels, value = line.split("{", 1)[1].rsplit("} ", 1)
            fields = dict(part.split("=", 1) for part in labels.split(","))
            counts[(fields["door"].strip('"'), fields["outcome"].strip('"'))] = float(value)
    return counts


def test_heartbeats_are_counted_by_outcome_on_both_doors(shared_server: ServerProcess) -> None:
    """A beat counts as accepted, unknown (register again) or refused (invalid), on each door and in a stream."""
    registered = httpx.post(
        f"{shared_server.http_url}/register", json={"name": "beat-metrics", "type": "agent", "url": "http://h:1"}
    ).json()["service_id"]
    before = beat_counts(shared_server.http_url)
    bodies = ({"service_id": registered}, {"service_id": "never-registered"}, {"service_id": registered, "load": -1})
    for body in bodies:
        httpx.put(f"{shared_server.http_url}/heartbeat", json=body)
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        stub = pb_grpc.CatalogStub(channel)
        stub.Heartbeat(pb.HeartbeatRequest(service_id=registered))
        beats = [
            pb.HeartbeatRequest(service_id=registered),
            pb.HeartbeatRequest(service_id=registered),
            pb.HeartbeatRequest(service_id="never-registered"),
            pb.HeartbeatRequest(service_id=registered, status="sideways"),
        ]
        list(stub.HeartbeatStream(iter([pb.HeartbeatBatch(beats=beats)])))
    after = beat_counts(shared_server.http_url)
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    assert {key: value for key, value in delta.items() if value} == {
        ("http", "accepted"): 1,
        ("http", "unknown"): 1,
        ("http", "refused"): 1,
        ("grpc", "accepted"): 3,
        ("grpc", "unknown"): 1,
        ("grpc", "refused"): 1,
    }
    timed = 'muster_grpc_request_duration_seconds_count{rpc="Catalog/HeartbeatStream"}'
    assert any(line.startswith(timed) for line in httpx.get(f"{shared_server.http_url}/metrics").text.splitlines())


def test_responses_carry_a_request_id(shared_server: ServerProcess) -> None:
    """A caller's X-Request-ID is echoed; otherwise one is made."""
    echoed = httpx.get(f"{shared_server.http_url}/health", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert len(httpx.get(f"{shared_server.http_url}/health").headers["x-request-id"]) == 32


def test_cli_prints_readable_tables(shared_server: ServerProcess) -> None:
    """`muster services` and `muster discover` print a table with a header and the service."""
    httpx.post(f"{shared_server.http_url}/register", json={**SEED_REGISTRATION, "name": "cli-visible"})
    env = {**os.environ, "MUSTER_SERVER": shared_server.http_url}
    listing = subprocess.run([sys.executable, "-m", "muster.cli", "services"], capture_output=True, text=True,
                             env=env, check=True).stdout
    assert listing.splitlines()[0].startswith("SERVICE_ID") and "cli-visible" in listing
    found = subprocess.run(
        [sys.executable, "-m", "muster.cli", "discover", "--server", f"grpc://{shared_server.grpc_target}",
         "--name", "cli-visible", "--cap", "infer"], capture_output=True, text=True, check=True,
    ).stdout
    assert "cli-visible" in found and "NAME" in found.splitlines()[0]


def test_every_rpc_has_an_http_route_and_a_client_method() -> None:
    """Parity: each Catalog RPC maps to one HTTP route and one MusterClient method (or says why not)."""
    from muster.catalog.http import router
    from muster.client import MusterClient

    routes = {f"{sorted(r.methods)[0]} {r.path}" for r in router(None).routes}  # type: ignore[arg-type,attr-defined]
    parity = {
        "Register": ("POST /register", "register"),
        "Heartbeat": ("PUT /heartbeat", "heartbeat"),
        "HeartbeatStream": (None, "heartbeat_stream"),  # HTTP has no client-streaming: one PUT per beat
        "Discover": ("GET /discover", "discover"),
        "Promote": ("POST /promote", "promote"),
        "Deregister": ("POST /deregister", "deregister"),
        "ListServices": ("GET /services", "list_services"),
        "GetService": ("GET /services/{service_id}", "get_service"),
        "GetStats": ("GET /stats", "stats"),
        "ListAlerts": ("GET /alerts", "alerts"),
    }
    rpcs = set(pb.DESCRIPTOR.services_by_name["Catalog"].methods_by_name)
    assert rpcs == set(parity)
    for route, method in parity.values():
        assert route is None or route in routes, route
        assert callable(getattr(MusterClient, method))


def test_monitor_marks_down_restores_and_deregisters_end_to_end(server_factory: Any) -> None:
    """Interval 2 s / TTL 2 s: down after 4 s with an alert, a beat restores it, silence deregisters it; JSONL."""
    server = server_factory()
    http = httpx.Client(base_url=server.http_url)
    sid = http.post("/register", json={**SEED_REGISTRATION, "name": "mortal", "heartbeat_interval_s": 2,
                                       "ttl_s": 2}).json()["service_id"]
    _wait(lambda: http.get(f"/services/{sid}").json().get("status") == "down", 15)
    assert http.put("/heartbeat", json={"service_id": sid}).status_code == 200
    assert http.get(f"/services/{sid}").json()["status"] == "ok"
    _wait(lambda: http.get(f"/services/{sid}").status_code == 404, 20)
    assert http.put("/heartbeat", json={"service_id": sid}).status_code == 404
    alerts = [a for a in http.get("/alerts").json()["alerts"] if a["service_id"] == sid]
    # Newest first: after the restore, silence marks it down again, then deregisters it.
    assert [
        a["alert_type"] for a in alerts
    ] == ["service_deregistered", "service_down", "service_recovered", "service_down"]
    assert (alerts[0]["missed_beats"], alerts[-1]["missed_beats"]) == (3, 2)
    _wait(lambda: _jsonl_types(server, sid)[-1:] == ["service_deregistered"], 10)
    assert "service_recovered" in _jsonl_types(server, sid)


def _jsonl_types(server: ServerProcess, sid: str) -> list[str]:
    lines = []
    for path in sorted((server.data_dir / "events").glob("heartbeat_alerts_*.jsonl")):
        lines += [json.loads(x) for x in path.read_text().splitlines()]
    return [x["alert_type"] for x in lines if x["service_id"] == sid]


def _wait(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_restart_keeps_data_and_sigterm_drains(server_factory: Any) -> None:
    """SIGTERM exits cleanly; a restart on the same data directory still has every service."""
    server = server_factory()
    sid = httpx.post(f"{server.http_url}/register", json=SEED_REGISTRATION).json()["service_id"]
    assert server.stop(signal.SIGTERM) == 0
    assert "server.stopped" in server.logs()
    server.start()
    assert httpx.get(f"{server.http_url}/services/{sid}").json()["name"] == "test-service"


def test_acknowledged_registrations_survive_kill_9(server_factory: Any) -> None:
    """Every registration that got a 200 is there after SIGKILL of the whole process group."""

    async def flood() -> list[str]:
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            replies = await asyncio.gather(
                *(http.post("/register", json={**SEED_REGISTRATION, "name": f"k{i}"}) for i in range(200)),
                return_exceptions=True,
            )
        return [r.json()["service_id"] for r in replies if isinstance(r, httpx.Response) and r.status_code == 200]

    server = server_factory()
    acknowledged = asyncio.run(flood())
    server.stop(signal.SIGKILL)
    server.start()
    listed = {s["service_id"] for s in httpx.get(f"{server.http_url}/services").json()["services"]}
    assert len(acknowledged) == 200 and set(acknowledged) <= listed


@pytest.mark.postgres
def test_two_servers_on_one_postgres_elect_one_monitor(server_factory: Any, pg_server_url: str) -> None:
    """Two `muster serve` replicas on one PostgreSQL: both see every write, only one sweeps (one alert each)."""
    first = server_factory(database_url=pg_server_url)
    second = server_factory(database_url=pg_server_url)
    sid = httpx.post(f"{first.http_url}/register", json={**SEED_REGISTRATION, "heartbeat_interval_s": 1,
                                                         "ttl_s": 1}).json()["service_id"]
    _wait(lambda: httpx.get(f"{second.http_url}/services/{sid}").status_code == 200, 10)
    _wait(lambda: httpx.get(f"{second.http_url}/services/{sid}").status_code == 404, 15)
    alerts = [a["alert_type"] for a in httpx.get(f"{second.http_url}/alerts").json()["alerts"]
              if a["service_id"] == sid]
    assert alerts == ["service_deregistered", "service_down"]


def test_both_door_processes_write_one_sqlite_file_without_lock_errors(server_factory: Any) -> None:
    """HTTP and gRPC door processes registering at once on one SQLite file: every write commits."""
    server = server_factory()

    async def over_http() -> list[int]:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            replies = await asyncio.gather(
                *(http.post("/register", json={**SEED_REGISTRATION, "name": f"h{i}"}) for i in range(150))
            )
        return [r.status_code for r in replies]

    async def over_grpc() -> int:
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.CatalogStub(channel)
            replies = await asyncio.gather(*(
                stub.Register(pb.RegisterRequest(name=f"g{i}", type="tool", url="grpc://h:1"), timeout=30)
                for i in range(150)
            ))
        return len(replies)

    async def both() -> tuple[list[int], int]:
        return await asyncio.gather(over_http(), over_grpc())

    statuses, grpc_done = asyncio.run(both())
    assert [200] * 150 == statuses and 150 == grpc_done
    listed = httpx.get(f"{server.http_url}/services", params={"limit": 1000}).json()["services"]
    assert 300 == len(listed)
    assert "database is locked" not in server.logs()


def test_logs_are_json_lines_carrying_the_request_id(shared_server: ServerProcess) -> None:
    """A rejected request is logged as one JSON object with its route, status and the caller's request id."""
    url = f"{shared_server.http_url}/heartbeat"
    httpx.put(url, json={"service_id": "nobody"}, headers={"x-request-id": "trace-42"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = _whole_log(shared_server)
        records = [json.loads(line) for line in lines if line.startswith("{")]
        mine = [r for r in records if r.get("request_id") == "trace-42" and r.get("event") == "http.request"]
        if mine:
            break
        time.sleep(0.1)
    assert [("/heartbeat", 404, "http")] == [(r["route"], r["status"], r["door"]) for r in mine]
    # stdout carries only the MUSTER_READY handshake lines; everything else is a JSON log record.
    lines = [line for line in _whole_log(shared_server) if line.strip()]
    plain = [line for line in lines if not line.startswith(("{", "MUSTER_READY "))]
    assert [] == plain


def _whole_log(server: ServerProcess) -> list[str]:
    assert server.log_path is not None
    return server.log_path.read_text().splitlines()
