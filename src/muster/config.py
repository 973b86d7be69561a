"""Settings: command-line flag > ``MUSTER_<NAME>`` environment variable > ``.env`` file > default."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long, a loop of links: no file there either
        return False


class Settings(BaseSettings):
    """Everything a Muster server process can be told.

    Every field is settable as ``MUSTER_<FIELD>`` (for example
    ``MUSTER_HTTP_PORT=8081``) or in a ``.env`` file in the working directory;
    ``muster serve`` flags override both.
    """

    model_config = SettingsConfigDict(env_prefix="MUSTER_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    grpc_port: int = Field(9090, ge=0, le=65535)
    data_dir: Path = Path("./muster-data")
    database_url: str | None = None
    monitor_interval: float = Field(30.0, gt=0, description="seconds between heartbeat sweeps")
    # The leader's lease (seconds): a leader that dies or hangs is replaced within 1.25 times this,
    # whatever monitor_interval is (muster.store.leader).
    leader_lease: float = Field(4.0, ge=0.4, le=300)
    # Self-preservation (muster.catalog.preservation): evict nobody while more than this share of the
    # live instances would be down within one TTL (0: off), with at least min_instances live.
    self_preservation_threshold: float = Field(0.5, ge=0, lt=1)
    self_preservation_min_instances: int = Field(10, ge=1)
    # How many missed beats mark a service down, and how many deregister it.
    mark_down_after_misses: int = Field(2, ge=1)
    deregister_after_misses: int = Field(3, ge=1)
    # Heartbeat soft state (last beat, p95, load, queue depth) is buffered in
    # memory and written in one batch per interval; status changes are not.
    heartbeat_flush_interval: float = Field(0.5, gt=0, le=10)
    # How often a process looks for events written by other processes when no
    # wake-up signal arrives (SQLite has no LISTEN/NOTIFY).
    event_poll_interval: float = Field(0.05, gt=0, le=10)
    # The event log keeps this many hours of events (0: forever). The leader
    # prunes older ones every ``event_prune_interval`` seconds; a watch asking
    # to resume from a pruned revision gets a ``pruned`` error.
    event_retention_hours: float = Field(168.0, ge=0)
    event_prune_interval: float = Field(60.0, gt=0)
    # split: HTTP and gRPC doors in two processes so neither starves the other;
    # single: both doors on one event loop (small deployments, debugging).
    doors: Literal["split", "single"] = "split"
    shutdown_grace: float = Field(10.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_bytes: int = Field(1_048_576, ge=1024)
    alerts_retained: int = Field(10_000, ge=100)
    # Connect, statement, pool checkout and whole-write bound against the store (seconds): with the
    # database frozen, writes fail with 503 / UNAVAILABLE after this long instead of hanging.
    db_timeout: float = Field(5.0, gt=0, le=300)
    # Slow clients: a request's headers must arrive within http_header_timeout seconds and its body
    # within http_body_timeout after them; an idle keep-alive connection is closed after http_idle_timeout.
    http_header_timeout: float = Field(10.0, gt=0, le=3600)
    http_body_timeout: float = Field(30.0, gt=0, le=3600)
    http_idle_timeout: int = Field(5, ge=1, le=3600)
    max_header_bytes: int = Field(65_536, ge=4096, le=1 << 20)
    # Open watch streams (SSE and gRPC, every context) per process: in all, and per caller.
    # Messages a second one gRPC HeartbeatStream may send (each carries up to 1,000 beats); 0: no bound.
    heartbeat_stream_messages_per_s: float = Field(1000.0, ge=0)
    max_watchers: int = Field(10_000, ge=1)
    max_watchers_per_caller: int = Field(100, ge=1)
    # Token buckets per caller (principal, or client address with auth off), per process; 0 turns one
    # off. Writes (heartbeats never count) and expensive reads (see muster.limits).
    rate_limit_writes: float = Field(10_000.0, ge=0)
    rate_limit_expensive: float = Field(1_000.0, ge=0)
    # Identity: every route and RPC but the probes needs a token with the right scope.
    auth: bool = False
    # Serve a non-loopback address without auth all the same (a private network, a sidecar).
    insecure: bool = False
    # Put /metrics behind the admin scope (it is open by default, for scrapers).
    metrics_auth: bool = False
    # TLS on both doors; with a client CA, both doors require client certificates (mTLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # With mTLS: a client certificate's CN stands for the token of that name (no bearer needed).
    tls_principal_from_cn: bool = False
    # The fleet's bus (muster.events.bus): every event of the log, published by the leader.
    # Kafka protocol (Redpanda, Apache Kafka): host:port,... ; seed 004's REDPANDA_BROKERS is read too.
    kafka_brokers: str | None = Field(
        None, validation_alias=AliasChoices("kafka_brokers", "MUSTER_KAFKA_BROKERS", "REDPANDA_BROKERS")
    )
    # One topic per context ({context}: catalog, leases, graph, identity) or per kind ({kind}).
    kafka_topic_template: str = "muster-{context}"
    kafka_partitions: int = Field(3, ge=1, le=10_000)
    kafka_replication: int = Field(1, ge=1, le=100)
    # The producer is idempotent (the broker drops a retried batch it already has); this turns that off for
    # brokers without idempotent producers (Tansu's in-memory storage refuses InitProducerId).
    kafka_no_idempotence: bool = False
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    # TLS to the brokers (SSL, SASL_SSL): the CA to trust, and a client certificate if they ask for one.
    kafka_ca_file: Path | None = None
    kafka_cert_file: Path | None = None
    kafka_key_file: Path | None = None
    # NATS JetStream: nats://host:port (stream MUSTER_EVENTS, subjects muster.events.<kind>).
    nats_url: str | None = None
    # Events per published batch (the cursor moves once per acknowledged batch), and where a sink that has
    # never published starts: at the log's head ("now") or at the oldest event still kept ("oldest").
    bus_batch: int = Field(1000, ge=1, le=100_000)
    bus_start: Literal["now", "oldest"] = "now"
    # Seconds a batch may take to be acknowledged (and a connection to open) before the sink is closed,
    # opened again and the batch re-sent.
    bus_timeout: float = Field(10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _tls_complete(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key (client certificates need TLS)")
        if self.tls_principal_from_cn and self.tls_client_ca is None:
            raise ValueError("tls_principal_from_cn needs tls_client_ca (the CN comes from a verified certificate)")
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            if path is not None and not _is_file(path):
                raise ValueError(f"{name}: no readable file at {path}")
        return self

    @field_validator("kafka_topic_template")
    @classmethod
    def _topic_template(cls, value: str) -> str:
        import re
        import string

        names = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
        if not names <= {"context", "kind"}:
            raise ValueError("kafka_topic_template may use only {context} and {kind}")
        sample = value.format(context="catalog", kind="catalog.status_changed")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", sample):
            raise ValueError("kafka_topic_template must give topic names of letters, digits, '.', '_' and '-'")
        return value

    @model_validator(mode="after")
    def _kafka_complete(self) -> Settings:
        if self.kafka_sasl_mechanism is not None and not self.kafka_security_protocol.startswith("SASL"):
            raise ValueError("kafka_sasl_mechanism needs kafka_security_protocol SASL_PLAINTEXT or SASL_SSL")
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError("kafka_security_protocol SASL_* needs kafka_sasl_username and kafka_sasl_password")
        if (self.kafka_cert_file is None) != (self.kafka_key_file is None):
            raise ValueError("kafka_cert_file and kafka_key_file go together: give both, or neither")
        for name in ("kafka_ca_file", "kafka_cert_file", "kafka_key_file"):
            path = getattr(self, name)
            if path is not None and not _is_file(path):
                raise ValueError(f"{name}: no readable file at {path}")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin.token"

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("database_url must start with sqlite:// or postgresql://")
        return value

    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL: the embedded SQLite file unless told otherwise."""
        url = self.database_url
        if url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'muster.db').resolve()}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            return "postgresql+asyncpg://" + url[len("postgresql://") :]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
        return url

    @property
    def events_dir(self) -> Path:
        return self.data_dir / "events"
