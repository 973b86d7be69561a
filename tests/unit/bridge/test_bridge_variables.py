"""Variable types and constraints: what is accepted, what is refused, and how the refusal reads."""

from __future__ import annotations

import math
from typing import Any

import pytest

from muster.bridge.variables import VARIABLE_TYPES, parse_constraints, validate_value
from muster.errors import Invalid


def check(type_name: str, value: Any, constraints: str = "") -> Any:
    return validate_value("var", type_name, value, parse_constraints("var", type_name, constraints))


ACCEPTED = [
    ("float", 1, "", 1.0),
    ("float", 0.5, '{"min": 0, "max": 1}', 0.5),
    ("float", math.inf, "", math.inf),
    ("integer", 3, '{"min": 0, "max": 3}', 3),
    ("integer", 4.0, "", 4),
    ("string", "abc", '{"min_length": 1, "max_length": 3, "pattern": "^a", "enum": ["abc"]}', "abc"),
    ("boolean", False, "", False),
    ("choice", "b", '{"choices": ["a", "b"]}', "b"),
    ("module", "dspy.Predict", '{"allowed_modules": ["dspy.Predict"]}', "dspy.Predict"),
    ("embedding", [1, 2.5], '{"dimensions": 2}', [1.0, 2.5]),
    ("tensor", {"shape": [2, 2], "data": [1, 2, 3, 4]}, '{"shape": [2, -1]}', {"shape": [2, 2], "data": [1, 2, 3, 4]}),
    ("tensor", {"shape": [2, 1], "data": [[1], [2]]}, '{"shape": [null, 1]}', {"shape": [2, 1], "data": [[1], [2]]}),
]


@pytest.mark.parametrize(("type_name", "value", "constraints", "expected"), ACCEPTED)
def test_valid_values_are_accepted_and_normalised(type_name: str, value: Any, constraints: str, expected: Any) -> None:
    """A value that fits its type and constraints is accepted, normalised for its type."""
    actual = check(type_name, value, constraints)
    assert (expected, type(expected)) == (actual, type(actual))


REFUSED = [
    ("float", "1", "", "type float needs a number"),
    ("float", True, "", "type float needs a number"),
    ("float", -0.1, '{"min": 0}', "min is 0"),
    ("float", 1.1, '{"max": 1}', "max is 1"),
    ("float", math.nan, '{"max": 1}', "NaN is outside"),
    ("integer", 1.5, "", "type integer needs a whole number"),
    ("integer", True, "", "type integer needs a whole number"),
    ("integer", -1, '{"min": 0}', "min is 0"),
    ("integer", 11, '{"max": 10}', "max is 10"),
    ("string", 3, "", "type string needs a string"),
    ("string", "", '{"min_length": 1}', "min_length is 1"),
    ("string", "abcd", '{"max_length": 3}', "max_length is 3"),
    ("string", "xyz", '{"pattern": "^a"}', "pattern '^a' does not match"),
    ("string", "c", '{"enum": ["a", "b"]}', "enum allows"),
    ("boolean", 1, "", "type boolean needs true or false"),
    ("choice", "c", '{"choices": ["a", "b"]}', "choices are"),
    ("choice", 1, '{"choices": ["a"]}', "type choice needs a string"),
    ("module", "not a module", "", "type module needs a dotted name"),
    ("module", "os.path", '{"allowed_modules": ["dspy.Predict"]}', "allowed_modules are"),
    ("embedding", [1, "x"], "", "type embedding needs a list of numbers"),
    ("embedding", [1.0], '{"dimensions": 2}', "dimensions is 2, got 1"),
    ("tensor", [1, 2], "", "type tensor needs an object"),
    ("tensor", {"shape": [2, 2], "data": [1, 2, 3]}, "", "tensor data does not match shape [2, 2]"),
    ("tensor", {"shape": [2], "data": [[1], [2]]}, "", "tensor data does not match shape [2]"),
    ("tensor", {"shape": [-1], "data": []}, "", "tensor shape must be a list of non-negative integers"),
    ("tensor", {"shape": [3], "data": [1, 2, 3]}, '{"shape": [2]}', "shape is [2], got [3]"),
]


@pytest.mark.parametrize(("type_name", "value", "constraints", "rule"), REFUSED)
def test_bad_values_are_refused_naming_variable_and_rule(
    type_name: str, value: Any, constraints: str, rule: str
) -> None:
    """A value that breaks its type or a constraint is Invalid; the message names the variable and the rule."""
    with pytest.raises(Invalid) as caught:
        check(type_name, value, constraints)
    assert caught.value.field == "var"
    assert str(caught.value).startswith("var: ")
    assert rule in str(caught.value)


BAD_CONSTRAINTS = [
    ("integer", '{"min_length": 1}', "constraint 'min_length' does not apply to type integer"),
    ("float", '{"min": 2, "max": 1}', "'min' must not exceed 'max'"),
    ("float", '{"min": "0"}', "'min' must be a number"),
    ("string", '{"pattern": "("}', "not a valid regular expression"),
    ("string", '{"max_length": -1}', "must be a non-negative integer"),
    ("choice", "", "'choices' is required"),
    ("choice", '{"choices": [1]}', "'choices' must be a list of strings"),
    ("tensor", '{"shape": "2x2"}', "'shape' must be a list of sizes"),
    ("embedding", "[1]", "must be a JSON object"),
    ("embedding", "{", "not valid JSON"),
    ("vector", "", "unknown type 'vector'"),
]


@pytest.mark.parametrize(("type_name", "constraints", "rule"), BAD_CONSTRAINTS)
def test_bad_constraints_are_refused(type_name: str, constraints: str, rule: str) -> None:
    """Malformed or misplaced constraints are Invalid at declaration, naming the variable and the rule."""
    with pytest.raises(Invalid) as caught:
        parse_constraints("var", type_name, constraints)
    assert caught.value.field == "var"
    assert rule in str(caught.value)


def test_every_type_is_covered_by_the_acceptance_cases() -> None:
    """The acceptance table exercises each of the eight types."""
    assert set(VARIABLE_TYPES) == {case[0] for case in ACCEPTED}
