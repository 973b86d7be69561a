"""One valid request for every route and RPC, made as the token that holds exactly the scope it needs.

Every resource a request acts on is made first by that same token, so the
request succeeds as its owner. ``tests/e2e/identity/test_auth_e2e.py`` walks
these tables next to the scope table; a route or RPC missing here fails there.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

_serial = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_serial)}"


@dataclass
class Ctx:
    http_url: str
    tokens: dict[str, str]
    admin: str

    def call(self, scope: str, method: str, path: str, **kwargs: Any) -> Any:
        token = self.admin if scope == "admin" else self.tokens[scope]
        reply = httpx.request(
            method, self.http_url + path, headers={"authorization": f"Bearer {token}"}, timeout=10, **kwargs
        )
        assert reply.status_code < 300, f"{method} {path}: {reply.status_code} {reply.text}"
        return reply.json()

    # Resources, each made by the token of the scope that owns them.
    def service(self) -> str:
        body = {"name": unique("svc"), "type": "model", "url": "http://127.0.0.1:1", "heartbeat_interval_s": 60,
                "ttl_s": 90}
        return str(self.call("catalog:write", "POST", "/register", json=body)["service_id"])

    def symbol(self) -> dict[str, str]:
        return {"repo": "auth", "branch": "main", "fq_name": unique("pkg.sym"), "kind": "function"}

    def lease(self) -> int:
        return int(self.call("leases:write", "POST", "/reserve", json=self.symbol())["lease_id"])

    def lease_events(self) -> dict[str, Any]:
        """A watch of repo ``auth`` from the start, with at least one lease event in it to read."""
        self.lease()
        return {"repo": "auth", "since": 0}

    def plan(self) -> str:
        plan_id = unique("plan")
        self.call("leases:write", "POST", "/plans/reserve", json={"plan_id": plan_id, "symbols": [self.symbol()]})
        return plan_id

    def node(self) -> str:
        name = unique("node")
        self.call("graph:write", "PUT", "/graph/services", json={"services": [{"service_id": name}]})
        return name

    def cycle_alert(self) -> str:
        a, b = unique("cyc-a"), unique("cyc-b")
        deps = [{"source_service_id": a, "target_service_id": b}, {"source_service_id": b, "target_service_id": a}]
        self.call("graph:write", "PUT", "/graph/dependencies", json={"dependencies": deps})
        self.call("graph:write", "POST", "/graph/cycles/detect")
        alerts = self.call("graph:read", "GET", "/graph/alerts", params={"status": "open", "limit": 1000})["alerts"]
        return str(next(x["id"] for x in alerts if a in x["members"]))

    def token_name(self) -> str:
        name = unique("doomed")
        self.call("admin", "POST", "/tokens", json={"name": name, "scopes": ["catalog:read"]})
        return name


Request = dict[str, Any]  # path (filled in), and httpx keyword arguments (json, params)
HTTP_CASES: dict[tuple[str, str], Callable[[Ctx], Request]] = {
    ("GET", "/watch"): lambda c: {"path": "/watch", "params": {"since": 0}},
    ("POST", "/register"): lambda c: {"path": "/register", "json": {"name": unique("r"), "type": "agent",
                                                                    "url": "http://127.0.0.1:2"}},
    ("PUT", "/heartbeat"): lambda c: {"path": "/heartbeat", "json": {"service_id": c.service(), "status": "ok"}},
    ("GET", "/discover"): lambda c: {"path": "/discover"},
    ("POST", "/promote"): lambda c: {"path": "/promote", "json": {"service_id": c.service(), "role": "staging"}},
    ("POST", "/deregister"): lambda c: {"path": "/deregister", "json": {"service_id": c.service()}},
    ("GET", "/services"): lambda c: {"path": "/services"},
    ("GET", "/services/{service_id}"): lambda c: {"path": f"/services/{c.service()}"},
    ("GET", "/stats"): lambda c: {"path": "/stats"},
    ("GET", "/alerts"): lambda c: {"path": "/alerts"},
    ("POST", "/reserve"): lambda c: {"path": "/reserve", "json": c.symbol()},
    ("POST", "/claim"): lambda c: {"path": "/claim", "json": {"lease_id": c.lease(), "commit_sha": "abcdef1"}},
    ("GET", "/lookup"): lambda c: {"path": "/lookup", "params": _key(c.call(
        "leases:write", "POST", "/reserve", json=c.symbol()))},
    ("POST", "/release"): lambda c: {"path": "/release", "json": {"lease_id": c.lease()}},
    ("POST", "/extend"): lambda c: {"path": "/extend", "json": {"lease_id": c.lease(), "ttl_sec": 60}},
    ("POST", "/plans/reserve"): lambda c: {"path": "/plans/reserve", "json": {"plan_id": unique("p"),
                                                                              "symbols": [c.symbol()]}},
    ("GET", "/plans/{plan_id:path}"): lambda c: {"path": f"/plans/{c.plan()}"},
    ("POST", "/plans/{plan_id:path}/release"): lambda c: {"path": f"/plans/{c.plan()}/release"},
    ("PUT", "/graph/services"): lambda c: {"path": "/graph/services",
                                           "json": {"services": [{"service_id": unique("n")}]}},
    ("PUT", "/graph/dependencies"): lambda c: {"path": "/graph/dependencies", "json": {"dependencies": [
        {"source_service_id": unique("s"), "target_service_id": unique("t")}]}},
    ("GET", "/graph/services"): lambda c: {"path": "/graph/services"},
    ("GET", "/graph/services/{service_id}"): lambda c: {"path": f"/graph/services/{c.node()}"},
    ("DELETE", "/graph/services/{service_id}"): lambda c: {"path": f"/graph/services/{c.node()}"},
    ("GET", "/graph/services/{service_id}/dependencies"): lambda c: {
        "path": f"/graph/services/{c.node()}/dependencies"},
    ("GET", "/graph/services/{service_id}/dependents"): lambda c: {"path": f"/graph/services/{c.node()}/dependents"},
    ("GET", "/graph/services/{service_id}/traverse"): lambda c: {"path": f"/graph/services/{c.node()}/traverse"},
    ("GET", "/graph/services/{service_id}/impact"): lambda c: {"path": f"/graph/services/{c.node()}/impact"},
    ("POST", "/graph/cycles/detect"): lambda c: {"path": "/graph/cycles/detect"},
    ("GET", "/graph/alerts"): lambda c: {"path": "/graph/alerts"},
    ("PATCH", "/graph/alerts/{alert_id}"): lambda c: {"path": f"/graph/alerts/{c.cycle_alert()}", "json": {
        "status": "acknowledged", "acknowledged_by": "oncall"}},
    ("POST", "/graph/dependencies/mark-stale"): lambda c: {"path": "/graph/dependencies/mark-stale",
                                                           "params": {"older_than_hours": 1}},
    ("GET", "/graph/findings"): lambda c: {"path": "/graph/findings"},
    ("POST", "/tokens"): lambda c: {"path": "/tokens", "json": {"name": unique("new"), "scopes": ["graph:read"]}},
    ("GET", "/tokens"): lambda c: {"path": "/tokens"},
    ("DELETE", "/tokens/{name:path}"): lambda c: {"path": f"/tokens/{c.token_name()}"},
}


def _key(lease: dict[str, Any]) -> dict[str, Any]:
    return {k: lease[k] for k in ("repo", "branch", "fq_name")}


def _beats(c: Ctx) -> dict[str, Any]:
    return {"beats": [{"service_id": c.service(), "status": "ok"}]}


_CAT = "/muster.v1.Catalog/"
_GRAPH = "/muster.v1.Graph/"
_SRM = "/srm.SymbolRegistry/"
# method -> the request as a dict (google.protobuf.json_format field names)
GRPC_CASES: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    _CAT + "Register": lambda c: {"name": unique("g"), "type": "tool", "url": "http://127.0.0.1:3"},
    _CAT + "Heartbeat": lambda c: {"service_id": c.service(), "status": "ok"},
    _CAT + "HeartbeatStream": _beats,
    _CAT + "Discover": lambda c: {},
    _CAT + "Promote": lambda c: {"service_id": c.service(), "role": "canary"},
    _CAT + "Deregister": lambda c: {"service_id": c.service()},
    _CAT + "ListServices": lambda c: {},
    _CAT + "GetService": lambda c: {"service_id": c.service()},
    _CAT + "GetStats": lambda c: {},
    _CAT + "ListAlerts": lambda c: {},
    "/muster.v1.Events/Watch": lambda c: {"since": 0},
    _SRM + "Reserve": lambda c: c.symbol(),
    _SRM + "Claim": lambda c: {"lease_id": c.lease(), "commit_sha": "abcdef1"},
    _SRM + "Lookup": lambda c: _key(c.call("leases:write", "POST", "/reserve", json=c.symbol())),
    _SRM + "Release": lambda c: {"lease_id": c.lease()},
    _SRM + "Extend": lambda c: {"lease_id": c.lease(), "ttl_sec": 60},
    _SRM + "Watch": lambda c: c.lease_events(),
    _SRM + "ReservePlan": lambda c: {"plan_id": unique("gp"), "symbols": [c.symbol()]},
    _SRM + "GetPlan": lambda c: {"plan_id": c.plan()},
    _SRM + "ReleasePlan": lambda c: {"plan_id": c.plan()},
    _GRAPH + "UpsertServices": lambda c: {"services": [{"service_id": unique("gn")}]},
    _GRAPH + "UpsertDependencies": lambda c: {"dependencies": [
        {"source_service_id": unique("gs"), "target_service_id": unique("gt")}]},
    _GRAPH + "ListServices": lambda c: {},
    _GRAPH + "GetService": lambda c: {"service_id": c.node()},
    _GRAPH + "DeleteService": lambda c: {"service_id": c.node()},
    _GRAPH + "ListDependencies": lambda c: {"service_id": c.node()},
    _GRAPH + "ListDependents": lambda c: {"service_id": c.node()},
    _GRAPH + "Traverse": lambda c: {"service_id": c.node()},
    _GRAPH + "Impact": lambda c: {"service_id": c.node()},
    _GRAPH + "DetectCycles": lambda c: {},
    _GRAPH + "ListAlerts": lambda c: {},
    _GRAPH + "UpdateAlert": lambda c: {"id": c.cycle_alert(), "status": "acknowledged", "acknowledged_by": "oncall"},
    _GRAPH + "MarkStale": lambda c: {"older_than_hours": 1},
    _GRAPH + "ListFindings": lambda c: {},
    "/muster.v1.Tokens/CreateToken": lambda c: {"name": unique("gnew"), "scopes": ["leases:read"]},
    "/muster.v1.Tokens/ListTokens": lambda c: {},
    "/muster.v1.Tokens/RevokeToken": lambda c: {"name": c.token_name()},
}
