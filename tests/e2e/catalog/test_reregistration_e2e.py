"""Re-registration by instance_id over real HTTP and gRPC, against `muster serve` (split doors: two processes)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from muster._proto.muster.v1 import catalog_pb2 as pb
from muster._proto.muster.v1 import catalog_pb2_grpc as pb_grpc
from muster.client import KeepAlive, MusterClient
from muster.errors import Invalid, error_for_grpc_code, trailing_metadata_of
from tests.conftest import ServerProcess
from tests.e2e.identity.conftest import start_auth_server

BAD_INSTANCE_IDS = ["", " host:1", "host 1", "-host", "x" * 257, "host\x07", "hôte"]


def _registration(name: str, instance_id: str | None, url: str = "http://10.0.0.5:8000") -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "type": "model", "url": url, "caps": ["rank"]}
    if instance_id is not None:
        body["instance_id"] = instance_id
    return body


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _both_doors_list(server: ServerProcess, name: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(service_id, url) of every live instance of ``name``, as the HTTP door and the gRPC door answer."""
    over_http = httpx.get(f"{server.http_url}/discover", params={"name": name}).json()["services"]
    with grpc.insecure_channel(server.grpc_target) as channel:
        over_grpc = pb_grpc.CatalogStub(channel).Discover(pb.DiscoverRequest(name=name)).services
    return [(s["service_id"], s["url"]) for s in over_http], [(s.service_id, s.url) for s in over_grpc]


def test_registering_again_through_the_other_door_keeps_one_instance_on_both(shared_server: ServerProcess) -> None:
    """HTTP registers, gRPC registers again with a new url: same service_id, and each door process lists one."""
    name = _unique("restarting")
    first = httpx.post(f"{shared_server.http_url}/register", json=_registration(name, "10.0.0.5:8000")).json()
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        again = pb_grpc.CatalogStub(channel).Register(pb.RegisterRequest(
            name=name, type="model", url="http://10.0.0.5:9000", caps=["rank"], instance_id="10.0.0.5:8000"
        ))
    assert first["service_id"] == again.service_id
    expected = [(again.service_id, "http://10.0.0.5:9000")]
    _eventually(lambda: _both_doors_list(shared_server, name) == (expected, expected))
    record = httpx.get(f"{shared_server.http_url}/services/{again.service_id}").json()
    assert ("10.0.0.5:8000", "ok") == (record["instance_id"], record["status"])
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        message = pb_grpc.CatalogStub(channel).GetService(pb.GetServiceRequest(service_id=again.service_id))
    assert "10.0.0.5:8000" == message.instance_id


def test_without_an_instance_id_every_registration_is_new_and_says_null(shared_server: ServerProcess) -> None:
    """Two plain registrations are two instances; their records carry instance_id null (JSON) / unset (gRPC)."""
    name = _unique("plain")
    ids = [httpx.post(f"{shared_server.http_url}/register", json=_registration(name, None)).json()["service_id"]
           for _ in range(2)]
    assert ids[0] != ids[1]
    record = httpx.get(f"{shared_server.http_url}/services/{ids[0]}").json()
    assert "instance_id" in record and record["instance_id"] is None
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        stub = pb_grpc.CatalogStub(channel)
        _eventually(lambda: len(stub.Discover(pb.DiscoverRequest(name=name)).services) == 2)
        listed = stub.Discover(pb.DiscoverRequest(name=name)).services
        assert [False, False] == [s.HasField("instance_id") for s in listed]


@pytest.mark.parametrize("value", BAD_INSTANCE_IDS)
def test_a_bad_instance_id_is_refused_by_both_doors_naming_the_field(shared_server: ServerProcess, value: str) -> None:
    """The same rule on both doors: 422 invalid_argument / INVALID_ARGUMENT, field instance_id, nothing registered."""
    name = _unique("bad-id")
    reply = httpx.post(f"{shared_server.http_url}/register", json=_registration(name, value))
    assert (422, "invalid_argument", "instance_id") == (
        reply.status_code, reply.json()["error"], reply.json()["field"]
    ), reply.text
    with grpc.insecure_channel(shared_server.grpc_target) as channel, pytest.raises(grpc.RpcError) as caught:
        pb_grpc.CatalogStub(channel).Register(pb.RegisterRequest(name=name, type="model", url="http://h:1",
                                                                 instance_id=value))
    assert grpc.StatusCode.INVALID_ARGUMENT == caught.value.code()
    assert caught.value.details().startswith("instance_id:")
    rebuilt = error_for_grpc_code(caught.value.code(), caught.value.details(), trailing_metadata_of(caught.value))
    assert (Invalid, "instance_id") == (type(rebuilt), rebuilt.field)  # the rich status names the field too
    assert [] == httpx.get(f"{shared_server.http_url}/discover", params={"name": name}).json()["services"]


def test_a_non_string_instance_id_is_422(shared_server: ServerProcess) -> None:
    """JSON numbers, booleans and objects are not instance ids."""
    for value in (42, True, {"id": "x"}, ["x"]):
        reply = httpx.post(f"{shared_server.http_url}/register", json=_registration("typed", value))  # type: ignore[arg-type]
        assert (422, "instance_id") == (reply.status_code, reply.json()["field"]), value


