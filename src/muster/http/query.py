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
from muster.validation import parse

__all__ = ["parse_query", "query_openapi"]

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
