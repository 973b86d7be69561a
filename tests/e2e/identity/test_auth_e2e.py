"""Identity at both doors, on both engines: every route and RPC refuses the wrong caller and serves the right one."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from muster.identity.model import SCOPES, Principal
from muster.identity.scopes import GRPC_METHODS, HTTP_ROUTES, METRICS, OPEN
from tests.conftest import free_port, settings_for
from tests.e2e.identity import grpc_util
from tests.e2e.identity.cases import GRPC_CASES, HTTP_CASES, Ctx, unique
from tests.e2e.identity.conftest import AuthServer

_GUARDED_HTTP = sorted(k for k, v in HTTP_ROUTES.items() if v not in (OPEN, METRICS))
_GUARDED_GRPC = sorted(k for k, v in GRPC_METHODS.items() if v is not OPEN)


def _lacking(needed: str) -> str:
    """A scope whose token may not do what ``needed`` allows."""
    return next(s for s in SCOPES if not Principal("x", frozenset({s})).allows(needed))


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _raw_get(port: int, path: str, header: bytes) -> tuple[int, bytes]:
    """A GET with one header sent byte for byte (clients refuse to send malformed ones)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" + header + b"\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _ctx(auth: AuthServer) -> Ctx:
    return Ctx(auth.server.http_url, auth.tokens, auth.admin)


def _send(auth: AuthServer, method: str, request: dict[str, Any], token: str | None) -> httpx.Response:
    headers = _bearer(token) if token is not None else {}
    kwargs = {k: v for k, v in request.items() if k != "path"}
    url = auth.server.http_url + request["path"]
    if request["path"] == "/watch":  # a stream: the status line is all this needs
        with httpx.stream(method, url, headers=headers, timeout=10, **kwargs) as response:
            response.read() if response.status_code >= 400 else None
            return response
    return httpx.request(method, url, headers=headers, timeout=10, **kwargs)


# -- the table is complete -------------------------------------------------------------------------


async def test_every_route_and_rpc_declares_a_scope(tmp_path: Path) -> None:
    """Every FastAPI route and every method of every registered gRPC service is in the scope table (and has a case)."""
    from grpc_reflection.v1alpha import reflection

    from muster.grpc.server import GrpcDoor
    from muster.http.app import create_app
    from muster.server import build_runtime, close_runtime

    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    from muster.store.engine import Store
    from muster.store.migrate import upgrade

    store = Store(url)
    await upgrade(store)
    await store.close()
    runtime = await build_runtime(settings_for(url, tmp_path, auth=True))
    door = GrpcDoor(runtime)
    try:
        from muster.identity.doors import served_routes

        served = served_routes(create_app(runtime))
        assert ("PUT", "/heartbeat") in served and ("GET", "/docs") in served
        assert set() == served - set(HTTP_ROUTES), "routes without a declared scope"
        assert set() == set(HTTP_ROUTES) - served, "scope table names routes nobody serves"
        assert set(_GUARDED_HTTP) == set(HTTP_CASES)

        await door.start("127.0.0.1", 0)
        from google.protobuf import descriptor_pool

        pool = descriptor_pool.Default()
        methods = set()
        for name in [*door._service_names, reflection.SERVICE_NAME]:
            service = pool.FindServiceByName(name)
            methods |= {f"/{service.full_name}/{m.name}" for m in service.methods}
        assert set() == methods - set(GRPC_METHODS), "RPCs without a declared scope"
        assert set(_GUARDED_GRPC) == set(GRPC_CASES)
    finally:
        await door.stop(0)
        await close_runtime(runtime)


# -- HTTP -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), _GUARDED_HTTP, ids=[f"{m} {p}" for m, p in _GUARDED_HTTP])
def test_http_route_refuses_then_serves(auth_server: AuthServer, method: str, path: str) -> None:
    """No token: 401 with WWW-Authenticate; a token without the scope: 403 naming it; the scope: success."""
    needed = HTTP_ROUTES[(method, path)]
    assert needed is not None
    request = HTTP_CASES[(method, path)](_ctx(auth_server))

    anonymous = _send(auth_server, method, request, None)
    assert 401 == anonymous.status_code
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert "unauthenticated" == anonymous.json()["error"]

    wrong = _send(auth_server, method, request, auth_server.tokens[_lacking(needed)])
    assert 403 == wrong.status_code
    assert "permission_denied" == wrong.json()["error"]
    assert needed in wrong.json()["message"]

    token = auth_server.admin if needed == "admin" else auth_server.tokens[needed]
    right = _send(auth_server, method, request, token)
    assert right.status_code < 300, right.text


# -- gRPC -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", _GUARDED_GRPC)
def test_grpc_method_refuses_then_serves(auth_server: AuthServer, method: str) -> None:
    """No token: UNAUTHENTICATED; a token without the scope: PERMISSION_DENIED naming it; the scope: OK."""
    needed = GRPC_METHODS[method]
    assert needed is not None
    request = GRPC_CASES[method](_ctx(auth_server))
    target = auth_server.server.grpc_target

    code, details, _ = grpc_util.call(target, method, request, None)
    assert grpc.StatusCode.UNAUTHENTICATED == code

    code, details, _ = grpc_util.call(target, method, request, auth_server.tokens[_lacking(needed)])
    assert grpc.StatusCode.PERMISSION_DENIED == code
    assert needed in details

    token = auth_server.admin if needed == "admin" else auth_server.tokens[needed]
    code, details, _ = grpc_util.call(target, method, request, token)
    assert grpc.StatusCode.OK == code, details


def test_open_doors_need_no_token(auth_server: AuthServer) -> None:
    """Probes, metrics (by default) and the API's documentation need no token; nor does gRPC health."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for path in ("/health", "/ready", "/metrics", "/openapi.json", "/docs"):
        assert 200 == httpx.get(auth_server.server.http_url + path).status_code, path
    with grpc.insecure_channel(auth_server.server.grpc_target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health_pb2.HealthCheckResponse.SERVING == reply.status


# -- ownership --------------------------------------------------------------------------------------


def _owner_tokens(auth: AuthServer) -> tuple[str, str]:
    scopes = ["catalog:write", "leases:write", "graph:write"]
    return auth.make_token(unique("alice"), scopes), auth.make_token(unique("bob"), scopes)


def test_another_principals_things_are_refused_over_http(auth_server: AuthServer) -> None:
    """Bob may not beat, promote, deregister, claim, release, extend or delete what Alice made; admin may."""
    alice, bob = _owner_tokens(auth_server)
    base = auth_server.server.http_url

    def post(token: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(base + path, json=body, headers=_bearer(token))

    sid = post(alice, "/register", {"name": "owned", "type": "agent", "url": "http://127.0.0.1:4"}).json()["service_id"]
    assert 403 == httpx.put(base + "/heartbeat", json={"service_id": sid}, headers=_bearer(bob)).status_code
    assert 403 == post(bob, "/promote", {"service_id": sid, "role": "staging"}).status_code
    assert 403 == post(bob, "/deregister", {"service_id": sid}).status_code
    refused = post(alice, "/promote", {"service_id": sid, "role": "production"})
    assert 403 == refused.status_code and "admin" in refused.json()["message"]
    assert 200 == httpx.put(base + "/heartbeat", json={"service_id": sid}, headers=_bearer(alice)).status_code
    assert "production" == post(auth_server.admin, "/promote", {"service_id": sid, "role": "production"}).json()["role"]

    symbol = {"repo": "own", "branch": "main", "fq_name": unique("s"), "kind": "function"}
    lease = post(alice, "/reserve", symbol).json()["lease_id"]
    for path, body in (("/claim", {"lease_id": lease, "commit_sha": "abcdef1"}), ("/release", {"lease_id": lease}),
                       ("/extend", {"lease_id": lease, "ttl_sec": 30})):
        answer = post(bob, path, body)
        assert 403 == answer.status_code, path
        assert "belongs to" in answer.json()["message"]
    assert 200 == post(auth_server.admin, "/extend", {"lease_id": lease, "ttl_sec": 30}).status_code
    plan = unique("plan")
    assert 200 == post(alice, "/plans/reserve", {"plan_id": plan, "symbols": [
        {**symbol, "fq_name": unique("p")}]}).status_code
    assert 403 == httpx.post(f"{base}/plans/{plan}/release", headers=_bearer(bob)).status_code

    node = unique("node")
    httpx.put(base + "/graph/services", json={"services": [{"service_id": node}]}, headers=_bearer(alice))
    assert 403 == httpx.delete(f"{base}/graph/services/{node}", headers=_bearer(bob)).status_code
    assert 204 >= httpx.delete(f"{base}/graph/services/{node}", headers=_bearer(auth_server.admin)).status_code
    assert 200 == post(auth_server.admin, "/deregister", {"service_id": sid}).status_code


def test_another_principals_things_are_refused_over_grpc(auth_server: AuthServer) -> None:
    """The same ownership rules over gRPC: PERMISSION_DENIED for Bob, OK for Alice and for admin."""
    alice, bob = _owner_tokens(auth_server)
    target = auth_server.server.grpc_target
    _, _, reply = grpc_util.call(target, "/muster.v1.Catalog/Register",
                                 {"name": "owned-g", "type": "agent", "url": "http://127.0.0.1:5"}, alice)
    sid = reply.service_id
    assert grpc.StatusCode.PERMISSION_DENIED == grpc_util.call(
        target, "/muster.v1.Catalog/Heartbeat", {"service_id": sid}, bob)[0]
    # A stream carries many services' beats: each refused beat says so in its own reply.
    _, _, batch = grpc_util.call(target, "/muster.v1.Catalog/HeartbeatStream", {"beats": [{"service_id": sid}]}, bob)
    assert "permission_denied" == batch.replies[0].error_code
    assert grpc.StatusCode.PERMISSION_DENIED == grpc_util.call(
        target, "/muster.v1.Catalog/Deregister", {"service_id": sid}, bob)[0]
    assert grpc.StatusCode.OK == grpc_util.call(target, "/muster.v1.Catalog/Heartbeat", {"service_id": sid}, alice)[0]

    symbol = {"repo": "own-g", "branch": "main", "fq_name": unique("s"), "kind": "function"}
    _, _, reserved = grpc_util.call(target, "/srm.SymbolRegistry/Reserve", symbol, alice)
    for method, body in (("Claim", {"lease_id": reserved.lease_id, "commit_sha": "abcdef1"}),
                         ("Release", {"lease_id": reserved.lease_id}), ("Extend", {"lease_id": reserved.lease_id})):
        code = grpc_util.call(target, f"/srm.SymbolRegistry/{method}", body, bob)[0]
        assert grpc.StatusCode.PERMISSION_DENIED == code, method
    assert grpc.StatusCode.OK == grpc_util.call(
        target, "/srm.SymbolRegistry/Release", {"lease_id": reserved.lease_id}, auth_server.admin)[0]

    node = unique("gnode")
    grpc_util.call(target, "/muster.v1.Graph/UpsertServices", {"services": [{"service_id": node}]}, alice)
    assert grpc.StatusCode.PERMISSION_DENIED == grpc_util.call(
        target, "/muster.v1.Graph/DeleteService", {"service_id": node}, bob)[0]
    assert grpc.StatusCode.OK == grpc_util.call(
        target, "/muster.v1.Graph/DeleteService", {"service_id": node}, alice)[0]


def test_events_name_their_actor(auth_server: AuthServer) -> None:
    """A registration's event names the token that made it, on the SSE stream and over gRPC Watch."""
    name = unique("actor")
    token = auth_server.make_token(name, ["catalog:write"])
    sid = httpx.post(auth_server.server.http_url + "/register", headers=_bearer(token),
                     json={"name": "acted", "type": "agent", "url": "http://127.0.0.1:6"}).json()["service_id"]

    async def actors() -> set[str]:
        from muster.client import MusterClient

        seen: set[str] = set()
        for url in (auth_server.server.http_url, f"grpc://{auth_server.server.grpc_target}"):
            async with await MusterClient.connect(url, token=auth_server.tokens["events:read"]) as client:
                async for event in client.watch(since=0, kind_prefix="catalog.registered"):
                    if event.subject == sid:
                        seen.add(event.actor)
                        break
        return seen

    assert {name} == asyncio.run(actors())


