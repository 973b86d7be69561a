"""The OpenAPI document, made truthful: every error each route can answer, in Muster's one error shape.

FastAPI documents 200 and its own 422 schema only. Muster's doors can also
answer 401/403 (identity), 404, 409, 413/415 (bodies), 429 (rate limits) and
503 (store unavailable), always as the ``Error`` component. Schemas that route
definitions inline (pydantic's ``$defs``) are hoisted into the components, so
every ``$ref`` resolves; streaming and text routes say what they return.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ERROR_SCHEMA", "truthful_openapi"]

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {
            "type": "string",
            "description": "Muster's error code: invalid_argument, not_found, already_exists, failed_precondition, "
            "expired, pruned, unauthenticated, permission_denied, rate_limited, resource_exhausted, "
            "unsupported_media_type, method_not_allowed, unavailable",
        },
        "message": {"type": "string", "description": "what went wrong, naming the field and the rule"},
        "field": {"type": "string", "description": "the offending input field, where there is one"},
    },
}

_DESCRIPTIONS = {
    "401": "No token, or one Muster does not accept (auth on)",
    "403": "The token lacks the scope, or the thing belongs to another principal",
    "404": "No such id, name or route",
    "405": "The path does not take this method (see Allow)",
    "409": "Conflict with the current state (held, exists, expired)",
    "413": "Request body over the limit",
    "415": "Request body is not JSON",
    "422": "A field breaks a rule (the message names both)",
    "429": "Rate limit: retry after Retry-After seconds",
    "503": "Store unavailable or shutting down",
}
_PROBES = {"/health": (), "/ready": ("503",), "/openapi.json": ()}
_BODY_METHODS = {"post", "put", "patch"}
_CONTENT = {"/metrics": "text/plain", "/watch": "text/event-stream"}


def _error_response(code: str) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


# ``\p{Cf}`` (Unicode format characters) is what the validators use; JSON Schema's ECMA regexes
# without the ``u`` flag do not know it, so the document spells out the BMP ones (the rarer
# astral ones are refused by the code all the same).
_FORMAT_CHARACTERS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)


def _portable_patterns(node: Any) -> None:
    if isinstance(node, dict):
        pattern = node.get("pattern")
        if isinstance(pattern, str) and "\\p{Cf}" in pattern:
            node["pattern"] = pattern.replace("\\p{Cf}", _FORMAT_CHARACTERS)
        for value in node.values():
            _portable_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _portable_patterns(value)


def _hoist(node: Any, components: dict[str, Any]) -> None:
    """Move every inline ``$defs`` into the components (their refs already point there)."""
    if isinstance(node, dict):
        defs = node.pop("$defs", None)
        if isinstance(defs, dict):
            for name, schema in defs.items():
                components.setdefault(name, schema)
                _hoist(schema, components)
        for value in node.values():
            _hoist(value, components)
    elif isinstance(node, list):
        for value in node:
            _hoist(value, components)


def truthful_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    _hoist(schema.get("paths", {}), components)
    _portable_patterns(schema)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if path in _PROBES:
                codes: tuple[str, ...] = _PROBES[path]
            elif path == "/metrics":
                codes = ("401", "403", "429")
            else:
                codes = ("401", "403", "404", "409", "422", "429", "503")
                if method in _BODY_METHODS:
                    codes += ("413", "415")
            for code in codes:
                responses[code] = _error_response(code)
            media = _CONTENT.get(path)
            if media is not None and "200" in responses:
                responses["200"]["content"] = {media: {"schema": {"type": "string"}}}
    return schema
