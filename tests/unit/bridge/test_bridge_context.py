"""SessionContext: tool code reading and writing variables, on the loop and from threads."""

from __future__ import annotations

import asyncio

import pytest

from muster.bridge.context import SessionContext
from muster.bridge.session import SessionStore
from muster.bridge.values import TypedValue
from muster.bridge.variables import Source, Variable
from muster.errors import NotFound


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def make_context(store: SessionStore, ticks: Ticks | None = None) -> SessionContext:
    session, _ = store.initialize("s")
    return SessionContext(store, session, asyncio.get_running_loop(), monotonic=ticks or Ticks())


async def test_writes_are_marked_python(store: SessionStore) -> None:
    """A variable written by tool code is stored with source PYTHON."""
    context = await make_context(store)
    context.set_variable("x", 3)
    assert (store.get_variable("s", "x").value, store.get_variable("s", "x").source) == (3, Source.PYTHON)


async def test_cached_reads_never_go_stale(store: SessionStore) -> None:
    """A read after a host update sees the new value even within the cache TTL."""
    context = await make_context(store)
    context.set_variable("x", 1)
    assert context.get_variable("x") == 1
    store.set_variable("s", "x", TypedValue("integer", 2))
    assert context["x"] == 2


class CountingStore(SessionStore):
    reads = 0

    def get_variable(self, session_id: str, ref: str) -> Variable:
        self.reads += 1
        return super().get_variable(session_id, ref)


async def test_cache_serves_repeated_reads() -> None:
    """An unchanged variable is read from the store once per cache TTL, not on every access."""
    ticks = Ticks()
    store = CountingStore()
    context = await make_context(store, ticks)
    context.set_variable("x", 1)
    values = [context.get_variable("x") for _ in range(3)]
    reads_while_fresh = store.reads
    ticks.now = 2.0
    values.append(context.get_variable("x"))
    assert (values, reads_while_fresh, store.reads) == ([1, 1, 1, 1], 0, 1)


async def test_sync_tools_reach_the_store_from_a_thread(store: SessionStore) -> None:
    """Calls from a worker thread hop onto the loop and return the store's answer."""
    context = await make_context(store)

    def tool_body() -> object:
        context.set_variable("y", "from a thread")
        return context.get_variable("y", bypass_cache=True)

    assert await asyncio.to_thread(tool_body) == "from a thread"


async def test_missing_variables_raise_not_found(store: SessionStore) -> None:
    """Reading a variable that does not exist raises NotFound."""
    context = await make_context(store)
    with pytest.raises(NotFound):
        context.get_variable("missing")


async def test_register_and_list(store: SessionStore) -> None:
    """Tool code can declare typed variables and list the session's values."""
    context = await make_context(store)
    context.register_variable("mode", "choice", "a", constraints={"choices": ["a", "b"]})
    context.set_variable("n", 1)
    assert context.variables() == {"mode": "a", "n": 1}
    assert context.describe("mode").type == "choice"