# -- tokens -----------------------------------------------------------------------------------------


def test_revocation_is_seen_by_the_other_door_process_within_a_second(auth_server: AuthServer) -> None:
    """A token revoked over HTTP is refused by the gRPC door (another process) within 1 s."""
    name = unique("revoked")
    token = auth_server.make_token(name, ["catalog:read"])
    target = auth_server.server.grpc_target
    deadline = time.monotonic() + 5
    while grpc_util.call(target, "/muster.v1.Catalog/GetStats", {}, token)[0] != grpc.StatusCode.OK:
        assert time.monotonic() < deadline, "a new token never worked on the gRPC door"
        time.sleep(0.02)
    revoked = httpx.delete(f"{auth_server.server.http_url}/tokens/{name}", headers=_bearer(auth_server.admin))
    assert 200 == revoked.status_code and revoked.json()["revoked_at"]
    started = time.monotonic()
    while grpc_util.call(target, "/muster.v1.Catalog/GetStats", {}, token)[0] == grpc.StatusCode.OK:
        assert time.monotonic() - started < 1.0, "revocation not seen by the gRPC door within 1 s"
        time.sleep(0.01)
    code, details, _ = grpc_util.call(target, "/muster.v1.Catalog/GetStats", {}, token)
    assert grpc.StatusCode.UNAUTHENTICATED == code and "revoked" in details


