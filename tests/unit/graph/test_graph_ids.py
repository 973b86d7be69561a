"""Time-ordered row ids: UUIDv7 layout, strictly increasing, the same value in UUID and SQLite's hex form."""

from __future__ import annotations

import time
import uuid

from muster.graph.store import time_ordered_hex, time_ordered_ids


def test_ids_are_version_7_strictly_increasing_and_carry_the_time() -> None:
    """Each call continues after the last id; version 7, RFC variant, Unix milliseconds in the first 48 bits."""
    before = time.time_ns() // 1_000_000
    ids = time_ordered_ids(3000) + time_ordered_ids(5) + [uuid.UUID(h) for h in time_ordered_hex(3000)]
    after = time.time_ns() // 1_000_000
    assert sorted(set(ids)) == ids
    assert {7} == {i.version for i in ids}
    assert {uuid.RFC_4122} == {i.variant for i in ids}
    assert before <= ids[0].int >> 80 <= after + 1  # the counter may run a millisecond ahead


def test_hex_form_is_how_sqlite_stores_the_uuid() -> None:
    """SQLite keeps a UUID as its 32 lowercase hex digits: the hex ids read back as UUIDs of the same text."""
    for text in time_ordered_hex(100):
        assert uuid.UUID(text).hex == text
