"""Adapters and tools: a class whose ``@tool`` methods a remote host can run.

::

    class Maths(Adapter):
        @tool
        def add(self, a: int, b: int = 1) -> int:
            '''Add two integers.

            Args:
                a: the first term.
                b: the second term.
            '''
            return a + b

The worker makes one adapter instance per session; ``self.context`` is that
session's ``SessionContext``. Tool and parameter specs (name, type, required,
default, description) come from the signature and the docstring. Tools may be
plain functions, coroutines, generators or async generators (the last two
stream through ``ExecuteStreamingTool``).
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

from muster.bridge.values import INT64_MAX, INT64_MIN
from muster.errors import Invalid

if TYPE_CHECKING:
    from muster.bridge.context import SessionContext

__all__ = ["Adapter", "ParameterInfo", "ToolInfo", "bind_arguments", "tool", "tools_of"]

F = TypeVar("F", bound=Callable[..., Any])

_MARK: Final = "__muster_tool__"
_NO_DEFAULT: Final = inspect.Parameter.empty

_TYPE_NAMES: Final[dict[Any, str]] = {
    int: "integer",
    float: "float",
    str: "string",
    bool: "boolean",
    list: "list",
    tuple: "list",
    dict: "dict",
}


@dataclass(frozen=True, slots=True)
class ParameterInfo:
    name: str
    type: str  # integer, float, string, boolean, list, dict or any
    description: str = ""
    default: Any = _NO_DEFAULT
    nullable: bool = False

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


@dataclass(frozen=True, slots=True)
class ToolInfo:
    name: str
    description: str
    parameters: tuple[ParameterInfo, ...]
    method_name: str
    is_async: bool = False
    is_streaming: bool = False
    accepts_extra: bool = False  # the method takes **kwargs
    metadata: Mapping[str, str] = field(default_factory=dict)


@overload
def tool(function: F, /) -> F: ...
@overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...
def tool(
    function: F | None = None, /, *, name: str | None = None, description: str | None = None
) -> F | Callable[[F], F]:
    """Mark an adapter method as a tool; ``name``/``description`` override the derived ones."""

    def mark(target: F) -> F:
        setattr(target, _MARK, {"name": name, "description": description})
        return target

    return mark(function) if function is not None else mark


class Adapter:
    """Base class for tool adapters; one instance per session.

    ``context`` is set before any tool runs. Subclasses need a constructor
    that takes no arguments.
    """

    context: SessionContext

    @classmethod
    def tool_infos(cls) -> dict[str, ToolInfo]:
        return tools_of(cls)


# --- spec derivation -----------------------------------------------------------------------------

_SECTION: Final = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Yields|Raises|Examples?)\s*:\s*$")
_ARG_LINE: Final = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary paragraph and the Google-style ``Args:`` descriptions."""
    text = inspect.cleandoc(doc or "")
    lines = text.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line):
            break
        summary.append(line.strip())
    described: dict[str, str] = {}
    in_args, current, described_indent = False, None, 0
    for line in lines:
        section = _SECTION.match(line)
        if section:
            in_args, current = section.group(1) in {"Args", "Arguments", "Parameters"}, None
            continue
        if not in_args or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(line)
        if match and (current is None or indent <= described_indent):
            current, described_indent = match.group(1), indent
            described[current] = match.group(2).strip()
        elif current is not None:
            described[current] = f"{described[current]} {line.strip()}".strip()
    return " ".join(summary), described


def _type_name(annotation: Any) -> tuple[str, bool]:
    """The wire type of an annotation and whether it admits None."""
    if annotation is _NO_DEFAULT or annotation is Any:
        return "any", False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        names = {_type_name(member)[0] for member in members}
        if names == {"integer", "float"}:
            return "float", nullable
        return (names.pop() if len(names) == 1 else "any"), nullable
    if annotation is type(None):
        return "any", True
    base = origin or annotation
    if base in _TYPE_NAMES:
        return _TYPE_NAMES[base], False
    if isinstance(base, type):
        if issubclass(base, Mapping):
            return "dict", False
        if issubclass(base, list | tuple | typing.Sequence) and not issubclass(base, str):
            return "list", False
    return "any", False


