"""Turn pydantic validation failures into Muster's ``Invalid`` (field name + rule)."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from muster.errors import Invalid

__all__ = ["NO_CONTROL_CHARS", "invalid_from", "json_syntax_error", "parse"]

# Text that may hold anything printable: no control characters, NUL included, which PostgreSQL's text
# cannot hold at all. Empty allowed; add min_length where a value is required.
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"

M = TypeVar("M", bound=BaseModel)


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    name = ""
    for part in parts:
        name += f"[{part}]" if part.isdigit() else (f".{part}" if name else part)
    return name or "request"


_AT_LINE_COLUMN = re.compile(r"at line (\d+) column (\d+)")


def json_syntax_error(line: int, column: int) -> Invalid:
    """The one way Muster says a body is not JSON."""
    return Invalid("body", f"request body is not valid JSON (line {line}, column {column})")


def invalid_from(exc: ValidationError) -> Invalid:
    """The first error, as ``Invalid(field, rule)``; the others are appended to the rule."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        where = _AT_LINE_COLUMN.search(str(first.get("ctx", {}).get("error", "")))
        return json_syntax_error(int(where.group(1)), int(where.group(2))) if where else json_syntax_error(1, 1)
    rule = str(first["msg"])
    if len(errors) > 1:
        others = "; ".join(f"{_field_name(tuple(e['loc']))}: {e['msg']}" for e in errors[1:4])
        rule = f"{rule} (also {others})"
    return Invalid(_field_name(tuple(first["loc"])), rule)


def parse(model: type[M], data: dict[str, Any]) -> M:
    """Validate ``data`` as ``model`` or raise ``Invalid`` naming the field and rule."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from None
