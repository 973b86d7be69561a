"""Tool specs from signatures and docstrings, and argument checking."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from muster.bridge import Adapter, tool
from muster.bridge.adapter import bind_arguments, tools_of
from muster.bridge.examples import ExampleAdapter
from muster.errors import Invalid


class Sample(Adapter):
    @tool
    def search(self, query: str, limit: int = 10, ratio: float | None = None, tags: list[str] | None = None) -> Any:
        """Search the index.

        Longer explanation that is not the summary.

        Args:
            query: what to look for,
                over two lines.
            limit (int): how many hits.
        """

    @tool(name="renamed", description="Explicit description.")
    async def original(self, flag: bool, options: dict[str, Any], anything: Any) -> None:
        """Ignored summary."""

    @tool
    def stream(self, n: int) -> Iterator[int]:
        yield from range(n)

    @tool
    async def astream(self) -> AsyncIterator[int]:
        yield 1

    @tool
    def loose(self, a: int, **extra: Any) -> None:
        """Takes extra keyword arguments."""

    def not_a_tool(self) -> None:
        """Plain methods are not exposed."""


def test_only_marked_methods_are_tools() -> None:
    """Exactly the @tool methods are tools, under their (possibly overridden) names."""
    assert {"search", "renamed", "stream", "astream", "loose"} == set(tools_of(Sample))


def test_parameter_specs_come_from_the_signature_and_docstring() -> None:
    """Types, required flags, defaults and descriptions are derived from signature and docstring."""
    info = tools_of(Sample)["search"]
    actual = [(p.name, p.type, p.required, p.description) for p in info.parameters]
    expected = [
        ("query", "string", True, "what to look for, over two lines."),
        ("limit", "integer", False, "how many hits."),
        ("ratio", "float", False, ""),
        ("tags", "list", False, ""),
    ]
    assert expected == actual
    assert (info.parameters[1].default, info.description) == (10, "Search the index.")


def test_decorator_options_override_name_and_description() -> None:
    """@tool(name=..., description=...) wins over the method name and docstring."""
    info = tools_of(Sample)["renamed"]
    assert (info.description, info.method_name) == ("Explicit description.", "original")
    assert [p.type for p in info.parameters] == ["boolean", "dict", "any"]


def test_kinds_of_tools_are_recorded_in_metadata() -> None:
    """Async and streaming tools are flagged in the spec metadata."""
    tools = tools_of(Sample)
    actual = {name: (tools[name].metadata["async"], tools[name].metadata["streaming"]) for name in tools}
    expected = {
        "search": ("false", "false"),
        "renamed": ("true", "false"),
        "stream": ("false", "true"),
        "astream": ("true", "true"),
        "loose": ("false", "false"),
    }
    assert expected == actual


def test_example_adapter_tools() -> None:
    """The bundled example adapter exposes its documented tools."""
    expected = {
        "add", "bump", "count", "echo", "echo_async", "fail", "remember", "scale", "session_info", "slow_add",
        "tokens",
    }  # fmt: skip
    assert expected == set(tools_of(ExampleAdapter))


def test_arguments_are_checked_and_coerced() -> None:
    """Integral floats become ints, ints become floats for float parameters, None fits optional ones."""
    bound = bind_arguments(tools_of(Sample)["search"], {"query": "q", "limit": 3.0, "ratio": 1, "tags": None})
    assert bound == {"query": "q", "limit": 3, "ratio": 1.0, "tags": None}
    assert (int, float) == (type(bound["limit"]), type(bound["ratio"]))


@pytest.mark.parametrize(
    ("arguments", "field", "rule"),
    [
        ({}, "query", "needs this required parameter"),
        ({"query": 1}, "query", "needs string, got int"),
        ({"query": "q", "limit": "3"}, "limit", "needs integer, got str"),
        ({"query": "q", "limit": True}, "limit", "needs integer, got bool"),
        ({"query": "q", "nope": 1}, "nope", "has no such parameter"),
    ],
)
def test_bad_arguments_are_refused(arguments: dict[str, Any], field: str, rule: str) -> None:
    """Missing, mistyped and unknown arguments are Invalid, naming the parameter and the rule."""
    with pytest.raises(Invalid) as caught:
        bind_arguments(tools_of(Sample)["search"], arguments)
    assert field == caught.value.field
    assert rule in str(caught.value)


def test_var_keyword_tools_accept_extra_arguments() -> None:
    """A tool with **kwargs takes arguments it does not name."""
    assert bind_arguments(tools_of(Sample)["loose"], {"a": 1, "b": "x"}) == {"a": 1, "b": "x"}


def test_positional_only_parameters_are_rejected() -> None:
    """A tool that cannot be called by keyword is a definition error."""

    class Bad(Adapter):
        @tool
        def f(self, a: int, /) -> None: ...

    with pytest.raises(TypeError, match="passable by keyword"):
        tools_of(Bad)
