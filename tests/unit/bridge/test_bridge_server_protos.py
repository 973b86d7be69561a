"""The servicer's proto builders (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2  # type: ignore[import-untyped, unused-ignore]

from muster.bridge.messages import timestamp as _timestamp

MOMENTS = [
    datetime(2026, 11, 22, 7, 45, 12, 345678, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before the epoch: negative seconds, positive nanos
    datetime(2026, 11, 22, 9, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
    datetime(2026, 11, 22, 9, 0, 0),  # naive: taken as UTC, as FromDatetime does
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_timestamp_matches_protobufs_own_conversion(moment: datetime) -> None:
    """_timestamp gives exactly the Timestamp that Timestamp.FromDatetime gives, for any datetime."""
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(moment)
    assert expected == _timestamp(moment)