def _describe(cls: type, attribute: str, method: Callable[..., Any]) -> ToolInfo:
    options: dict[str, str | None] = getattr(method, _MARK)
    summary, arg_docs = _parse_docstring(method.__doc__)
    try:
        hints = typing.get_type_hints(method)
    except Exception:  # unresolvable annotations degrade to "any"; they must not break the worker
        hints = {}
    parameters: list[ParameterInfo] = []
    accepts_extra = False
    for parameter in list(inspect.signature(method).parameters.values())[1:]:  # skip self
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_extra = True
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            raise TypeError(f"tool {cls.__name__}.{attribute}: parameters must be passable by keyword")
        type_name, nullable = _type_name(hints.get(parameter.name, _NO_DEFAULT))
        parameters.append(
            ParameterInfo(
                name=parameter.name,
                type=type_name,
                description=arg_docs.get(parameter.name, ""),
                default=parameter.default,
                nullable=nullable or parameter.default is None,
            )
        )
    is_streaming = inspect.isgeneratorfunction(method) or inspect.isasyncgenfunction(method)
    is_async = inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)
    metadata = {"async": str(is_async).lower(), "streaming": str(is_streaming).lower()}
    return ToolInfo(
        name=options.get("name") or attribute,
        description=options.get("description") or summary,
        parameters=tuple(parameters),
        method_name=attribute,
        is_async=is_async,
        is_streaming=is_streaming,
        accepts_extra=accepts_extra,
        metadata=metadata,
    )


_SPEC_CACHE: dict[type, dict[str, ToolInfo]] = {}


def tools_of(cls: type) -> dict[str, ToolInfo]:
    """Every ``@tool`` of an adapter class (inherited ones too), by tool name."""
    cached = _SPEC_CACHE.get(cls)
    if cached is not None:
        return cached
    found: dict[str, ToolInfo] = {}
    for attribute in dir(cls):
        member = inspect.getattr_static(cls, attribute, None)
        if isinstance(member, staticmethod | classmethod):
            member = member.__func__
        if callable(member) and hasattr(member, _MARK):
            info = _describe(cls, attribute, member)
            if info.name in found:
                raise TypeError(f"adapter {cls.__name__} defines tool {info.name!r} twice")
            found[info.name] = info
    _SPEC_CACHE[cls] = found
    return found


# --- argument checking ---------------------------------------------------------------------------


def _coerce(tool_name: str, parameter: ParameterInfo, value: Any) -> Any:
    if value is None and (parameter.nullable or parameter.type == "any"):
        return None
    kind = parameter.type
    if kind == "any":
        return value
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        value = int(value)  # a JavaScript client has only doubles
    ok = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "list": isinstance(value, list),
        "dict": isinstance(value, dict),
    }.get(kind, True)
    if not ok:
        raise Invalid(parameter.name, f"tool {tool_name!r} needs {kind}, got {type(value).__name__} {value!r}")
    if kind == "integer" and not INT64_MIN <= value <= INT64_MAX:
        raise Invalid(parameter.name, f"tool {tool_name!r} takes a signed 64-bit integer, got {value}")
    return float(value) if kind == "float" else value


def bind_arguments(info: ToolInfo, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Check the arguments against the tool's parameters: names, required ones, types."""
    known = {parameter.name: parameter for parameter in info.parameters}
    unknown = sorted(set(arguments) - set(known))
    if unknown and not info.accepts_extra:
        raise Invalid(unknown[0], f"tool {info.name!r} has no such parameter (has: {', '.join(known) or 'none'})")
    bound: dict[str, Any] = {}
    for name, value in arguments.items():
        bound[name] = _coerce(info.name, known[name], value) if name in known else value
    missing = [parameter.name for parameter in info.parameters if parameter.required and parameter.name not in bound]
    if missing:
        raise Invalid(missing[0], f"tool {info.name!r} needs this required parameter")
    return bound
