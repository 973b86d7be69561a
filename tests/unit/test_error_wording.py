"""Every validation error reads in Muster's words: no library phrases, no regular expressions."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError

import muster
from muster.validation import PATTERN_WORDS, invalid_from, rule_of

# What pydantic and FastAPI say in their own words, and the marks of a regular expression.
LIBRARY_PHRASES = re.compile(
    r"Input should|String should|List should|Dictionary should|Value error|Assertion failed|Field required"
    r"|Extra inputs|should match pattern|\[A-Z|\[\^|\\x|\]\*|\]\+|\$'"
)
HOSTILE_VALUES: list[Any] = ["", " leading space", "-dash", "x\x00y", "a" * 5000, 10**20, -1, 0.5, True, None, [], {}]


def _input_models() -> Iterator[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    for info in pkgutil.walk_packages(muster.__path__, "muster."):
        if "_proto" in info.name or ".migrations" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseModel) and value.__module__.startswith("muster.") and value not in seen:
                seen.add(value)
                yield value


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def _rules(model: type[BaseModel], data: dict[str, Any]) -> list[str]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return [invalid_from(exc).message, *(rule_of(error) for error in exc.errors(include_url=False))]
    return []


def test_every_pattern_in_the_contract_has_words(runtime: Any) -> None:
    """Each pattern the HTTP contract checks (bodies, queries, paths) says in words what it allows."""
    from muster.http.app import create_app

    app = create_app(runtime)
    found = set(_patterns(get_openapi(title="t", version="1", routes=app.routes)))
    for model in _input_models():
        found |= set(_patterns(model.model_json_schema()))
    assert found, "the contract states no patterns at all"
    assert found <= set(PATTERN_WORDS), f"patterns without words: {sorted(found - set(PATTERN_WORDS))}"


def test_no_model_answers_in_a_librarys_words() -> None:
    """Missing, empty, mistyped, oversized and malformed values of every field of every model read as Muster's."""
    models = list(_input_models())
    assert len(models) >= 15
    checked = 0
    for model in models:
        fields = list(model.model_fields)
        attempts: list[dict[str, Any]] = [{}, {"no_such_field": 1}]
        attempts += [{name: value} for name in fields for value in HOSTILE_VALUES]
        attempts += [{name: [value]} for name in fields for value in ("", "-dash", "x\x00y")]
        attempts += [{name: {"k": value}} for name in fields for value in ("", "x\x00y")]
        for data in attempts:
            for rule in _rules(model, data):
                checked += 1
                assert not LIBRARY_PHRASES.search(rule), f"{model.__name__} {data!r:.80}: {rule}"
    assert checked > 1000


@pytest.mark.parametrize(
    ("error", "rule"),
    [
        ({"type": "missing", "loc": ("name",)}, "required"),
        ({"type": "string_too_short", "loc": ("name",), "ctx": {"min_length": 1}}, "required"),
        ({"type": "string_too_short", "loc": ("caps", 1), "ctx": {"min_length": 1}}, "must not be empty"),
        ({"type": "string_too_short", "loc": ("sha",), "ctx": {"min_length": 7}}, "must be at least 7 characters long"),
        ({"type": "value_error", "loc": ("x",), "ctx": {"error": ValueError("must be key=value")}},
         "must be key=value"),
        ({"type": "string_pattern_mismatch", "loc": ("name",), "ctx": {"pattern": r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"}},
         "may hold letters, digits and . _ : / @ -, starting with a letter or digit"),
        ({"type": "greater_than_equal", "loc": ("ttl_s",), "ctx": {"ge": 1}}, "must be at least 1"),
        ({"type": "extra_forbidden", "loc": ("colour",)}, "is not a field of this request"),
        ({"type": "something_new", "loc": ("x",), "msg": "Input should be a tuple"}, "must be a tuple"),
    ],
)
def test_rules_in_words(error: dict[str, Any], rule: str) -> None:
    """Each kind of failure maps to its rule, and an unknown kind still drops the library's phrasing."""
    assert rule_of(error) == rule
