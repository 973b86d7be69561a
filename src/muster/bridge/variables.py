"""Session variables: the eight types, their constraints, and validation (pure).

Every refusal is an ``Invalid`` whose field is the variable's name and whose
rule says which type rule or constraint the value broke, so the message reads
``temperature: max is 2.0, got 3.5``.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

import orjson

from muster.bridge.values import INT64_MAX, INT64_MIN
from muster.errors import Invalid

__all__ = [
    "CONSTRAINT_KEYS",
    "VARIABLE_TYPES",
    "Source",
    "Variable",
    "parse_constraints",
    "validate_value",
]

VARIABLE_TYPES: Final = ("float", "integer", "string", "boolean", "choice", "module", "embedding", "tensor")

CONSTRAINT_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "float": frozenset({"min", "max"}),
    "integer": frozenset({"min", "max"}),
    "string": frozenset({"min_length", "max_length", "pattern", "enum"}),
    "boolean": frozenset(),
    "choice": frozenset({"choices"}),
    "module": frozenset({"allowed_modules"}),
    "embedding": frozenset({"dimensions"}),
    "tensor": frozenset({"shape"}),
}

_MODULE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class Source(enum.IntEnum):
    """Who wrote a value; the names and numbers are the proto's ``Variable.Source``."""

    ELIXIR = 0  # the remote host: any gRPC client
    PYTHON = 1  # tool code running in the worker


@dataclass(frozen=True, slots=True)
class Variable:
    """One typed variable of a session, as stored (immutable; updates replace it)."""

    id: str
    name: str
    type: str
    value: Any
    constraints: Mapping[str, Any]
    last_updated_at: datetime
    source: Source = Source.ELIXIR
    metadata: Mapping[str, str] = field(default_factory=dict)
    version: int = 1

    @property
    def constraints_json(self) -> str:
        return orjson.dumps(dict(self.constraints)).decode() if self.constraints else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fail(name: str, rule: str) -> Invalid:
    return Invalid(name, rule)


# --- constraints ---------------------------------------------------------------------------------


def _check_constraint_shapes(name: str, type_name: str, constraints: Mapping[str, Any]) -> None:
    def need(ok: bool, rule: str) -> None:
        if not ok:
            raise _fail(name, f"constraint {rule}")

    for key in ("min", "max"):
        if key in constraints:
            need(_is_number(constraints[key]), f"{key!r} must be a number")
    if "min" in constraints and "max" in constraints:
        need(constraints["min"] <= constraints["max"], "'min' must not exceed 'max'")
    for key in ("min_length", "max_length", "dimensions"):
        if key in constraints:
            need(_is_int(constraints[key]) and constraints[key] >= 0, f"{key!r} must be a non-negative integer")
    if "pattern" in constraints:
        need(isinstance(constraints["pattern"], str), "'pattern' must be a string")
        try:
            _compiled(constraints["pattern"])
        except re.error as exc:
            raise _fail(name, f"constraint 'pattern' is not a valid regular expression: {exc}") from exc
    for key in ("enum", "choices", "allowed_modules"):
        if key in constraints:
            items = constraints[key]
            need(
                isinstance(items, list) and all(isinstance(item, str) for item in items),
                f"{key!r} must be a list of strings",
            )
    if "shape" in constraints:
        shape = constraints["shape"]
        need(
            isinstance(shape, list) and all(d is None or (_is_int(d) and d >= -1) for d in shape),
            "'shape' must be a list of sizes (-1 or null for any)",
        )
    if type_name == "choice":
        need(bool(constraints.get("choices")), "'choices' is required for a choice variable")


def parse_constraints(name: str, type_name: str, constraints_json: str) -> dict[str, Any]:
    """Parse and check ``constraints_json`` for a variable of ``type_name``."""
    if type_name not in CONSTRAINT_KEYS:
        raise _fail(name, f"unknown type {type_name!r}; expected one of {', '.join(VARIABLE_TYPES)}")
    if not constraints_json.strip():
        constraints: Any = {}
    else:
        try:
            constraints = orjson.loads(constraints_json)
        except orjson.JSONDecodeError as exc:
            raise _fail(name, f"constraints_json is not valid JSON: {exc}") from exc
    if not isinstance(constraints, dict):
        raise _fail(name, "constraints_json must be a JSON object")
    unknown = sorted(set(constraints) - CONSTRAINT_KEYS[type_name])
    if unknown:
        allowed = ", ".join(sorted(CONSTRAINT_KEYS[type_name])) or "none"
        raise _fail(name, f"constraint {unknown[0]!r} does not apply to type {type_name} (allowed: {allowed})")
    _check_constraint_shapes(name, type_name, constraints)
    return constraints


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# --- values --------------------------------------------------------------------------------------


def _check_range(name: str, value: float, constraints: Mapping[str, Any]) -> None:
    if math.isnan(value) and ("min" in constraints or "max" in constraints):
        raise _fail(name, "NaN is outside any min/max range")
    if "min" in constraints and value < constraints["min"]:
        raise _fail(name, f"min is {constraints['min']}, got {value}")
    if "max" in constraints and value > constraints["max"]:
        raise _fail(name, f"max is {constraints['max']}, got {value}")


