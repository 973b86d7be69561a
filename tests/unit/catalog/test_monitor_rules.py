"""The heartbeat monitor's rules, with a fake clock (no I/O)."""

from __future__ import annotations

import pytest

from muster.catalog.model import MonitorThresholds, ServiceRecord, judge, missed_beats, verdicts
from muster.clock import FakeClock


def _record(clock: FakeClock, *, interval: int = 60, ttl: int = 90, status: str = "ok") -> ServiceRecord:
    return ServiceRecord(
        service_id="s1", name="test-service", type="model", role="experimental", url="http://127.0.0.1:8888",
        caps=["infer"], labels={}, ctx_limit=None, cost_hint_usd_per_1k=None,
        heartbeat_interval_s=interval, ttl_s=ttl, status=status, registered_at=clock.now(),
    )


def test_worked_example_interval_60_ttl_90() -> None:
    """Interval 60 s, TTL 90 s: late at 90 s, down at 120 s, deregistered at 180 s of silence."""
    clock = FakeClock()
    record = _record(clock)
    thresholds = MonitorThresholds()
    seen = []
    for second in (0, 89, 90, 119, 120, 179, 180):
        now = clock.now().__class__.fromtimestamp(clock.now().timestamp() + second, tz=clock.now().tzinfo)
        verdict = judge(record, now, thresholds)
        seen.append((second, missed_beats(second, 60, 90), verdict.action if verdict else None))
        if verdict and verdict.action == "marked_down":
            record.status = "down"
    assert seen == [
        (0, 0, None),
        (89, 0, None),
        (90, 1, None),
        (119, 1, None),
        (120, 2, "marked_down"),
        (179, 2, None),
        (180, 3, "deregistered"),
    ]


@pytest.mark.parametrize(
    ("silence", "interval", "ttl", "expected"),
    [(0.0, 60, 90, 0), (89.9, 60, 90, 0), (90.0, 60, 90, 1), (240.0, 60, 90, 4), (5.0, 1, 10, 0), (10.0, 1, 10, 10)],
)
def test_missed_beats_is_zero_until_ttl_then_floor_of_silence(
    silence: float, interval: int, ttl: int, expected: int
) -> None:
    """Missed beats stay 0 inside the TTL, then are floor(silence / interval)."""
    assert expected == missed_beats(silence, interval, ttl)


def test_down_service_is_not_marked_down_twice() -> None:
    """A service already down gets no second service_down; only deregistration follows."""
    clock = FakeClock()
    record = _record(clock, status="down")
    clock.advance(150)
    assert judge(record, clock.now(), MonitorThresholds()) is None


def test_thresholds_are_settings() -> None:
    """Custom thresholds (down after 1 miss, deregister after 5) change the verdicts."""
    clock = FakeClock()
    record = _record(clock, interval=10, ttl=10)
    clock.advance(10)
    verdict = judge(record, clock.now(), MonitorThresholds(mark_down_after_misses=1, deregister_after_misses=5))
    assert verdict is not None and verdict.action == "marked_down"
    clock.advance(40)
    verdict = judge(record, clock.now(), MonitorThresholds(mark_down_after_misses=1, deregister_after_misses=5))
    assert verdict is not None and verdict.action == "deregistered" and verdict.missed_beats == 5


def test_inconsistent_thresholds_are_refused() -> None:
    """Deregistering before marking down is not a valid configuration."""
    with pytest.raises(ValueError, match="mark_down_after_misses"):
        MonitorThresholds(mark_down_after_misses=3, deregister_after_misses=2)


def test_last_heartbeat_resets_silence() -> None:
    """Silence is counted from the last heartbeat, not from registration."""
    clock = FakeClock()
    record = _record(clock)
    clock.advance(100)
    record.last_heartbeat_ts = clock.now()
    clock.advance(100)
    assert judge(record, clock.now(), MonitorThresholds()) is None


def test_a_jump_past_both_thresholds_marks_down_before_deregistering() -> None:
    """TTL of three intervals: the first miss that counts is already the third, and both actions come, down first."""
    clock = FakeClock()
    record = _record(clock, interval=10, ttl=30)
    clock.advance(30)
    assert [(v.action, v.missed_beats) for v in verdicts(record, clock.now(), MonitorThresholds())] == [
        ("marked_down", 3), ("deregistered", 3)
    ]
    record.status = "down"
    assert [v.action for v in verdicts(record, clock.now(), MonitorThresholds())] == ["deregistered"]


def test_silence_before_the_monitor_watched_is_not_counted() -> None:
    """A monitor that starts or takes over gives every service one full TTL from that moment."""
    clock = FakeClock()
    record = _record(clock, interval=1, ttl=2)
    clock.advance(3600)  # an hour of silence while nobody watched
    since = clock.now()
    assert verdicts(record, clock.now(), MonitorThresholds(), watched_since=since) == []
    clock.advance(1.9)
    assert verdicts(record, clock.now(), MonitorThresholds(), watched_since=since) == []
    clock.advance(0.1)  # 2 s watched: the TTL has passed, 2 misses counted from the watch's start
    assert [v.action for v in verdicts(record, clock.now(), MonitorThresholds(), watched_since=since)] == [
        "marked_down"
    ]
    assert [v.action for v in verdicts(record, clock.now(), MonitorThresholds())] == ["marked_down", "deregistered"]


def test_self_preservation_holds_evictions_when_too_much_of_the_fleet_is_silent() -> None:
    """20 live, 12 would go down at once (60% > 50%): protect and say 'entered'; 5 (25%): judge and say 'left'."""
    from muster.catalog.preservation import SelfPreservation

    clock = FakeClock()
    guard = SelfPreservation(threshold=0.5, min_instances=10)
    first = guard.assess(clock.now(), live=20, evicting=12, window_s=2)
    assert (first.protect, first.change, first.population, first.at_risk) == (True, "entered", 20, 12)
    assert guard.assess(clock.now(), live=20, evicting=12, window_s=2).change is None
    back = guard.assess(clock.now(), live=20, evicting=5, window_s=2)
    assert (back.protect, back.change) == (False, "left")


def test_self_preservation_counts_the_window_and_spares_small_fleets() -> None:
    """Downs earlier in the same TTL window count; past the window they do not; under min_instances it is off."""
    from muster.catalog.preservation import SelfPreservation

    clock = FakeClock()
    guard = SelfPreservation(threshold=0.5, min_instances=10)
    assert not guard.assess(clock.now(), live=20, evicting=6, window_s=10).protect
    guard.record(clock.now(), 6)
    clock.advance(5)  # 6 already down in this window, 5 more now: 11 of 20
    assert guard.assess(clock.now(), live=14, evicting=5, window_s=10).protect
    clock.advance(20)
    guard.active = False
    assert not guard.assess(clock.now(), live=14, evicting=5, window_s=10).protect  # the window moved on
    assert not SelfPreservation(0.5, 10).assess(clock.now(), live=3, evicting=3, window_s=10).protect
    assert not SelfPreservation(0.0, 1).assess(clock.now(), live=20, evicting=20, window_s=10).protect
