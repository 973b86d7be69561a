"""Input validation names the field and the rule; the in-memory index discovers correctly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from muster.catalog.index import CatalogIndex
from muster.catalog.model import DiscoverQuery, HeartbeatInput, RegisterInput, ServiceRecord
from muster.errors import Invalid
from muster.validation import parse

GOOD = {"name": "test-service", "type": "model", "role": "experimental", "url": "http://127.0.0.1:8888"}


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"name": ""}, "name", "required"),
        ({"type": "robot"}, "type", "must be one of 'model', 'tool', 'agent' or 'service'"),
        ({"role": "prod"}, "role", "must be one of 'production', 'staging', 'canary' or 'experimental'"),
        ({"url": "not a url"}, "url", "must be an absolute URL such as http://host:port"),
        ({"ttl_s": 0}, "ttl_s", "must be at least 1"),
        ({"heartbeat_interval_s": -5}, "heartbeat_interval_s", "must be at least 1"),
        ({"caps": ["ok", ""]}, "caps[1]", "must not be empty"),
        ({"caps": [f"c{i}" for i in range(65)]}, "caps", "must have at most 64 items"),
        ({"cost_hint_usd_per_1k": float("nan")}, "cost_hint_usd_per_1k", "must be a finite number"),
        ({"colour": "blue"}, "colour", "is not a field of this request"),
        ({"name": "-x"}, "name", "may hold letters, digits and . _ : / @ -, starting with a letter or digit"),
    ],
)
def test_register_rejects_bad_fields_by_name(change: dict[str, object], field: str, rule: str) -> None:
    """Every invalid registration field raises Invalid naming that field and its rule."""
    with pytest.raises(Invalid) as caught:
        parse(RegisterInput, {**GOOD, **change})
    assert field == caught.value.field
    assert caught.value.rule == rule


def test_register_defaults_follow_the_contract() -> None:
    """heartbeat_interval_s defaults to 60 and ttl_s to 90; caps are deduplicated."""
    data = parse(RegisterInput, {**GOOD, "caps": ["b", "a", "b"]})
    assert (data.heartbeat_interval_s, data.ttl_s, data.caps) == (60, 90, ["a", "b"])


def test_heartbeat_status_is_ok_or_degraded() -> None:
    """A heartbeat may only report ok or degraded; down is the monitor's word."""
    with pytest.raises(Invalid) as caught:
        parse(HeartbeatInput, {"service_id": "x", "status": "down"})
    assert caught.value.field == "status"


def test_label_filters_must_be_key_value() -> None:
    """A label filter without '=' is refused with the rule."""
    with pytest.raises(Invalid) as caught:
        parse(DiscoverQuery, {"label": ["zone"]})
    assert caught.value.field == "label" and "key=value" in caught.value.rule


def _rec(sid: str, **kw: object) -> ServiceRecord:
    base: dict[str, object] = {
        "service_id": sid, "name": "ranker", "type": "model", "role": "production", "url": "http://h:1",
        "caps": ["rank"], "labels": {"zone": "eu"}, "ctx_limit": None, "cost_hint_usd_per_1k": None,
        "heartbeat_interval_s": 60, "ttl_s": 90, "status": "ok", "registered_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    base.update(kw)
    return ServiceRecord(**base)  # type: ignore[arg-type]


def test_discover_orders_by_load_then_p95_and_hides_down() -> None:
    """Best first: lowest load, then lowest p95; down instances only when asked for."""
    index = CatalogIndex()
    index.put(_rec("a", load=0.5, p95_ms=10.0))
    index.put(_rec("b", load=0.1, p95_ms=50.0))
    index.put(_rec("c", load=0.1, p95_ms=20.0))
    index.put(_rec("d", load=0.0, status="down"))
    index.put(_rec("e"))  # no metrics yet: ranked last
    ids = [r.service_id for r in index.discover(parse(DiscoverQuery, {"cap": ["rank"]}))]
    assert ids == ["c", "b", "a", "e"]
    down = index.discover(parse(DiscoverQuery, {"status": "down"}))
    assert [r.service_id for r in down] == ["d"]


def test_discover_requires_every_cap_and_label() -> None:
    """cap and label filters are conjunctive."""
    index = CatalogIndex()
    index.put(_rec("a", caps=["rank", "embed"], labels={"zone": "eu", "gpu": "a100"}))
    index.put(_rec("b", caps=["rank"], labels={"zone": "eu"}))
    query = parse(DiscoverQuery, {"cap": ["rank", "embed"], "label": ["zone=eu", "gpu=a100"]})
    assert [r.service_id for r in index.discover(query)] == ["a"]
    assert index.discover(parse(DiscoverQuery, {"cap": ["rank"], "label": ["zone=us"]})) == []


def test_index_secondary_maps_follow_role_changes_and_removal() -> None:
    """Promotion moves a record between role buckets; removal drops it from every bucket."""
    index = CatalogIndex()
    index.put(_rec("a", role="staging"))
    index.set_role("a", "production")
    assert [r.service_id for r in index.discover(parse(DiscoverQuery, {"role": "production"}))] == ["a"]
    assert index.discover(parse(DiscoverQuery, {"role": "staging"})) == []
    index.remove("a")
    assert index.discover(parse(DiscoverQuery, {"name": "ranker"})) == []
    assert len(index) == 0
