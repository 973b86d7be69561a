"""The bridge: Python tools and typed session variables served over snakepit's gRPC protocol.

::

    from muster.bridge import Adapter, tool, Worker

    class Maths(Adapter):
        @tool
        def add(self, a: int, b: int = 1) -> int:
            '''Add two integers.'''
            return a + b

    async with Worker(Maths) as worker:
        assert 3 == await worker.call("add", a=1, b=2)

See docs/bridge.md.
"""

from muster.bridge.adapter import Adapter, tool
from muster.bridge.context import SessionContext
from muster.bridge.worker import ToolFailed, Worker, WorkerPool

__all__ = ["Adapter", "SessionContext", "ToolFailed", "Worker", "WorkerPool", "tool"]
