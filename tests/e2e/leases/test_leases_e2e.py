"""The symbol registry end to end: a real `muster serve` (split doors) over HTTP and over gRPC."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from muster.client.srm import SRMClient
from muster.errors import Conflict, Expired, FailedPrecondition, Invalid, NotFound

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
SEED_BODY = {"repo": "demo", "branch": "main", "fq_name": "demo.func", "kind": "function", "file_path": "demo.py",
             "plan_id": "P1"}


@pytest.fixture
async def http(shared_server: Any) -> Any:
    async with httpx.AsyncClient(base_url=shared_server.http_url, timeout=10) as client:
        yield client


@pytest.fixture
async def srm(shared_server: Any) -> Any:
    async with SRMClient(target=shared_server.grpc_target) as client:
        yield client


# -- HTTP ------------------------------------------------------------------------------------


async def test_seed_smoke_test_reserves_and_lookup_reports_reserved(http: httpx.AsyncClient) -> None:
    """The seed's curl body gives 200 with status "reserved", and /lookup then reports reserved."""
    reply = await http.post("/reserve", json=SEED_BODY)
    assert (reply.status_code, reply.json()["status"]) == (200, "reserved")
    assert {"lease_id", "status", "expires_at"} <= set(reply.json())
    lookup = await http.get("/lookup", params={"repo": "demo", "branch": "main", "fq_name": "demo.func"})
    assert (lookup.json()["status"], lookup.json()["lease_id"]) == ("reserved", reply.json()["lease_id"])


async def test_http_lifecycle_reserve_conflict_claim_release_rereserve(http: httpx.AsyncClient) -> None:
    """Reserve, 409 on a second reserve, claim → active, release → deprecated, reserve again with a higher id."""
    body = {"repo": "life", "branch": "main", "fq_name": "pkg.mod.f", "kind": "function", "ttl_sec": 120}
    first = (await http.post("/reserve", json=body)).json()
    second = await http.post("/reserve", json=body)
    assert (second.status_code, second.json()["error"]) == (409, "already_exists")
    extended = await http.post("/extend", json={"lease_id": first["lease_id"], "ttl_sec": 300})
    assert (extended.status_code, extended.json()["status"]) == (200, "reserved")
    claimed = await http.post("/claim", json={"lease_id": first["lease_id"], "commit_sha": SHA})
    assert (claimed.json()["status"], claimed.json()["commit_sha"]) == ("active", SHA)
    other_sha = await http.post("/claim", json={"lease_id": first["lease_id"], "commit_sha": "e83c5163316f"})
    assert other_sha.status_code == 409
    extend_active = await http.post("/extend", json={"lease_id": first["lease_id"]})
    assert (extend_active.status_code, extend_active.json()["error"]) == (409, "failed_precondition")
    released = await http.post("/release", json={"lease_id": first["lease_id"]})
    assert released.json()["status"] == "deprecated"
    again = (await http.post("/reserve", json=body)).json()
    assert again["lease_id"] > first["lease_id"]


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("post", "/reserve", {**SEED_BODY, "repo": ""}, "repo"),
        ("post", "/reserve", {**SEED_BODY, "kind": "gadget"}, "kind"),
        ("post", "/reserve", {**SEED_BODY, "ttl_sec": 86_401}, "ttl_sec"),
        ("post", "/reserve", {**SEED_BODY, "fq_name": "x" * 501}, "fq_name"),
        ("post", "/claim", {"lease_id": 1, "commit_sha": "zz"}, "commit_sha"),
        ("post", "/extend", {"lease_id": 0}, "lease_id"),
        ("post", "/release", {"lease_id": "one"}, "lease_id"),
        ("post", "/claim", {"lease_id": True, "commit_sha": "abcdef1"}, "lease_id"),
        ("post", "/reserve", {**SEED_BODY, "ttl_sec": "600"}, "ttl_sec"),
        ("post", "/plans/reserve", {"plan_id": "P9", "symbols": []}, "symbols"),
        ("get", "/lookup", {"repo": "demo", "branch": "main"}, "fq_name"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    http: httpx.AsyncClient, method: str, path: str, payload: dict[str, Any], field: str
) -> None:
    """Every rule broken over HTTP is a 422 whose body names the field."""
    if method == "get":
        reply = await http.get(path, params=payload)
    else:
        reply = await http.post(path, json=payload)
    assert (reply.status_code, reply.json()["error"], reply.json()["field"]) == (422, "invalid_argument", field)


