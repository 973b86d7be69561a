"""What a door needs to serve: the store, the hub, every context's service.

Built once per process by :mod:`muster.server` (the composition root) and
handed to the HTTP app and the gRPC server. Contexts register themselves
here; doors never construct services.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from muster.catalog.service import CatalogService
from muster.clock import Clock
from muster.config import Settings
from muster.events.hub import EventHub
from muster.store.engine import Store
from muster.store.migrate import current_revision, head_revision

__all__ = ["Runtime"]


@dataclass
class Runtime:
    settings: Settings
    store: Store
    hub: EventHub
    clock: Clock
    catalog: CatalogService
    # Later contexts (leases, graph) add their services here by name.
    contexts: dict[str, Any] = field(default_factory=dict)
    draining: bool = False
    # Doors served by other processes that have not announced themselves yet.
    doors_starting: set[str] = field(default_factory=set)
    # The bus publisher (muster.events.bus.BusPublisher), set by ``serve_doors``.
    bus: Any = None

    async def readiness(self) -> tuple[bool, str]:
        """Ready when the store answers and its schema is at the newest migration."""
        if self.draining:
            return False, "shutting down"
        if self.doors_starting:
            return False, "starting: " + ", ".join(sorted(self.doors_starting)) + " door"
        try:  # an answer within 1.5 s whatever the store does: a frozen database is "not ready"
            async with asyncio.timeout(min(1.5, self.store.timeout)):
                await self.store.ping()
                current = await current_revision(self.store)
        except TimeoutError:
            return False, "store not answering"
        except Exception as exc:
            return False, f"store unreachable: {exc.__class__.__name__}"
        head = head_revision()
        if current != head:
            return False, f"migrations not applied (at {current}, need {head})"
        return True, "ready"