def test_openapi_states_the_instance_id_rule(shared_server: ServerProcess) -> None:
    """The served OpenAPI document gives instance_id its pattern and maxLength, and the records carry it."""
    document = httpx.get(f"{shared_server.http_url}/openapi.json").json()
    body = document["paths"]["/register"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    text = next(o for o in schema["properties"]["instance_id"]["anyOf"] if o.get("type") == "string")
    assert ("^[A-Za-z0-9][A-Za-z0-9._:/@-]*$", 256, 1) == (text["pattern"], text["maxLength"], text["minLength"])
    assert "instance_id" not in schema.get("required", [])


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_the_client_registers_by_instance_id(shared_server: ServerProcess, transport: str) -> None:
    """MusterClient.register(instance_id=...) twice: one service_id, the record shows the id and the new url."""
    url = f"grpc://{shared_server.grpc_target}" if transport == "grpc" else shared_server.http_url
    name = _unique(f"client-{transport}")
    async with await MusterClient.connect(url) as client:
        first = await client.register(name=name, type="agent", url="http://h:1", instance_id="pod-1")
        again = await client.register(name=name, type="agent", url="http://h:2", instance_id="pod-1")
        plain = await client.register(name=name, type="agent", url="http://h:3")
        assert first.service_id == again.service_id != plain.service_id
        record = await client.get_service(first.service_id)
        assert ("pod-1", "http://h:2") == (record.instance_id, record.url)
        assert (await client.get_service(plain.service_id)).instance_id is None
        with pytest.raises(Invalid) as caught:  # refused before it leaves the process, as the server would
            await client.register(name=name, type="agent", url="http://h:1", instance_id="no spaces")
        assert "instance_id" == caught.value.field


async def test_keepalive_restarted_with_its_instance_id_takes_its_instance_back(shared_server: ServerProcess) -> None:
    """A KeepAlive that dies without deregistering, started again with the same instance_id: the same instance."""
    name = _unique("kept")
    async with await MusterClient.connect(f"grpc://{shared_server.grpc_target}") as client:
        options: dict[str, Any] = {"name": name, "type": "service", "url": "http://h:2", "heartbeat_interval_s": 1,
                                   "ttl_s": 5, "beat_every": 0.1, "instance_id": "worker-7"}
        crashed = KeepAlive(client, **options)
        await crashed.__aenter__()
        assert crashed._task is not None
        crashed._task.cancel()  # the process dies: no deregistration
        async with KeepAlive(client, **{**options, "url": "http://h:3"}) as restarted:
            assert crashed.service_id == restarted.service_id
            listed = await client.discover(name=name)
            assert [(restarted.service_id, "http://h:3", "worker-7")] == [
                (r.service_id, r.url, r.instance_id) for r in listed
            ]
        assert [] == await client.discover(name=name)  # the clean exit deregistered it


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_concurrent_registrations_through_both_door_processes_make_one_instance(
    server_factory: Any, request: pytest.FixtureRequest, engine: str
) -> None:
    """100 HTTP and 100 gRPC registrations of one instance at once (two processes): all OK, one instance."""
    database_url = request.getfixturevalue("pg_server_url") if engine == "postgresql" else None
    server = server_factory(database_url=database_url)
    name = "contended"

    async def over_http() -> list[str]:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            replies = await asyncio.gather(*(
                http.post("/register", json=_registration(name, "the-one", f"http://h:{i + 1}")) for i in range(100)
            ))
        assert [200] * 100 == [r.status_code for r in replies], [r.text for r in replies if r.status_code != 200]
        return [r.json()["service_id"] for r in replies]

    async def over_grpc() -> list[str]:
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.CatalogStub(channel)
            replies = await asyncio.gather(*(
                stub.Register(pb.RegisterRequest(name=name, type="model", url=f"grpc://h:{i + 1}",
                                                 instance_id="the-one"), timeout=30)
                for i in range(100)
            ))
        return [r.service_id for r in replies]

    async def both() -> list[list[str]]:
        return list(await asyncio.gather(over_http(), over_grpc()))

    ids = {sid for door in asyncio.run(both()) for sid in door}
    assert 1 == len(ids)
    listed = httpx.get(f"{server.http_url}/services").json()["services"]
    assert [ids.pop()] == [s["service_id"] for s in listed if s["name"] == name]
    _eventually(lambda: [len(door) for door in _both_doors_list(server, name)] == [1, 1])
    http_view, grpc_view = _both_doors_list(server, name)
    assert http_view == grpc_view
    assert "Traceback" not in server.logs() and "grpc.unhandled" not in server.logs()


def test_another_principal_may_not_register_an_instance_again(tmp_path: Path) -> None:
    """With auth on, Bob re-registering Alice's instance is 403 / PERMISSION_DENIED on both doors; Alice may."""
    auth = start_auth_server(tmp_path / "data", None)
    try:
        alice = auth.make_token("alice", ["catalog:write"])
        bob = auth.make_token("bob", ["catalog:write"])
        http = auth.server.http_url
        body = _registration("owned", "host-a:1")
        first = httpx.post(f"{http}/register", json=body, headers={"authorization": f"Bearer {alice}"})
        assert 200 == first.status_code, first.text
        refused = httpx.post(f"{http}/register", json={**body, "url": "http://evil:1"},
                             headers={"authorization": f"Bearer {bob}"})
        assert (403, "permission_denied") == (refused.status_code, refused.json()["error"])
        assert "alice" in refused.json()["message"]
        with grpc.insecure_channel(auth.server.grpc_target) as channel, pytest.raises(grpc.RpcError) as caught:
            pb_grpc.CatalogStub(channel).Register(
                pb.RegisterRequest(name="owned", type="model", url="http://evil:2", instance_id="host-a:1"),
                metadata=[("authorization", f"Bearer {bob}")],
            )
        assert grpc.StatusCode.PERMISSION_DENIED == caught.value.code()
        sid = first.json()["service_id"]
        record = httpx.get(f"{http}/services/{sid}", headers={"authorization": f"Bearer {alice}"}).json()
        assert ("http://10.0.0.5:8000", "alice") == (record["url"], record["owner"])
        again = httpx.post(f"{http}/register", json={**body, "url": "http://10.0.0.5:9000"},
                           headers={"authorization": f"Bearer {alice}"})
        assert (200, sid) == (again.status_code, again.json()["service_id"])
    finally:
        auth.server.stop()