async def test_malformed_bodies_are_4xx_never_500(http: httpx.AsyncClient) -> None:
    """Not-JSON, a JSON array, or a huge plan are client errors, not server errors."""
    bad = [
        await http.post("/reserve", content=b"{not json", headers={"content-type": "application/json"}),
        await http.post("/claim", json=[1, 2]),
        await http.post("/plans/reserve", json={"plan_id": "P", "symbols": [{"x": 1}] * 501}),
    ]
    assert all(400 <= reply.status_code < 500 for reply in bad)


async def test_unknown_lease_and_symbol_are_404(http: httpx.AsyncClient) -> None:
    """Claiming a lease id that never existed and looking up a never-reserved symbol are 404."""
    claim = await http.post("/claim", json={"lease_id": 9_999_999, "commit_sha": SHA})
    lookup = await http.get("/lookup", params={"repo": "none", "branch": "main", "fq_name": "nothing"})
    assert (claim.status_code, lookup.status_code) == (404, 404)


async def test_http_plans_reserve_list_and_release(http: httpx.AsyncClient) -> None:
    """POST /plans/reserve grants all, GET /plans/{id} lists them, POST /plans/{id}/release frees them."""
    symbols = [{"repo": "plans", "branch": "feature/x", "fq_name": f"m.f{i}", "kind": "function"} for i in range(3)]
    granted = await http.post("/plans/reserve", json={"plan_id": "team/P7", "symbols": symbols, "ttl_sec": 60})
    assert (granted.status_code, len(granted.json()["leases"])) == (200, 3)
    clash = await http.post("/plans/reserve", json={"plan_id": "team/P8", "symbols": symbols[1:]})
    assert clash.status_code == 409
    listed = await http.get("/plans/team/P7")
    assert [x["lease_id"] for x in listed.json()["leases"]] == [x["lease_id"] for x in granted.json()["leases"]]
    released = await http.post("/plans/team/P7/release")
    assert (released.json()["released"], {x["status"] for x in released.json()["leases"]}) == (3, {"released"})
    assert (await http.get("/plans/team/P8")).status_code == 404


async def test_metrics_expose_the_seed_names(http: httpx.AsyncClient) -> None:
    """/metrics carries srm_reserve_total{status} and srm_lookup_latency_ms."""
    await http.post("/reserve", json={**SEED_BODY, "repo": "metrics"})
    await http.get("/lookup", params={"repo": "metrics", "branch": "main", "fq_name": "demo.func"})
    text = (await http.get("/metrics")).text
    assert 'srm_reserve_total{status="reserved"}' in text
    assert "srm_lookup_latency_ms_bucket" in text


# -- gRPC ------------------------------------------------------------------------------------


async def test_grpc_client_lifecycle_and_error_classes(srm: SRMClient) -> None:
    """SRMClient over gRPC: reserve, Conflict, claim, lookup active, release deprecated, Invalid before sending."""
    lease = await srm.reserve(repo="grpc", branch="main", fq_name="a.b", kind="method", file_path="a.py")
    with pytest.raises(Conflict):
        await srm.reserve(repo="grpc", branch="main", fq_name="a.b", kind="method")
    assert (await srm.claim(lease.lease_id, SHA)).status == "active"
    found = await srm.lookup(repo="grpc", branch="main", fq_name="a.b")
    assert (found.status, found.commit_sha, found.file_path) == ("active", SHA, "a.py")
    with pytest.raises(FailedPrecondition):
        await srm.extend(lease.lease_id, 60)
    assert (await srm.release(lease.lease_id)).status == "deprecated"
    with pytest.raises(NotFound):
        await srm.lookup(repo="grpc", branch="main", fq_name="never")
    with pytest.raises(Invalid):
        await srm.reserve(repo="grpc", branch="main", fq_name="a.c", kind="gadget")


async def test_grpc_expired_lease_cannot_be_claimed(srm: SRMClient) -> None:
    """A 1-second reservation is swept to expired (watchers see it), then claim fails with Expired."""
    stream = srm.watch(repo="grpc-exp", since=0)
    lease = await srm.reserve(repo="grpc-exp", branch="main", fq_name="x", kind="function", ttl_sec=1)
    kinds = [(await asyncio.wait_for(anext(stream), 15)).kind for _ in range(2)]
    await stream.aclose()
    assert kinds == ["leases.reserved", "leases.expired"]
    assert (await srm.lookup(repo="grpc-exp", branch="main", fq_name="x")).status == "expired"
    with pytest.raises(Expired, match=r"^lease expired"):
        await srm.claim(lease.lease_id, SHA)
    assert (await srm.reserve(repo="grpc-exp", branch="main", fq_name="x", kind="function")).lease_id > lease.lease_id


