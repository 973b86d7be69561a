"""A history of operations against a cluster, and the checkers that judge it (plain Python, no I/O).

Each operation is recorded when it is invoked and when it completes, with its outcome: ``ok`` (the
server acknowledged it), ``fail`` (the server refused it: it certainly did not happen) or ``unknown``
(a timeout, a dropped connection: it may or may not have happened). Checkers only convict on what
certainly happened: an acknowledged operation and the real-time order of invocations and completions.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["ok", "fail", "unknown"]


@dataclass(slots=True)
class Op:
    kind: str
    key: str
    invoked: float
    completed: float = math.inf
    outcome: Outcome = "unknown"
    value: Any = None
    replica: int = -1
    ttl_s: float | None = None  # a reservation's own TTL, when it differs from the run's


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)

    def begin(self, kind: str, key: str, invoked: float, replica: int) -> Op:
        op = Op(kind, key, invoked, replica=replica)
        self.ops.append(op)
        return op

    def of(self, kind: str, outcome: Outcome | None = None) -> list[Op]:
        return [op for op in self.ops if op.kind == kind and (outcome is None or op.outcome == outcome)]


def lease_violations(history: History, ttl_s: float) -> list[str]:
    """Mutual exclusion and fencing over acknowledged grants of each symbol.

    A grant G (a ``reserve`` with outcome ``ok`` and value = its lease_id) certainly holds the symbol
    from its completion until the earlier of the invocation of its release and its invocation plus the
    TTL (the server's reserved_at is no earlier than the invocation). Two grants of one symbol whose
    certain holds overlap are a violation; so is a grant that certainly came after another (completed
    before the other was invoked) with a lease_id not greater than the other's.
    """
    releases: dict[int, Op] = {}
    for op in history.of("release"):  # whatever its outcome, the holder stopped using it when it asked
        releases.setdefault(int(op.key), op)
    grants: dict[str, list[Op]] = defaultdict(list)
    for op in history.of("reserve", "ok"):
        grants[op.key].append(op)
    found: list[str] = []
    for symbol, ops in grants.items():
        held = []
        for grant in ops:
            release = releases.get(grant.value)
            ttl = grant.ttl_s if grant.ttl_s is not None else ttl_s
            until = min(release.invoked if release is not None else math.inf, grant.invoked + ttl)
            held.append((grant.completed, until, grant))
        held.sort(key=lambda item: item[0])
        for index, (start, _until, grant) in enumerate(held):
            for other_start, other_until, other in held[:index]:
                if start < other_until and other_start < start:
                    found.append(f"{symbol}: lease {grant.value} granted while lease {other.value} was held")
                if other.completed < grant.invoked and other.value >= grant.value:
                    found.append(f"{symbol}: lease {grant.value} came after lease {other.value} with a lower id")
    return found


def lost_registrations(history: History, readable: dict[int, set[str]]) -> list[str]:
    """Every acknowledged registration is readable on every replica afterwards, unless it was deregistered;
    no acknowledged deregistration comes back on any replica."""
    gone = {op.key for op in history.of("deregister")}  # whatever the outcome: it may have happened
    done = {op.key for op in history.of("deregister", "ok")}
    faults = []
    for op in history.of("register", "ok"):
        for replica, ids in readable.items():
            if op.value not in ids and op.value not in gone:
                faults.append(f"service {op.value} (registered on replica {op.replica}) not readable on {replica}")
            if op.value in done and op.value in ids:
                faults.append(f"service {op.value} came back on replica {replica} after its deregistration")
    return faults


def stale_claims(history: History) -> list[str]:
    """A claim never succeeds on a lease that a later grant of the same symbol superseded before the
    claim was invoked (the later grant was acknowledged first)."""
    grants = history.of("reserve", "ok")
    faults = []
    for claim in history.of("claim", "ok"):
        symbol, lease_id = claim.key, int(claim.value)
        for grant in grants:
            if grant.key == symbol and grant.value > lease_id and grant.completed < claim.invoked:
                faults.append(f"{symbol}: lease {lease_id} claimed after lease {grant.value} superseded it")
    return faults


def stream_faults(streams: dict[int, Sequence[int]]) -> list[str]:
    """Each replica's replay of the log from revision 0 is the same sequence, without gaps. The replays are
    read one after another while the log may still grow, so they are compared over their common length."""
    faults = []
    reference = next(iter(streams.values()), [])
    common = min((len(revisions) for revisions in streams.values()), default=0)
    for replica, revisions in streams.items():
        if list(revisions[:common]) != list(reference[:common]):
            faults.append(f"replica {replica}'s stream differs from replica {next(iter(streams))}'s")
        gaps = [(a, b) for a, b in itertools.pairwise(revisions) if b != a + 1]
        if gaps:
            faults.append(f"replica {replica}'s stream has gaps: {gaps[:5]}")
    return faults


def alert_faults(
    alerts: Iterable[dict[str, Any]], *, silent: set[str], beating: set[str], beating_until: str = "9999"
) -> list[str]:
    """Silent services: exactly one service_down then one service_deregistered; services beating until
    ``beating_until`` (an ISO time, as alerts' ``ts``): none before that moment."""
    by_service: dict[str, list[str]] = defaultdict(list)
    for alert in sorted(alerts, key=lambda a: a["alert_id"]):
        if alert["service_id"] in beating and alert.get("ts", "") >= beating_until:
            continue  # it stopped beating: going down is right
        by_service[alert["service_id"]].append(alert["alert_type"])
    faults = []
    for service_id in silent:
        if by_service.get(service_id) != ["service_down", "service_deregistered"]:
            faults.append(f"silent {service_id}: {by_service.get(service_id)}")
    for service_id in beating:
        if by_service.get(service_id):
            faults.append(f"beating {service_id} was reported {by_service[service_id]}")
    return faults


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
