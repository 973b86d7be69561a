"""Query strings read into the same pydantic models as bodies, with their rules in the OpenAPI document.

Each route that takes a query names its model once: :func:`query_openapi`
documents every parameter with the model's constraints (so the contract says
what the code enforces) and :func:`parse_query` reads the query string into
it, refusing unknown parameters by name (and the one probably meant).
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from muster.errors import Invalid
from muster.http.responses import send_error
from muster.validation import parse

__all__ = ["UnknownQueryGuard", "parse_query", "query_openapi"]

M = TypeVar("M", bound=BaseModel)


def _is_list(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "array":
        return True
    return any(option.get("type") == "array" for option in schema.get("anyOf", ()))


def query_openapi(model: type[BaseModel], *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model``'s fields as query parameters, constraints included."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema.get("properties", {}).items():
        if name in exclude:
            continue
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": field}
        if _is_list(field):
            parameter |= {"style": "form", "explode": True}
        if "description" in field:
            parameter["description"] = field["description"]
        parameters.append(parameter)
    return {"parameters": parameters}


def parse_query(model: type[M], request: Request, **path: Any) -> M:
    """The query string (and ``path`` values) as ``model``; unknown parameters are refused by name."""
    fields = model.model_fields
    params = request.query_params
    for name in params:
        if name not in fields or name in path:
            close = difflib.get_close_matches(name, [f for f in fields if f not in path], n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            known = ", ".join(f for f in fields if f not in path)
            raise Invalid(name, f"unknown query parameter{hint} (known: {known})")
    data: dict[str, Any] = dict(path)
    for name, info in fields.items():
        if name in params:
            annotation = str(info.annotation)
            data[name] = params.getlist(name) if "list" in annotation else params[name]
    return parse(model, data)


class UnknownQueryGuard:
    """ASGI: a query parameter no route declares is refused by name (422), on every route.

    What each route declares is read from the app's own OpenAPI document, so the
    guard and the contract cannot disagree. Requests without a query string pass
    untouched.
    """

    def __init__(self, app: Any, fastapi_app: Any, routes: Any) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.routes = routes
        self._declared: dict[tuple[str, str], list[str]] | None = None

    def _declared_for(self, method: str, template: str) -> list[str] | None:
        if self._declared is None:
            converters = {}
            for _, path in self.routes.templates():
                converters[path.replace(":path}", "}")] = path
            declared: dict[tuple[str, str], list[str]] = {}
            for path, operations in self.fastapi_app.openapi().get("paths", {}).items():
                for verb, operation in operations.items():
                    names = [p["name"] for p in operation.get("parameters", ()) if p.get("in") == "query"]
                    declared[(verb.upper(), converters.get(path, path))] = names
            self._declared = declared
        return self._declared.get((method, template))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            method = "GET" if scope["method"] == "HEAD" else scope["method"]
            template = self.routes.match(method, scope["path"])
            known = self._declared_for(method, template) if template is not None else None
            if known is not None:
                from urllib.parse import parse_qsl

                for name, _ in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
                    if name not in known:
                        close = difflib.get_close_matches(name, known, n=1)
                        hint = f"; did you mean {close[0]}?" if close else ""
                        listed = ", ".join(known) or "none"
                        error = Invalid(name, f"unknown query parameter{hint} (this route takes: {listed})")
                        await send_error(send, error.http_status, error.to_dict())
                        return
        await self.app(scope, receive, send)
