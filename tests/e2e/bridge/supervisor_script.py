"""A supervisor process for the orphan test: start a Worker, print its pid, wait to be killed."""

from __future__ import annotations

import asyncio

from muster.bridge import Worker


async def main() -> None:
    async with Worker("muster.bridge.examples.ExampleAdapter") as worker:
        print(worker.pid, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
