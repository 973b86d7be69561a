"""Self-preservation: when too much of the fleet falls silent at once, suspect Muster's own network.

A fleet does not usually lose half its instances within one TTL; a partition between Muster and the
fleet, or a Muster replica cut off from heartbeats, looks exactly like that. So when the monitor would
take down more than ``threshold`` of the live instances within one TTL window (the instances marked
down in that window, plus those it would mark now, over the instances live at its start), it evicts
nobody: no ``service_down``, no deregistration, and discovery keeps answering the last known live
set. It says so (``catalog.self_preservation`` with ``state: entered``) and says again when the share
falls back to the threshold or below (``state: left``), after which the silent ones are judged as usual.

Only while at least ``min_instances`` are live, so that a small fleet behaves as if it were off.
``threshold`` 0 turns it off. Pure logic on a clock the caller passes in (unit-tested with a fake one).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["Assessment", "SelfPreservation"]

Change = Literal["entered", "left"] | None


@dataclass(frozen=True, slots=True)
class Assessment:
    protect: bool  # evict nobody this sweep
    change: Change  # whether this sweep entered or left self-preservation
    population: int  # instances live at the window's start
    at_risk: int  # marked down in the window, and about to be
    share: float


@dataclass
class SelfPreservation:
    threshold: float = 0.5
    min_instances: int = 10
    active: bool = False
    _recent: deque[tuple[datetime, int]] = field(default_factory=deque)

    def assess(self, now: datetime, *, live: int, evicting: int, window_s: float) -> Assessment:
        """Decide for one sweep: ``live`` instances not down now (those about to go included),
        ``evicting`` the ones this sweep would mark down, ``window_s`` one TTL."""
        while self._recent and self._recent[0][0] <= now - timedelta(seconds=window_s):
            self._recent.popleft()
        recent = sum(count for _, count in self._recent)
        population = live + recent
        at_risk = recent + evicting
        share = at_risk / population if population else 0.0
        protect = self.threshold > 0 and population >= self.min_instances and evicting > 0 and share > self.threshold
        change: Change
        if self.active and not protect and share <= self.threshold:
            self.active, change = False, "left"
        elif protect and not self.active:
            self.active, change = True, "entered"
        else:
            change = None
        return Assessment(protect or (self.active and evicting > 0), change, population, at_risk, share)

    def record(self, now: datetime, marked_down: int) -> None:
        """The sweep marked ``marked_down`` instances down: they count against the window."""
        if marked_down:
            self._recent.append((now, marked_down))
