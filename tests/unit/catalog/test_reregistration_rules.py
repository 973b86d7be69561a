"""Re-registration by instance_id, as pure logic: the input rule, the record it makes, the index it feeds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from muster.catalog.index import CatalogIndex
from muster.catalog.model import (
    MAX_INSTANCE_ID_CHARS,
    DiscoverQuery,
    RegisterInput,
    registered_record,
    reregistered_record,
)
from muster.catalog.registration import upsert_instance
from muster.errors import Invalid
from muster.events.hub import Event
from muster.identity.model import ANONYMOUS
from muster.validation import parse

GOOD = {"name": "ranker", "type": "model", "url": "http://10.0.0.5:8000", "caps": ["rank"]}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _reg(**change: Any) -> RegisterInput:
    return parse(RegisterInput, {**GOOD, "instance_id": "10.0.0.5:8000", **change})


@pytest.mark.parametrize(
    "value",
    ["", " host:1", "host:1 ", "a b", "-leading-dash", ".hidden", "tab\there", "nul\x00", "é", "x" * 257, 42, True],
)
def test_a_bad_instance_id_is_refused_naming_the_field(value: object) -> None:
    """Empty, too long, surrounding or inner spaces, a leading symbol, control or non-ASCII characters, non-strings."""
    with pytest.raises(Invalid) as caught:
        parse(RegisterInput, {**GOOD, "instance_id": value})
    assert "instance_id" == caught.value.field


@pytest.mark.parametrize(
    "value", ["10.0.0.5:8000", "prod/ranker-7f9c", "i-0abc123@eu-west-1", "a", "A_b.c", "x" * MAX_INSTANCE_ID_CHARS]
)
def test_usual_instance_ids_are_accepted(value: str) -> None:
    """host:port, namespace/pod, cloud ids and the longest allowed id all pass as they are."""
    assert value == parse(RegisterInput, {**GOOD, "instance_id": value}).instance_id


def test_instance_id_is_optional() -> None:
    """Without one (absent or null) the registration has none: each is a new instance."""
    assert None is parse(RegisterInput, GOOD).instance_id
    assert None is parse(RegisterInput, {**GOOD, "instance_id": None}).instance_id


def test_the_schema_states_the_rule() -> None:
    """The JSON Schema (and so OpenAPI) carries the pattern and maxLength the validator enforces."""
    prop = RegisterInput.model_json_schema()["properties"]["instance_id"]
    text = next(option for option in prop["anyOf"] if option.get("type") == "string")
    assert (1, MAX_INSTANCE_ID_CHARS) == (text["minLength"], text["maxLength"])
    assert "^[A-Za-z0-9][A-Za-z0-9._:/@-]*$" == text["pattern"]
    assert {"type": "null"} in prop["anyOf"]


def test_a_first_registration_makes_a_fresh_ok_instance() -> None:
    """The record carries the input, the instance_id and the owner; it is ok and not yet beaten."""
    record = registered_record(_reg(labels={"zone": "eu"}), service_id="s1", owner="alice", now=T0)
    assert ("s1", "alice", "10.0.0.5:8000", "ok", T0, None) == (
        record.service_id, record.owner, record.instance_id, record.status, record.registered_at,
        record.last_heartbeat_ts,
    )
    assert (["rank"], {"zone": "eu"}) == (record.caps, record.labels)
    assert "10.0.0.5:8000" == record.to_dict()["instance_id"]


def test_to_dict_says_null_without_an_instance_id() -> None:
    """A record registered without an instance_id shows ``instance_id: None`` (null in JSON)."""
    record = registered_record(parse(RegisterInput, GOOD), service_id="s1", owner="anonymous", now=T0)
    assert record.to_dict()["instance_id"] is None


def test_a_reregistration_replaces_what_the_registration_states_and_resets_liveness() -> None:
    """url, type, role, caps, labels, hints and intervals are the new ones; ok, beaten now, no metrics."""
    before = registered_record(_reg(ctx_limit=1000), service_id="s1", owner="alice", now=T0)
    before.status, before.load, before.p95_ms, before.queue_depth = "down", 0.9, 120.0, 7
    before.last_heartbeat_ts = T0 + timedelta(minutes=1)
    later = T0 + timedelta(hours=1)
    again = _reg(url="http://10.0.0.9:9000", type="tool", role="canary", caps=["rank", "embed"],
                 labels={"zone": "us"}, heartbeat_interval_s=5, ttl_s=8)
    after = reregistered_record(before, again, later)
    assert ("s1", "alice", T0, "10.0.0.5:8000") == (
        after.service_id, after.owner, after.registered_at, after.instance_id
    )
    assert ("http://10.0.0.9:9000", "tool", "canary", ["embed", "rank"], {"zone": "us"}, None, 5, 8) == (
        after.url, after.type, after.role, after.caps, after.labels, after.ctx_limit,
        after.heartbeat_interval_s, after.ttl_s,
    )
    assert ("ok", later, None, None, None) == (
        after.status, after.last_heartbeat_ts, after.load, after.p95_ms, after.queue_depth
    )
    assert "down" == before.status  # the previous record is left as it was


@pytest.mark.parametrize("change", [{"name": "other"}, {"instance_id": "10.0.0.6:8000"}, {"instance_id": None}])
def test_a_reregistration_must_be_of_the_same_instance(change: dict[str, Any]) -> None:
    """Another name or instance_id (or none) is not a re-registration of this instance."""
    before = registered_record(_reg(), service_id="s1", owner="alice", now=T0)
    with pytest.raises(ValueError, match="instance"):
        reregistered_record(before, _reg(**change), T0)


def test_an_upsert_needs_an_instance_id() -> None:
    """Without an instance_id there is nothing to upsert by: the write is refused before it is made."""
    with pytest.raises(ValueError, match="instance_id"):
        upsert_instance(parse(RegisterInput, GOOD), ANONYMOUS)


def _registered_event(revision: int, service: dict[str, Any], *, reregistered: bool) -> Event:
    return Event(revision, "catalog.registered", service["service_id"],
                 {"service": service, "reregistered": reregistered}, T0)


def test_the_index_holds_one_instance_after_a_reregistration_event() -> None:
    """A re-registration event replaces the instance: one record, new url, the old cap forgotten."""
    index = CatalogIndex()
    first = registered_record(_reg(caps=["rank"]), service_id="s1", owner="anonymous", now=T0)
    index.apply(_registered_event(1, first.to_dict(), reregistered=False))
    again = reregistered_record(first, _reg(url="http://10.0.0.9:9000", caps=["embed"]), T0 + timedelta(seconds=5))
    index.apply(_registered_event(2, again.to_dict(), reregistered=True))
    found = index.discover(parse(DiscoverQuery, {"name": "ranker"}))
    assert [("s1", "http://10.0.0.9:9000", "10.0.0.5:8000")] == [(r.service_id, r.url, r.instance_id) for r in found]
    assert [] == index.discover(parse(DiscoverQuery, {"cap": ["rank"]}))
    assert 1 == len(index)