async def test_grpc_plans_and_watch_one_branch(srm: SRMClient) -> None:
    """ReservePlan/GetPlan/ReleasePlan over gRPC, and Watch of one repo/branch sees exactly its transitions."""
    stream = srm.watch(repo="watched", branch="main", since=0)
    symbols = [{"repo": "watched", "branch": "main", "fq_name": f"f{i}", "kind": "function"} for i in range(2)]
    await srm.reserve(repo="watched", branch="dev", fq_name="f0", kind="function")
    granted = await srm.reserve_plan("W1", symbols, ttl_sec=60)
    assert [x.lease_id for x in await srm.get_plan("W1")] == [x.lease_id for x in granted]
    assert (await srm.release_plan("W1")).released == 2
    events = [await asyncio.wait_for(anext(stream), 10) for _ in range(4)]
    await stream.aclose()
    assert [e.kind for e in events] == ["leases.reserved"] * 2 + ["leases.released"] * 2
    assert {e.lease.branch for e in events} == {"main"}


def test_a_client_generated_from_the_seed_proto_works_as_is(shared_server: Any, tmp_path: Path) -> None:
    """Stubs generated from the seed's own proto reserve, get ALREADY_EXISTS, claim and look up."""
    script = Path(__file__).with_name("seed_client.py")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), shared_server.grpc_target],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["reserve"]["status"] == "reserved" and report["reserve"]["lease_id"] > 0
    assert report["second_reserve"] == "ALREADY_EXISTS"
    assert report["claim"] == "active"
    assert report["lookup"] == {"status": "active", "file_path": "demo.py", "commit_sha": "9fceb02d0ae598e9"}


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"repo": "", "branch": "main", "fq_name": "f", "kind": "function"}, "repo"),
        ({"repo": "r", "branch": "main", "fq_name": "f", "kind": ""}, "kind"),
        ({"repo": "r", "branch": "main", "fq_name": "f", "kind": "function", "ttl_sec": -5}, "ttl_sec"),
        ({"repo": "r", "branch": "main", "fq_name": "a\x00b", "kind": "function"}, "fq_name"),
    ],
)
async def test_raw_grpc_bad_input_is_invalid_argument(
    shared_server: Any, request_fields: dict[str, Any], field: str
) -> None:
    """Unvalidated requests straight from the stubs get INVALID_ARGUMENT naming the field, never INTERNAL."""
    import grpc

    from muster._proto.srm import symbol_pb2, symbol_pb2_grpc

    async with grpc.aio.insecure_channel(shared_server.grpc_target) as channel:
        stub = symbol_pb2_grpc.SymbolRegistryStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Reserve(symbol_pb2.ReserveRequest(**request_fields), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(f"{field}: ")


async def test_http_watch_follows_one_repo_branch_with_escaped_slashes(http: httpx.AsyncClient) -> None:
    """GET /watch with kind=leases. and an escaped repo/branch prefix streams that branch's transitions only."""
    mine = {**SEED_BODY, "repo": "watch/app", "branch": "feature/x", "fq_name": "w.one", "plan_id": None}
    other_branch = {**mine, "branch": "feature/xy", "fq_name": "w.two"}
    other_repo = {**mine, "repo": "watch/app2", "fq_name": "w.three"}
    first = (await http.post("/reserve", json=mine)).json()
    for body in (other_branch, other_repo):
        assert (await http.post("/reserve", json=body)).status_code == 200
    await http.post("/release", json={"lease_id": first["lease_id"]})
    seen: list[tuple[str, int]] = []
    params = {"kind": "leases.", "subject": "watch%2Fapp/feature%2Fx/", "since": "0"}
    async with http.stream("GET", "/watch", params=params) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                seen.append((event["kind"], event["payload"]["lease"]["lease_id"]))
                if len(seen) == 2:
                    break
    assert seen == [("leases.reserved", first["lease_id"]), ("leases.released", first["lease_id"])]
