"""How the gRPC door counts heartbeats: by outcome, per beat, also when a batch fails part way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from muster._proto.muster.v1 import catalog_pb2 as pb
from muster.catalog.grpc import CatalogServicer
from muster.catalog.service import BeatAck
from muster.errors import Invalid, NotFound, Unavailable
from muster.observability import BEAT_OUTCOMES, beat_outcome


class ScriptedCatalog:
    """Answers each beat by service id: an ack, or the error the script names."""

    def __init__(self, script: dict[str, BaseException]) -> None:
        self.script = script

    async def heartbeat(self, data: Any) -> BeatAck:
        error = self.script.get(data.service_id)
        if error is not None:
            raise error
        return BeatAck(service_id=data.service_id, status="ok", received_at=datetime.now(UTC))


def counts() -> dict[str, float]:
    """The gRPC door's heartbeat counts by outcome, from the registry (0 if never counted)."""
    sample = REGISTRY.get_sample_value
    return {o: sample("muster_heartbeats_received_total", {"door": "grpc", "outcome": o}) or 0.0 for o in BEAT_OUTCOMES}


def test_outcomes_name_what_the_caller_should_do() -> None:
    """NotFound is unknown (register again), Invalid is refused, any other failure is the server's error."""
    assert beat_outcome(None) == "accepted"
    assert beat_outcome(NotFound("gone")) == "unknown"
    assert beat_outcome(Invalid("load", "must be >= 0")) == "refused"
    assert beat_outcome(Unavailable("store down")) == "error"
    assert beat_outcome(RuntimeError("bug")) == "error"


async def test_a_stream_counts_each_beat_and_keeps_those_applied_before_a_fault() -> None:
    """Per-beat errors are counted by outcome; a fault part way still counts the beats already applied."""
    catalog = ScriptedCatalog({"gone": NotFound("gone"), "down": Unavailable("store"), "bug": RuntimeError("bug")})
    servicer = CatalogServicer(catalog)  # type: ignore[arg-type]

    async def messages(*batches: list[str]) -> AsyncIterator[pb.HeartbeatBatch]:
        for ids in batches:
            yield pb.HeartbeatBatch(beats=[pb.HeartbeatRequest(service_id=i) for i in ids])

    before = counts()
    replies = [r async for r in servicer.HeartbeatStream(messages(["a", "gone", "down", "b"]), _AbortingContext())]
    assert [bool(r.error_code) for r in replies[0].replies] == [False, True, True, False]
    with pytest.raises(_Aborted, match="INTERNAL"):  # the streaming wrapper turns the fault into an abort
        _ = [r async for r in servicer.HeartbeatStream(messages(["c", "bug", "d"]), _AbortingContext())]
    after = counts()
    assert {o: after[o] - before[o] for o in after} == {"accepted": 3, "unknown": 1, "refused": 0, "error": 2}


class _Aborted(Exception):
    pass


class _AbortingContext:
    """The few ServicerContext calls the door makes (request id, and abort when a call fails)."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    async def abort(self, code: Any, details: str) -> None:
        raise _Aborted(f"{code.name} {details}")

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass
