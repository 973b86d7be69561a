"""An example adapter: one of each kind of tool. Used by the tests, the docs and the benchmark.

Run it::

    python -m muster.bridge --port 0 --adapter muster.bridge.examples.ExampleAdapter
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from muster.bridge.adapter import Adapter, tool

__all__ = ["ExampleAdapter"]


class ExampleAdapter(Adapter):
    """Small tools that show what an adapter can do."""

    @tool
    def echo(self, value: Any) -> Any:
        """Return the value unchanged.

        Args:
            value: anything JSON can carry.
        """
        return value

    @tool
    async def echo_async(self, value: Any) -> Any:
        """Return the value unchanged, from a coroutine on the event loop."""
        return value

    @tool
    def add(self, a: int, b: int = 1) -> int:
        """Add two integers.

        Args:
            a: the first term.
            b: the second term.
        """
        return a + b

    @tool
    def scale(self, values: list[float], factor: float = 2.0) -> list[float]:
        """Multiply every number by a factor (a sync tool, run in a worker thread)."""
        return [value * factor for value in values]

    @tool
    async def slow_add(self, a: int, b: int, delay_s: float = 0.01) -> int:
        """Add two integers after sleeping (an async tool)."""
        await asyncio.sleep(delay_s)
        return a + b

    @tool
    def fail(self, message: str = "boom") -> None:
        """Raise ValueError(message): shows how a failing tool is reported."""
        raise ValueError(message)

    @tool
    def count(self, n: int) -> Iterator[int]:
        """Yield 0..n-1 (a streaming sync generator)."""
        yield from range(n)

    @tool
    async def tokens(self, text: str, fail_after: int | None = None) -> AsyncIterator[str]:
        """Stream the words of a text (an async generator); optionally raise after some.

        Args:
            text: the text to split on whitespace.
            fail_after: raise RuntimeError after this many words.
        """
        for index, word in enumerate(text.split()):
            if fail_after is not None and index >= fail_after:
                raise RuntimeError(f"stopped after {fail_after} words")
            await asyncio.sleep(0)
            yield word

    @tool
    def remember(self, name: str, value: Any) -> Any:
        """Write a session variable from tool code (the update is marked PYTHON)."""
        self.context.set_variable(name, value)
        return self.context.get_variable(name)

    @tool
    async def bump(self, name: str, by: int = 1) -> int:
        """Add to an integer variable from an async tool; returns the new value."""
        value = int(self.context.get_variable(name)) + by
        self.context.set_variable(name, value)
        return value

    @tool(name="session_info")
    def describe_session(self) -> dict[str, Any]:
        """The session's id, metadata and variable names, and the worker's pid."""
        return {
            "pid": os.getpid(),
            "session_id": self.context.session_id,
            "metadata": self.context.metadata,
            "variables": sorted(self.context.variables()),
        }
