"""Turn pydantic validation failures into Muster's ``Invalid`` (field name + rule)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from muster.errors import Invalid

__all__ = [
    "NO_CONTROL_CHARS",
    "PATTERN_WORDS",
    "field_name",
    "invalid_from",
    "invalid_from_errors",
    "json_syntax_error",
    "parse",
    "rule_of",
]

# Text that may hold anything printable: no control characters, NUL included, which PostgreSQL's text
# cannot hold at all. Empty allowed; add min_length where a value is required.
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"

_STARTS = ", starting with a letter or digit"

# What each pattern a request is checked against allows, in words: an error never shows a regular
# expression. tests/unit/test_error_wording.py checks that every pattern in the contract is here.
PATTERN_WORDS: Final[Mapping[str, str]] = {
    NO_CONTROL_CHARS: "may hold any text but control characters (tab, newline, NUL and the like)",
    r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$": (
        "may hold any text, tabs and line breaks included, but no other control characters"
    ),
    r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$": "may hold letters, digits and . _ : / @ -" + _STARTS,
    r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$": "may hold letters, digits and . _ : @ / -" + _STARTS,
    r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$": "may hold letters, digits and . _ : / -" + _STARTS,
    r"^[A-Za-z0-9][A-Za-z0-9._/-]*$": "may hold letters, digits and . _ / -" + _STARTS,
    r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$": "may hold letters, digits and . _ : @ -" + _STARTS,
    r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$": "may hold letters, digits and . _ / : @ + -" + _STARTS,
    r"^[^\s~^:?*\[\\\x00-\x1f\x7f\p{Cf}]+$": (
        "must be a branch name: no spaces, control or invisible characters, nor ~ ^ : ? * [ \\"
    ),
    r"^[^\s\x00-\x1f\x7f\p{Cf}]+$": "may hold no spaces, control characters or invisible characters",
    r"^[0-9a-fA-F]+$": "must be hexadecimal digits (a commit sha)",
    r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s\x00-\x1f\x7f]+$": "must be an absolute URL (scheme://...)",
    "^[^=]+=": "must be key=value",
    r"^([1-9][0-9]{0,5})([smhdw])$": "must be a count and a unit: s, m, h, d or w (e.g. 90d)",
}

M = TypeVar("M", bound=BaseModel)


def field_name(loc: Sequence[int | str]) -> str:
    """``("body", "caps", 1)`` as ``caps[1]``: the field as the caller wrote it."""
    name = ""
    for part in (str(p) for p in loc if p not in ("body", "query", "path", "header")):
        name += f"[{part}]" if part.isdigit() else (f".{part}" if name else part)
    return name or "request"


def _plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _expected(ctx: Mapping[str, Any]) -> str:
    return str(ctx.get("expected", "")).replace("\n", " ")


_BY_KIND: Final[Mapping[str, str]] = {
    "missing": "required",
    "extra_forbidden": "is not a field of this request",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_unicode": "must be text (UTF-8)",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
    "none_required": "must be null",
}


def rule_of(error: Mapping[str, Any]) -> str:
    """One pydantic error in Muster's words: what the field must be, never a library's phrase or a regex."""
    kind = str(error.get("type", ""))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if kind in _BY_KIND:
        return _BY_KIND[kind]
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            loc = error.get("loc") or ()
            return "must not be empty" if loc and isinstance(loc[-1], int) else "required"
        return f"must be at least {_plural(ctx.get('min_length'), 'character')} long"
    if kind == "string_too_long":
        return f"must be at most {_plural(ctx.get('max_length'), 'character')} long"
    if kind == "too_short":
        return f"must have at least {_plural(ctx.get('min_length'), 'item')}"
    if kind == "too_long":
        return f"must have at most {_plural(ctx.get('max_length'), 'item')}"
    if kind == "string_pattern_mismatch":
        return PATTERN_WORDS.get(str(ctx.get("pattern")), "does not have the allowed form")
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        words = {"greater_than_equal": "at least", "greater_than": "greater than"}
        words |= {"less_than_equal": "at most", "less_than": "less than"}
        bound = next(iter(ctx.values()), "")
        return f"must be {words[kind]} {bound}"
    if kind in {"literal_error", "enum"}:
        return f"must be one of {_expected(ctx)}"
    if kind in {"value_error", "assertion_error"} and "error" in ctx:
        return str(ctx["error"])
    message = str(error.get("msg", "is not valid"))
    return "must be " + message.removeprefix("Input should be ") if message.startswith("Input should be ") else message


_AT_LINE_COLUMN = re.compile(r"at line (\d+) column (\d+)")


def json_syntax_error(line: int, column: int) -> Invalid:
    """The one way Muster says a body is not JSON."""
    return Invalid("body", f"request body is not valid JSON (line {line}, column {column})")


def invalid_from_errors(errors: Sequence[Mapping[str, Any]]) -> Invalid:
    """The first error, as ``Invalid(field, rule)``; up to three others are appended to the rule."""
    first = errors[0] if errors else {"loc": ("body",), "type": "", "msg": "is not valid"}
    rule = rule_of(first)
    if len(errors) > 1:
        rule += " (also " + "; ".join(f"{field_name(e['loc'])}: {rule_of(e)}" for e in errors[1:4]) + ")"
    return Invalid(field_name(first.get("loc") or ()), rule)


def invalid_from(exc: ValidationError) -> Invalid:
    """A model's validation failure as ``Invalid``; a JSON syntax error says where it is."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        where = _AT_LINE_COLUMN.search(str(first.get("ctx", {}).get("error", "")))
        return json_syntax_error(int(where.group(1)), int(where.group(2))) if where else json_syntax_error(1, 1)
    return invalid_from_errors(errors)


def parse(model: type[M], data: dict[str, Any]) -> M:
    """Validate ``data`` as ``model`` or raise ``Invalid`` naming the field and rule."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from None
