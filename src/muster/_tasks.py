"""Stopping background tasks without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended.

    The task's own ``CancelledError`` is expected and dropped; any other error it ended with is
    raised. If the caller is itself cancelled meanwhile (a shutdown deadline, say), that
    cancellation is raised, not absorbed: ``contextlib.suppress(CancelledError)`` around the
    await would absorb it, and a timeout around ``close()`` would then never fire.
    """
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
