"""The cluster tier's checkers convict exactly the histories that break a rule."""

from __future__ import annotations

from tests.cluster.history import (
    History,
    alert_faults,
    lease_violations,
    lost_registrations,
    stale_claims,
    stream_faults,
)


def _grant(history: History, symbol: str, lease_id: int, invoked: float, completed: float) -> None:
    op = history.begin("reserve", symbol, invoked, 0)
    op.completed, op.outcome, op.value = completed, "ok", lease_id


def _release(history: History, lease_id: int, invoked: float) -> None:
    op = history.begin("release", str(lease_id), invoked, 0)
    op.completed, op.outcome, op.value = invoked + 0.01, "ok", lease_id


def test_overlapping_grants_are_convicted_and_sequential_ones_are_not() -> None:
    """A second grant acknowledged before the first's release was invoked is a violation; after it, none."""
    fine, broken = History(), History()
    for history, second_at in ((fine, 2.0), (broken, 1.5)):
        _grant(history, "s", 1, 0.0, 1.0)
        _release(history, 1, 1.8)
        _grant(history, "s", 2, second_at - 0.1, second_at)
    assert lease_violations(fine, ttl_s=60) == []
    assert len(lease_violations(broken, ttl_s=60)) == 1


def test_each_grant_holds_for_its_own_ttl() -> None:
    """A 1 s reservation re-granted 1.2 s later is no violation, whatever the run's usual TTL."""
    history = History()
    _grant(history, "s", 1, 0.0, 0.1)
    history.ops[-1].ttl_s = 1
    _grant(history, "s", 2, 1.2, 1.3)
    assert lease_violations(history, ttl_s=60) == []
    history.ops[0].ttl_s = None
    assert lease_violations(history, ttl_s=60) == ["s: lease 2 granted while lease 1 was held"]


def test_an_expired_lease_may_be_granted_again_but_not_with_a_lower_id() -> None:
    """Past invocation + TTL the old lease no longer holds; a later grant must still have a higher id."""
    history = History()
    _grant(history, "s", 5, 0.0, 0.1)
    _grant(history, "s", 4, 3.5, 3.6)
    assert lease_violations(history, ttl_s=3) == ["s: lease 4 came after lease 5 with a lower id"]


def test_streams_registrations_and_alerts() -> None:
    """Different or gapped streams, unreadable registrations and wrong alert sequences are all reported."""
    assert stream_faults({0: [1, 2, 3], 1: [1, 2, 3]}) == []
    assert stream_faults({0: [1, 2, 3], 1: [1, 2, 3, 4]}) == []  # read a moment later
    assert len(stream_faults({0: [1, 2, 3], 1: [1, 3]})) == 2
    history = History()
    op = history.begin("register", "n", 0.0, 0)
    op.outcome, op.value = "ok", "id-1"
    assert lost_registrations(history, {0: {"id-1"}, 1: set()}) == [
        "service id-1 (registered on replica 0) not readable on 1"
    ]
    alerts = [{"alert_id": 1, "service_id": "a", "alert_type": "service_down"},
              {"alert_id": 2, "service_id": "a", "alert_type": "service_deregistered"},
              {"alert_id": 3, "service_id": "b", "alert_type": "service_down"}]
    assert alert_faults(alerts, silent={"a"}, beating=set()) == []
    assert alert_faults(alerts, silent={"a"}, beating={"b"}) == ["beating b was reported ['service_down']"]
    assert alert_faults(alerts[:1], silent={"a"}, beating=set()) == ["silent a: ['service_down']"]
    stopped = [{"alert_id": 4, "service_id": "c", "alert_type": "service_down", "ts": "2026-12-03T10:00:02.000Z"}]
    assert alert_faults(stopped, silent=set(), beating={"c"}, beating_until="2026-12-03T10:00:00.000Z") == []
    assert len(alert_faults(stopped, silent=set(), beating={"c"}, beating_until="2026-12-03T10:00:03.000Z")) == 1


def test_a_claim_after_a_superseding_grant_and_a_deregistration_that_comes_back_are_convicted() -> None:
    """Claiming lease 1 after lease 2 of the symbol was acknowledged is stale; a deregistered id listed again
    came back; a deregistered id no longer listed is fine."""
    history = History()
    _grant(history, "s", 1, 0.0, 0.1)
    _grant(history, "s", 2, 1.2, 1.3)
    claim = history.begin("claim", "s", 1.4, 0)
    claim.completed, claim.outcome, claim.value = 1.5, "ok", 1
    assert stale_claims(history) == ["s: lease 1 claimed after lease 2 superseded it"]
    claim.outcome = "fail"
    assert stale_claims(history) == []
    registered = history.begin("register", "n", 0.0, 0)
    registered.outcome, registered.value = "ok", "id-1"
    deregistered = history.begin("deregister", "id-1", 0.5, 1)
    deregistered.outcome = "ok"
    assert lost_registrations(history, {0: set(), 1: set()}) == []
    came_back = "service id-1 came back on replica 0 after its deregistration"
    assert lost_registrations(history, {0: {"id-1"}}) == [came_back]
