"""Stopping a background task: its own cancellation is dropped, the caller's is kept."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from muster._tasks import cancel_and_wait


async def test_the_tasks_own_cancellation_is_dropped() -> None:
    """A running task is cancelled, awaited, and its CancelledError does not reach the caller."""
    task = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    await cancel_and_wait(None)  # nothing to stop


async def test_an_error_the_task_ended_with_is_raised() -> None:
    """A task that failed on its own reports its error (only CancelledError is expected)."""

    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken"):
        await cancel_and_wait(task)


async def test_the_callers_own_cancellation_is_not_absorbed() -> None:
    """A deadline around a close() that waits on a slow task still fires (suppress() would absorb it)."""
    stopped = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:  # winds down for a while, whatever cancellations come in meanwhile
            loop = asyncio.get_running_loop()
            until = loop.time() + 0.2
            while loop.time() < until:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0.01)
            stopped.set()

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await cancel_and_wait(task)
    assert stopped.is_set() and task.done()


async def test_a_cancellation_swallowed_by_the_stopped_task_still_reaches_the_caller() -> None:
    """Our cancel is passed on to the task we wait for; if it swallows it and returns, we raise it anyway."""

    async def swallows() -> None:
        for _ in range(2):  # the stop request, then the caller's deadline: both absorbed
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    task = asyncio.create_task(swallows())
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await cancel_and_wait(task)
    assert task.done() and not task.cancelled()


async def test_cleanup_after_a_cancellation_goes_on_past_each_stopped_task() -> None:
    """In a finally block of a cancelled task, stopping one background task does not end the cleanup."""
    cleaned: list[str] = []

    async def service() -> None:
        first = asyncio.create_task(asyncio.sleep(3600))
        second = asyncio.create_task(asyncio.sleep(3600))
        try:
            await asyncio.sleep(3600)
        finally:
            await cancel_and_wait(first)
            cleaned.append("first")
            await cancel_and_wait(second)
            cleaned.append("second")

    task = asyncio.create_task(service())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["first", "second"]
