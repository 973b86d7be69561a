"""Every SymbolRegistry RPC has an HTTP route and an SRMClient method (or a written reason)."""

from __future__ import annotations

import re

from muster._proto.srm import symbol_pb2
from muster.client.srm import SRMClient
from muster.leases.http import router
from muster.leases.service import LeasesService

HTTP_ROUTE = {
    "Reserve": ("POST", "/reserve"),
    "Claim": ("POST", "/claim"),
    "Lookup": ("GET", "/lookup"),
    "Release": ("POST", "/release"),
    "Extend": ("POST", "/extend"),
    "ReservePlan": ("POST", "/plans/reserve"),
    "GetPlan": ("GET", "/plans/{plan_id:path}"),
    "ReleasePlan": ("POST", "/plans/{plan_id:path}/release"),
}
# Watch has no leases route: the shared GET /watch?kind=leases.&subject=<repo>/<branch>/ serves it.
NO_ROUTE = {"Watch"}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_rpc_has_an_http_route() -> None:
    """The HTTP door offers each RPC of srm.SymbolRegistry."""
    rpcs = {m.name for m in symbol_pb2.DESCRIPTOR.services_by_name["SymbolRegistry"].methods}
    assert rpcs == set(HTTP_ROUTE) | NO_ROUTE
    api = router(LeasesService.__new__(LeasesService))
    routes = {(method, route.path) for route in api.routes for method in getattr(route, "methods", ())}
    assert set(HTTP_ROUTE.values()) <= routes


def test_every_rpc_has_a_client_method() -> None:
    """SRMClient has one method per RPC, named in snake case."""
    rpcs = {m.name for m in symbol_pb2.DESCRIPTOR.services_by_name["SymbolRegistry"].methods}
    assert all(callable(getattr(SRMClient, _snake(rpc), None)) for rpc in rpcs)


def test_seed_fields_keep_their_numbers() -> None:
    """The seed's messages keep their field names and numbers."""
    seed = {
        "ReserveRequest": {"repo": 1, "branch": 2, "fq_name": 3, "kind": 4, "file_path": 5, "plan_id": 6, "ttl_sec": 7},
        "ReserveReply": {"lease_id": 1, "status": 2, "expires_at": 3},
        "ClaimRequest": {"lease_id": 1, "commit_sha": 2},
        "ClaimReply": {"status": 1},
        "LookupRequest": {"repo": 1, "branch": 2, "fq_name": 3},
        "LookupReply": {"status": 1, "file_path": 2, "commit_sha": 3},
    }
    for message, fields in seed.items():
        descriptor = symbol_pb2.DESCRIPTOR.message_types_by_name[message]
        assert fields == {f.name: f.number for f in descriptor.fields if f.name in fields}
    assert symbol_pb2.DESCRIPTOR.services_by_name["SymbolRegistry"].full_name == "srm.SymbolRegistry"
