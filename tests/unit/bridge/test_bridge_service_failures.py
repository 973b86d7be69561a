"""Tools that end badly, and values that cannot travel: each is an answer, never a dead worker or UNKNOWN."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from google.protobuf import any_pb2

from muster.bridge import Adapter, tool
from muster.bridge.adapter import bind_arguments, tools_of
from muster.bridge.service import BridgeService
from muster.bridge.session import SessionStore
from muster.bridge.values import TYPE_URL_PREFIX, TypedValue, decode, encode
from muster.bridge.variables import validate_value
from muster.errors import Invalid


class Unruly(Adapter):
    gate: asyncio.Event  # set by the fixture: one per test, on that test's loop

    @tool
    def exits(self) -> None:
        raise SystemExit(3)

    @tool
    async def interrupted(self) -> None:
        raise KeyboardInterrupt

    @tool
    async def cancels_itself(self) -> None:
        raise asyncio.CancelledError

    @tool
    def stream_then_exit(self) -> Iterator[int]:
        yield 1
        raise SystemExit(4)

    @tool
    async def sleeps(self) -> None:
        await asyncio.sleep(30)

    @tool
    def count(self, n: int) -> int:
        return n

    @tool
    async def waits_then_writes(self) -> None:
        await self.gate.wait()
        self.context.set_variable("leak", 7)


@pytest.fixture
async def service(store: SessionStore) -> Any:
    Unruly.gate = asyncio.Event()
    with ThreadPoolExecutor(2) as executor:
        bridge = BridgeService(Unruly, store, executor=executor)
        bridge.initialize_session("s")
        yield bridge


@pytest.mark.parametrize(
    ("name", "error_type"),
    [("exits", "SystemExit"), ("interrupted", "KeyboardInterrupt"), ("cancels_itself", "CancelledError")],
)
async def test_a_tool_raising_a_base_exception_fails_the_call_only(service: Any, name: str, error_type: str) -> None:
    """SystemExit, KeyboardInterrupt or a tool's own CancelledError give success=false naming the type."""
    outcome = await service.execute_tool("s", name, {})
    assert (outcome.success, outcome.error_type) == (False, error_type)
    assert (await service.execute_tool("s", "count", {"n": TypedValue("integer", 2)})).value == 2  # still serving


async def test_a_stream_raising_system_exit_ends_with_a_failed_chunk(service: Any) -> None:
    """A streaming tool's SystemExit after one item: the item, then a failed final chunk."""
    outcomes = [o async for o in service.stream_tool("s", "stream_then_exit", {})]
    assert [(o.success, o.value, o.error_type) for o in outcomes] == [(True, 1, ""), (False, None, "SystemExit")]


async def test_cancelling_the_call_itself_still_cancels(service: Any) -> None:
    """A call cancelled from outside (the client went away) is cancelled, not turned into an answer."""
    call = asyncio.create_task(service.execute_tool("s", "sleeps", {}))
    await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


def test_values_that_nest_too_deep_or_contain_themselves_are_invalid() -> None:
    """encode of a self-containing list and decode of a float array nested 5,000 deep raise Invalid."""
    loop: list[Any] = [1.5]
    loop.append(loop)
    with pytest.raises(Invalid):
        encode(loop)
    deep = any_pb2.Any(type_url=TYPE_URL_PREFIX + "tensor", value=b"[" * 5000 + b"1.5" + b"]" * 5000)
    with pytest.raises(Invalid):
        decode(deep)


@pytest.mark.parametrize("value", [1 << 63, -(1 << 63) - 1, 1e20, 123456789012345678901234567890])
def test_integers_beyond_64_bits_are_refused(value: Any) -> None:
    """An integer variable or an integer tool parameter outside int64 is Invalid, not stored to break later."""
    with pytest.raises(Invalid) as raised:
        validate_value("big", "integer", value, {})
    assert "64-bit" in raised.value.message
    with pytest.raises(Invalid):
        bind_arguments(tools_of(Unruly)["count"], {"n": value})


def test_the_int64_bounds_themselves_are_accepted() -> None:
    """-2**63 and 2**63 - 1 are integers a variable can hold."""
    assert [validate_value("x", "integer", v, {}) for v in (-(1 << 63), (1 << 63) - 1)] == [-(1 << 63), (1 << 63) - 1]


async def test_a_running_tool_keeps_its_session_from_expiring(service: Any, store: SessionStore, clock: Any) -> None:
    """Idle expiry skips a session while a tool runs in it, and counts from the call's end."""
    call = asyncio.create_task(service.execute_tool("s", "waits_then_writes", {}))
    await asyncio.sleep(0.01)
    clock.advance(120)  # twice the idle TTL, mid-call
    assert store.expire_idle() == []
    Unruly.gate.set()
    assert (await call).success
    clock.advance(30)
    assert store.expire_idle() == []
    clock.advance(31)
    assert store.expire_idle() == ["s"]


async def test_a_tool_of_a_cleaned_up_session_cannot_write_into_its_successor(
    service: Any, store: SessionStore
) -> None:
    """Cleanup, then a new session with the same id: the old call's write fails and the new one stays empty."""
    call = asyncio.create_task(service.execute_tool("s", "waits_then_writes", {}))
    await asyncio.sleep(0.01)
    assert service.cleanup_session("s")
    service.initialize_session("s")
    Unruly.gate.set()
    outcome = await call
    assert (outcome.success, outcome.error_type) == (False, "NotFound")
    assert store.list_variables("s") == []