def test_expired_token_is_refused(auth_server: AuthServer) -> None:
    """A token past its expiry is refused on both doors, saying so."""
    token = auth_server.make_token(unique("brief"), ["catalog:read"], expires="1s")
    time.sleep(1.1)
    reply = httpx.get(auth_server.server.http_url + "/stats", headers=_bearer(token))
    assert 401 == reply.status_code and "expired" in reply.json()["message"]
    code, details, _ = grpc_util.call(auth_server.server.grpc_target, "/muster.v1.Catalog/GetStats", {}, token)
    assert grpc.StatusCode.UNAUTHENTICATED == code and "expired" in details


def test_token_listing_never_shows_secrets(auth_server: AuthServer) -> None:
    """GET /tokens lists names, scopes, creator and times; neither the secret nor its digest."""
    listing = httpx.get(auth_server.server.http_url + "/tokens", headers=_bearer(auth_server.admin)).json()["tokens"]
    names = {t["name"]: t for t in listing}
    assert "only-catalog-read" in names and names["only-catalog-read"]["scopes"] == ["catalog:read"]
    assert "admin" == names["only-catalog-read"]["created_by"]
    text = str(listing)
    assert all(secret not in text for secret in auth_server.tokens.values())
    assert "digest" not in text


def test_bad_token_requests_are_refused_cleanly(auth_server: AuthServer) -> None:
    """Malformed, empty, oversized and non-ASCII credentials get 401 / UNAUTHENTICATED with Muster's error shape."""
    for header in (b"Basic YWxpY2U6c2VjcmV0", b"Bearer", b"Bearer    ", b"Bearer " + b"x" * 10_000, b"mst_abc",
                   "Bearer caf\u00e9".encode(), b"Bearer \xff\xfe"):
        status, body = _raw_get(auth_server.server.http_port, "/stats", b"authorization: " + header)
        assert 401 == status, header[:20]
        assert {"error", "message"} <= set(json.loads(body)), body
    # A control character never reaches Muster: the HTTP parser refuses the request itself.
    assert 400 == _raw_get(auth_server.server.http_port, "/stats", b"authorization: Bearer mst_\x7f")[0]
    target = auth_server.server.grpc_target
    for value in ("Basic x", "Bearer ", "Bearer " + "x" * 10_000, "bearer nope"):
        code, _, _ = grpc_util.call(target, "/muster.v1.Catalog/GetStats", {}, None,
                                    metadata=[("authorization", value)])
        assert grpc.StatusCode.UNAUTHENTICATED == code, value[:20]
    code, _, _ = grpc_util.call(target, "/muster.v1.Catalog/GetStats", {}, None,
                                metadata=[("authorization-bin", "\u00e9t\u00e9".encode())])
    assert grpc.StatusCode.UNAUTHENTICATED == code
    assert auth_server.server.log_path is not None
    assert "Traceback" not in auth_server.server.log_path.read_text()


def test_admin_token_file_is_private_and_its_secret_never_logged(auth_server: AuthServer) -> None:
    """First start with auth wrote <data-dir>/admin.token with mode 0600; the log names the path, not the secret."""
    path = auth_server.server.data_dir / "admin.token"
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)
    assert auth_server.server.log_path is not None
    log = auth_server.server.log_path.read_text()
    assert "admin.token" in log
    assert auth_server.admin not in log


