"""Which route template a request is for, matched before routing (for the doors' gatekeepers)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.routing import compile_path

__all__ = ["RouteTable"]


class RouteTable:
    """(method, path template) pairs, matched with the router's own path syntax; static paths by dict."""

    def __init__(self, routes: Iterable[tuple[str, str]]) -> None:
        self._static: dict[tuple[str, str], str] = {}
        self._templated: list[tuple[str, re.Pattern[str], str]] = []
        for method, template in routes:
            if "{" in template:
                self._templated.append((method, compile_path(template)[0], template))
            else:
                self._static[(method, template)] = template

    def templates(self) -> list[tuple[str, str]]:
        """Every (method, template) in the table."""
        return [*self._static, *((m, t) for m, _, t in self._templated)]

    def match(self, method: str, path: str) -> str | None:
        """The template serving ``method path``; ``None`` when no entry has this path and method."""
        found = self._static.get((method, path))
        if found is not None:
            return found
        for entry_method, pattern, template in self._templated:
            if entry_method == method and pattern.match(path):
                return template
        return None
