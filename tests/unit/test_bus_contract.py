"""The bus's contract in pure terms: what a message carries, where it goes, and which settings are refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from muster.config import Settings
from muster.events.bus import KafkaSink, NatsSink, configured_sinks, message_body
from muster.events.hub import Event

EVENT = Event(7, "catalog.status_changed", "svc-1", {"status": "down"}, datetime(2026, 12, 3, 18, 0, tzinfo=UTC),
              "muster")


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_a_message_is_the_watch_json_with_source_and_timestamp() -> None:
    """The body is the event as the watch API gives it, plus seed 004's `timestamp` and `source`."""
    body = orjson.loads(message_body(EVENT))
    assert body == EVENT.to_dict() | {"timestamp": "2026-12-03T18:00:00.000Z", "source": "muster"}


@pytest.mark.parametrize(("template", "topic"), [
    ("muster-{context}", "muster-catalog"),
    ("muster-{kind}", "muster-catalog.status_changed"),
    ("{context}.events", "catalog.events"),
    ("all-muster-events", "all-muster-events"),
])
def test_topics_follow_the_template(template: str, topic: str) -> None:
    """{context} is the kind's first part, {kind} the whole kind."""
    sink = KafkaSink(_settings(kafka_brokers="b:9092", kafka_topic_template=template))
    assert sink.topic(EVENT) == topic


@pytest.mark.parametrize(("values", "words"), [
    ({"kafka_topic_template": "muster-{service}"}, "only {context} and {kind}"),
    ({"kafka_topic_template": "muster events"}, "letters, digits"),
    ({"kafka_sasl_mechanism": "PLAIN"}, "needs kafka_security_protocol SASL_PLAINTEXT or SASL_SSL"),
    ({"kafka_security_protocol": "SASL_SSL"}, "needs kafka_sasl_username and kafka_sasl_password"),
    ({"kafka_cert_file": "/etc/hostname"}, "go together"),
    ({"kafka_ca_file": "/no/such/ca.pem"}, "no readable file"),
    ({"bus_batch": 0}, "bus_batch"),
])
def test_bad_bus_settings_are_refused_in_musters_words(values: dict[str, Any], words: str) -> None:
    """Each refused setting names the field and the rule."""
    with pytest.raises(ValidationError) as caught:
        _settings(**values)
    assert words in str(caught.value)


def test_seed_004s_redpanda_brokers_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """REDPANDA_BROKERS configures the Kafka sink; MUSTER_KAFKA_BROKERS wins when both are set."""
    monkeypatch.setenv("REDPANDA_BROKERS", "redpanda:9092")
    assert _settings().kafka_brokers == "redpanda:9092"
    monkeypatch.setenv("MUSTER_KAFKA_BROKERS", "kafka-1:9092,kafka-2:9092")
    assert _settings().kafka_brokers == "kafka-1:9092,kafka-2:9092"


def test_sinks_are_those_configured() -> None:
    """No bus flag: no sink; each flag adds its sink."""
    assert configured_sinks(_settings()) == []
    sinks = configured_sinks(_settings(kafka_brokers="b:9092", nats_url="nats://n:4222"))
    assert [type(s) for s in sinks] == [KafkaSink, NatsSink]
