"""Stopping background tasks without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended.

    The task's own ``CancelledError`` is expected and dropped; any other error it ended with is
    raised. If the caller is itself cancelled *while waiting here* (a shutdown deadline, say),
    that cancellation is raised, not absorbed: ``contextlib.suppress(CancelledError)`` around the
    await would absorb it, and a timeout around ``close()`` would then never fire. A caller that
    is already cleaning up after a cancellation (a ``finally`` block) is not stopped by it.
    """
    if task is None:
        return
    current = asyncio.current_task()
    requested = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > requested:
            raise
    else:  # a cancel of ours is passed on to the task we await; if that task swallowed it, raise it here
        if current is not None and current.cancelling() > requested:
            raise asyncio.CancelledError