def test_cli_manages_tokens(auth_server: AuthServer, tmp_path: Path) -> None:
    """muster token create / list / revoke, with the admin token from --token-file and from MUSTER_TOKEN."""
    token_file = tmp_path / "admin"
    token_file.write_text(auth_server.admin + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}

    def muster(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "muster.cli", *args], capture_output=True, text=True,
                              env={**env, **extra}, timeout=60)

    name = unique("ci-job")
    made = muster("token", "create", "--server", auth_server.server.http_url, "--token-file", str(token_file),
                  "--name", name, "--scope", "catalog:write", "--scope", "leases:read", "--expires", "30d")
    assert 0 == made.returncode, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("mst_") and "only time" in made.stderr
    listed = muster("token", "list", "--server", f"grpc://{auth_server.server.grpc_target}",
                    MUSTER_TOKEN=auth_server.admin)
    assert 0 == listed.returncode and name in listed.stdout and "catalog:write,leases:read" in listed.stdout
    used = muster("services", "--server", auth_server.server.http_url, MUSTER_TOKEN=secret)
    assert 0 == used.returncode, used.stderr
    refused = muster("services", "--server", auth_server.server.http_url)
    assert 1 == refused.returncode and "token is required" in refused.stderr
    revoked = muster("token", "revoke", name, "--json", "--server", auth_server.server.http_url,
                     MUSTER_TOKEN=auth_server.admin)
    assert 0 == revoked.returncode and '"revoked_at":"' in revoked.stdout
    missing = muster("token", "revoke", "nobody", "--server", auth_server.server.http_url,
                     MUSTER_TOKEN=auth_server.admin)
    assert 3 == missing.returncode


def test_non_loopback_without_auth_refuses_to_start(tmp_path: Path) -> None:
    """muster serve --host 0.0.0.0 without --auth exits 2 and says how to enable auth; --insecure overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    result = subprocess.run(
        [sys.executable, "-m", "muster.cli", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path),
         "--http-port", str(free_port()), "--grpc-port", str(free_port())],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert 2 == result.returncode
    assert "--auth" in result.stderr and "--insecure" in result.stderr
    assert "Traceback" not in result.stderr


def test_monitor_alerts_name_the_server_as_their_actor(auth_server: AuthServer) -> None:
    """A service that stops beating is marked down by the monitor: the alert's actor is "muster"."""
    owner = auth_server.make_token(unique("quiet"), ["catalog:write"])
    base = auth_server.server.http_url
    sid = httpx.post(base + "/register", headers=_bearer(owner), json={
        "name": "quiet", "type": "agent", "url": "http://127.0.0.1:7", "heartbeat_interval_s": 1, "ttl_s": 1,
    }).json()["service_id"]
    deadline = time.monotonic() + 20
    while True:
        alerts = httpx.get(base + "/alerts", headers=_bearer(auth_server.tokens["events:read"])).json()["alerts"]
        mine = [a for a in alerts if a["service_id"] == sid]
        if mine:
            break
        assert time.monotonic() < deadline, "the monitor never raised an alert"
        time.sleep(0.2)
    assert ("service_down", "muster") == (mine[-1]["alert_type"], mine[-1]["actor"])


def test_metrics_auth_puts_metrics_behind_admin(tmp_path: Path) -> None:
    """With --metrics-auth, /metrics needs an admin token; the probes stay open."""
    from tests.e2e.identity.conftest import start_auth_server

    auth = start_auth_server(tmp_path / "data", None, ["--metrics-auth"])
    try:
        base = auth.server.http_url
        assert 401 == httpx.get(base + "/metrics").status_code
        assert 403 == httpx.get(base + "/metrics", headers=_bearer(auth.tokens["catalog:read"])).status_code
        reply = httpx.get(base + "/metrics", headers=_bearer(auth.admin))
        assert 200 == reply.status_code and "muster_auth_refused_total" in reply.text
        assert 200 == httpx.get(base + "/ready").status_code
    finally:
        auth.server.stop()


def test_bad_token_requests_get_the_same_error_on_both_doors(auth_server: AuthServer) -> None:
    """A bad name, an unknown scope and a bad lifetime are refused with the same field and message on HTTP and gRPC."""
    cases = [
        {"name": "-bad", "scopes": ["catalog:read"]},
        {"name": "ok-name", "scopes": ["catalog:admin"]},
        {"name": "ok-name", "scopes": ["catalog:read"], "expires": "1y"},
    ]
    for body in cases:
        http = httpx.post(auth_server.server.http_url + "/tokens", json=body, headers=_bearer(auth_server.admin))
        assert 422 == http.status_code
        code, details, _ = grpc_util.call(auth_server.server.grpc_target, "/muster.v1.Tokens/CreateToken", body,
                                          auth_server.admin)
        assert grpc.StatusCode.INVALID_ARGUMENT == code
        assert http.json()["message"] == details, body