def _validate_float(name: str, value: Any, constraints: Mapping[str, Any]) -> float:
    if not _is_number(value):
        raise _fail(name, f"type float needs a number, got {type(value).__name__}")
    number = float(value)
    _check_range(name, number, constraints)
    return number


def _validate_integer(name: str, value: Any, constraints: Mapping[str, Any]) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a client that only has doubles (JavaScript) may send 3.0
    if not _is_int(value):
        raise _fail(name, f"type integer needs a whole number, got {value!r}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise _fail(name, f"type integer holds a signed 64-bit integer, got {value}")
    _check_range(name, value, constraints)
    return int(value)


def _validate_string(name: str, value: Any, constraints: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        raise _fail(name, f"type string needs a string, got {type(value).__name__}")
    if "min_length" in constraints and len(value) < constraints["min_length"]:
        raise _fail(name, f"min_length is {constraints['min_length']}, got length {len(value)}")
    if "max_length" in constraints and len(value) > constraints["max_length"]:
        raise _fail(name, f"max_length is {constraints['max_length']}, got length {len(value)}")
    if "pattern" in constraints and _compiled(constraints["pattern"]).search(value) is None:
        raise _fail(name, f"pattern {constraints['pattern']!r} does not match {value!r}")
    if "enum" in constraints and value not in constraints["enum"]:
        raise _fail(name, f"enum allows {constraints['enum']}, got {value!r}")
    return value


def _validate_boolean(name: str, value: Any, constraints: Mapping[str, Any]) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, f"type boolean needs true or false, got {value!r}")
    return value


def _validate_choice(name: str, value: Any, constraints: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        raise _fail(name, f"type choice needs a string, got {type(value).__name__}")
    if value not in constraints.get("choices", ()):
        raise _fail(name, f"choices are {constraints.get('choices', [])}, got {value!r}")
    return value


def _validate_module(name: str, value: Any, constraints: Mapping[str, Any]) -> str:
    if not isinstance(value, str) or _MODULE_NAME.fullmatch(value) is None:
        raise _fail(name, f"type module needs a dotted name such as 'dspy.Predict', got {value!r}")
    if "allowed_modules" in constraints and value not in constraints["allowed_modules"]:
        raise _fail(name, f"allowed_modules are {constraints['allowed_modules']}, got {value!r}")
    return value


def _validate_embedding(name: str, value: Any, constraints: Mapping[str, Any]) -> list[float]:
    if not isinstance(value, list | tuple) or not all(_is_number(item) for item in value):
        raise _fail(name, "type embedding needs a list of numbers")
    if "dimensions" in constraints and len(value) != constraints["dimensions"]:
        raise _fail(name, f"dimensions is {constraints['dimensions']}, got {len(value)}")
    return [float(item) for item in value]


def _tensor_data_matches(data: Any, shape: list[int]) -> bool:
    """Nested lists whose lengths follow ``shape``, numbers at the leaves."""
    if not shape:
        return _is_number(data)
    if not isinstance(data, list) or len(data) != shape[0]:
        return False
    return all(_tensor_data_matches(item, shape[1:]) for item in data)


def _validate_tensor(name: str, value: Any, constraints: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != {"shape", "data"}:
        raise _fail(name, 'type tensor needs an object {"shape": [...], "data": [...]}')
    shape, data = value["shape"], value["data"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise _fail(name, "tensor shape must be a list of non-negative integers")
    size = math.prod(shape)
    flat = isinstance(data, list) and len(data) == size and all(_is_number(item) for item in data)
    if not (flat or _tensor_data_matches(data, shape)):
        raise _fail(name, f"tensor data does not match shape {shape} ({size} numbers, flat or nested)")
    if "shape" in constraints:
        wanted = constraints["shape"]
        fits = len(wanted) == len(shape) and all(w in (None, -1, d) for w, d in zip(wanted, shape, strict=True))
        if not fits:
            raise _fail(name, f"shape is {wanted}, got {shape}")
    return {"shape": list(shape), "data": data}


_VALIDATORS: Final[dict[str, Callable[[str, Any, Mapping[str, Any]], Any]]] = {
    "float": _validate_float,
    "integer": _validate_integer,
    "string": _validate_string,
    "boolean": _validate_boolean,
    "choice": _validate_choice,
    "module": _validate_module,
    "embedding": _validate_embedding,
    "tensor": _validate_tensor,
}


def validate_value(name: str, type_name: str, value: Any, constraints: Mapping[str, Any]) -> Any:
    """The value normalised for its type (ints for integer, floats for float), or ``Invalid``."""
    validator = _VALIDATORS.get(type_name)
    if validator is None:
        raise _fail(name, f"unknown type {type_name!r}; expected one of {', '.join(VARIABLE_TYPES)}")
    return validator(name, value, constraints)
