"""Shape limits come from MUSTER_<NAME> when given, else their default; anything else is refused by name."""

from __future__ import annotations

import pytest

from muster.limits import shape_limit


def test_default_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable (or an empty one): the default."""
    monkeypatch.delenv("MUSTER_MAX_THINGS", raising=False)
    assert 64 == shape_limit("MAX_THINGS", 64, ceiling=1000)
    monkeypatch.setenv("MUSTER_MAX_THINGS", " ")
    assert 64 == shape_limit("MAX_THINGS", 64, ceiling=1000)


def test_value_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole number within range is taken."""
    monkeypatch.setenv("MUSTER_MAX_THINGS", "1000")
    assert 1000 == shape_limit("MAX_THINGS", 64, ceiling=1000)


@pytest.mark.parametrize("text", ["0", "1001", "-3", "2.5", "many", "١٢"])
def test_bad_values_name_the_variable_and_the_range(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """Zero, over the ceiling, negative, fractional, words and non-ASCII digits are refused, naming the variable."""
    monkeypatch.setenv("MUSTER_MAX_THINGS", text)
    with pytest.raises(ValueError, match=r"MUSTER_MAX_THINGS: must be a whole number from 1 to 1,000"):
        shape_limit("MAX_THINGS", 64, ceiling=1000)
