"""The one table of what every door needs: each HTTP route and each gRPC method, and its scope.

``OPEN`` entries need no token (probes, the API's own documentation, gRPC
health and reflection). Anything served but missing here is refused to all but
``admin`` (the doors fail closed), and ``tests/e2e/test_auth_e2e.py`` walks the
FastAPI routes and every registered gRPC service and fails on a missing entry.
"""

from __future__ import annotations

from typing import Final

__all__ = ["GRPC_METHODS", "HTTP_ROUTES", "METRICS", "OPEN", "scope_for_grpc", "scope_for_http"]

OPEN: Final = None
# A marker for /metrics: open unless ``--metrics-auth`` puts it behind admin.
METRICS: Final = "metrics"

HTTP_ROUTES: dict[tuple[str, str], str | None] = {
    # operations
    ("GET", "/health"): OPEN,
    ("GET", "/ready"): OPEN,
    ("GET", "/metrics"): METRICS,
    ("GET", "/watch"): "events:read",
    # the API's own documentation (it says nothing a token would protect)
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/docs/oauth2-redirect"): OPEN,
    ("GET", "/redoc"): OPEN,
    ("GET", "/docs/assets/{name}"): OPEN,
    # catalog
    ("POST", "/register"): "catalog:write",
    ("PUT", "/heartbeat"): "catalog:write",
    ("GET", "/discover"): "catalog:read",
    ("POST", "/promote"): "catalog:write",
    ("POST", "/deregister"): "catalog:write",
    ("GET", "/services"): "catalog:read",
    ("GET", "/services/{service_id}"): "catalog:read",
    ("GET", "/stats"): "catalog:read",
    ("GET", "/alerts"): "events:read",
    # leases
    ("POST", "/reserve"): "leases:write",
    ("POST", "/claim"): "leases:write",
    ("GET", "/lookup"): "leases:read",
    ("POST", "/release"): "leases:write",
    ("POST", "/extend"): "leases:write",
    ("POST", "/plans/reserve"): "leases:write",
    ("GET", "/plans/{plan_id:path}"): "leases:read",
    ("POST", "/plans/{plan_id:path}/release"): "leases:write",
    # graph
    ("PUT", "/graph/services"): "graph:write",
    ("PUT", "/graph/dependencies"): "graph:write",
    ("GET", "/graph/services"): "graph:read",
    ("GET", "/graph/services/{service_id}"): "graph:read",
    ("DELETE", "/graph/services/{service_id}"): "graph:write",
    ("GET", "/graph/services/{service_id}/dependencies"): "graph:read",
    ("GET", "/graph/services/{service_id}/dependents"): "graph:read",
    ("GET", "/graph/services/{service_id}/traverse"): "graph:read",
    ("GET", "/graph/services/{service_id}/impact"): "graph:read",
    ("POST", "/graph/cycles/detect"): "graph:write",
    ("GET", "/graph/alerts"): "graph:read",
    ("PATCH", "/graph/alerts/{alert_id}"): "graph:write",
    ("POST", "/graph/dependencies/mark-stale"): "graph:write",
    ("GET", "/graph/findings"): "graph:read",
    # identity
    ("POST", "/tokens"): "admin",
    ("GET", "/tokens"): "admin",
    ("DELETE", "/tokens/{name:path}"): "admin",
}

_CATALOG = "/muster.v1.Catalog/"
_GRAPH = "/muster.v1.Graph/"
_SRM = "/srm.SymbolRegistry/"

GRPC_METHODS: dict[str, str | None] = {
    "/grpc.health.v1.Health/Check": OPEN,
    "/grpc.health.v1.Health/Watch": OPEN,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": OPEN,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": OPEN,
    _CATALOG + "Register": "catalog:write",
    _CATALOG + "Heartbeat": "catalog:write",
    _CATALOG + "HeartbeatStream": "catalog:write",
    _CATALOG + "Discover": "catalog:read",
    _CATALOG + "Promote": "catalog:write",
    _CATALOG + "Deregister": "catalog:write",
    _CATALOG + "ListServices": "catalog:read",
    _CATALOG + "GetService": "catalog:read",
    _CATALOG + "GetStats": "catalog:read",
    _CATALOG + "ListAlerts": "events:read",
    "/muster.v1.Events/Watch": "events:read",
    _SRM + "Reserve": "leases:write",
    _SRM + "Claim": "leases:write",
    _SRM + "Lookup": "leases:read",
    _SRM + "Release": "leases:write",
    _SRM + "Extend": "leases:write",
    _SRM + "Watch": "leases:read",
    _SRM + "ReservePlan": "leases:write",
    _SRM + "GetPlan": "leases:read",
    _SRM + "ReleasePlan": "leases:write",
    _GRAPH + "UpsertServices": "graph:write",
    _GRAPH + "UpsertDependencies": "graph:write",
    _GRAPH + "ListServices": "graph:read",
    _GRAPH + "GetService": "graph:read",
    _GRAPH + "DeleteService": "graph:write",
    _GRAPH + "ListDependencies": "graph:read",
    _GRAPH + "ListDependents": "graph:read",
    _GRAPH + "Traverse": "graph:read",
    _GRAPH + "Impact": "graph:read",
    _GRAPH + "DetectCycles": "graph:write",
    _GRAPH + "ListAlerts": "graph:read",
    _GRAPH + "UpdateAlert": "graph:write",
    _GRAPH + "MarkStale": "graph:write",
    _GRAPH + "ListFindings": "graph:read",
    "/muster.v1.Tokens/CreateToken": "admin",
    "/muster.v1.Tokens/ListTokens": "admin",
    "/muster.v1.Tokens/RevokeToken": "admin",
}

# What an entry the table lacks gets: fail closed.
_UNLISTED = "admin"


def scope_for_http(method: str, path_template: str, *, metrics_auth: bool) -> str | None:
    scope = HTTP_ROUTES.get((method, path_template), _UNLISTED)
    if scope == METRICS:
        return "admin" if metrics_auth else OPEN
    return scope


def scope_for_grpc(full_method: str) -> str | None:
    return GRPC_METHODS.get(full_method, _UNLISTED)
