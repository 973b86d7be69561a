"""The ``muster`` command: serve, migrate, bridge, and readable views of a running server.

    muster serve [--host H] [--http-port N] [--grpc-port N] [--data-dir D]
                 [--database-url URL] [--monitor-interval S] [--doors split|single]
    muster migrate [--database-url URL | --data-dir D]
    muster services [--server URL] [--status S]
    muster discover [--server URL] [--name N] [--type T] [--role R] [--cap C]... [--label K=V]...
    muster status [--server URL] [--json]
    muster token create --name NAME --scope S [--scope S ...] [--expires 30d] [--json]
    muster token list [--json]
    muster token revoke NAME
    muster bridge --port N --adapter package.module.Class [--registry URL] [--token-file F]

Client commands take --server URL (default $MUSTER_SERVER or http://127.0.0.1:8080),
--token / --token-file (default $MUSTER_TOKEN, $MUSTER_TOKEN_FILE) and, over TLS
(https://, grpcs://), --ca-file, --cert-file and --key-file.

Every ``serve`` flag is also ``MUSTER_<NAME>`` in the environment or a ``.env`` file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

_SERVE_FLAGS: dict[str, dict[str, Any]] = {
    "host": {"help": "address to bind (default 127.0.0.1)"},
    "http_port": {"type": int, "help": "HTTP port (default 8080)"},
    "grpc_port": {"type": int, "help": "gRPC port (default 9090)"},
    "data_dir": {"help": "data directory (default ./muster-data)"},
    "database_url": {"help": "sqlite:///path or postgresql://user@host/db (default: SQLite in the data dir)"},
    "monitor_interval": {"type": float, "help": "seconds between heartbeat sweeps (default 30)"},
    "self_preservation_threshold": {"type": float, "help": "evict nobody while more than this share of the live "
                                    "instances would be down within one TTL; 0: off (default 0.5)"},
    "self_preservation_min_instances": {"type": int, "help": "self-preservation applies only with at least this "
                                        "many live instances (default 10)"},
    "leader_lease": {"type": float, "help": "seconds the monitor's leader holds its lease unrenewed; a dead or "
                     "paused leader is replaced within 1.25 times this (default 4)"},
    "doors": {"choices": ["split", "single"], "help": "split: HTTP and gRPC in two processes; single: one "
              "(default split)"},
    "shutdown_grace": {"type": float, "help": "seconds to drain in-flight requests on SIGTERM (default 10)"},
    "log_level": {"type": str.lower, "choices": ["debug", "info", "warning", "error"],
                  "help": "debug, info, warning or error, in any case; debug adds tracebacks (default info)"},
    "max_body_bytes": {"type": int, "help": "largest request body accepted, in bytes (default 1048576)"},
    "rate_limit_writes": {"type": float, "help": "writes a second per caller (principal, or address with auth "
                          "off), burst twice that; heartbeats never count; 0: off (default 10000)"},
    "rate_limit_expensive": {"type": float, "help": "expensive reads a second per caller: discover with 3+ "
                             "filters, traversals deeper than 5, impact, watch from 0; 0: off (default 1000)"},
    "http_header_timeout": {"type": float, "help": "seconds a client gets to send a request's headers (default 10)"},
    "http_body_timeout": {"type": float, "help": "seconds a client gets to send a body after its headers "
                          "(default 30)"},
    "max_header_bytes": {"type": int, "help": "largest request line and headers, in bytes (default 65536)"},
    "heartbeat_stream_messages_per_s": {"type": float, "help": "messages a second one gRPC HeartbeatStream may "
                                        "send, burst twice that; 0: no bound (default 1000)"},
    "max_watchers": {"type": int, "help": "open watch streams this process takes in all (default 10000)"},
    "max_watchers_per_caller": {"type": int, "help": "open watch streams per caller (default 100)"},
    "http_idle_timeout": {"type": int, "help": "seconds an idle keep-alive connection stays open (default 5)"},
    "db_timeout": {"type": float, "help": "seconds a store connect, statement or write may take before "
                   "the request fails with 503 (default 5)"},
    "auth": {"action": "store_true", "help": "require a token with the right scope on every route and RPC "
             "but the probes (default off; an admin token is written to <data-dir>/admin.token on first start)"},
    "insecure": {"action": "store_true", "help": "allow a non-loopback --host without --auth (default: refused)"},
    "metrics_auth": {"action": "store_true", "help": "put /metrics behind the admin scope (default: open)"},
    "tls_cert": {"metavar": "PEM", "help": "serve both doors over TLS with this certificate (default: plaintext)"},
    "tls_key": {"metavar": "PEM", "help": "the private key of --tls-cert (required with it; default none)"},
    "tls_client_ca": {"metavar": "PEM", "help": "require client certificates signed by this CA (mTLS) on both doors "
                      "(default: none required)"},
    "tls_principal_from_cn": {"action": "store_true", "help": "with mTLS: a client certificate's CN stands for "
                              "the token of that name (default off)"},
    "kafka_brokers": {"metavar": "HOST:PORT,...", "help": "publish every event to these Kafka-protocol brokers "
                      "(Redpanda, Kafka); also $REDPANDA_BROKERS (default: none)"},
    "kafka_topic_template": {"help": "topic per event: {context} (catalog, leases, graph, identity) and {kind} "
                             "(default muster-{context})"},
    "kafka_partitions": {"type": int, "help": "partitions of a topic Muster creates (default 3)"},
    "kafka_replication": {"type": int, "help": "replication factor of a topic Muster creates (default 1)"},
    "kafka_no_idempotence": {"action": "store_true", "help": "a plain producer, for brokers that refuse idempotent "
                             "ones (default: idempotent)"},
    "kafka_security_protocol": {"choices": ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
                                "help": "how to reach the brokers (default PLAINTEXT)"},
    "kafka_sasl_mechanism": {"choices": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
                             "help": "SASL mechanism with SASL_* (default none)"},
    "kafka_sasl_username": {"help": "SASL user name (default none)"},
    "kafka_sasl_password": {"help": "SASL password; prefer $MUSTER_KAFKA_SASL_PASSWORD (default none)"},
    "kafka_ca_file": {"metavar": "PEM", "help": "CA that signed the brokers' certificates (default: the system's)"},
    "kafka_cert_file": {"metavar": "PEM", "help": "client certificate for the brokers (default none)"},
    "kafka_key_file": {"metavar": "PEM", "help": "private key of --kafka-cert-file (default none)"},
    "nats_url": {"metavar": "URL", "help": "publish every event to NATS JetStream at this URL, stream MUSTER_EVENTS "
                 "(default: none)"},
    "bus_batch": {"type": int, "help": "events per published batch; a failover repeats at most one (default 1000)"},
    "bus_timeout": {"type": float, "help": "seconds a batch may take to be acknowledged before the sink reconnects "
                    "and re-sends it (default 10)"},
    "bus_start": {"choices": ["now", "oldest"], "help": "where a sink that never published starts: the log's head "
                  "or the oldest event kept (default now)"},
}


def _settings(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from muster.config import Settings

    overrides = {k: v for k in _SERVE_FLAGS if (v := getattr(args, k, None)) is not None and v is not False}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        from muster.validation import invalid_from

        raise SystemExit(f"muster: invalid setting {invalid_from(exc).message}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="muster", description="Muster: the roll call for fleets of services.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (migrates the store first)")
    migrate = commands.add_parser("migrate", help="apply database migrations and exit")
    for sub in (serve, migrate):
        for name, options in _SERVE_FLAGS.items():
            if sub is migrate and name not in ("data_dir", "database_url", "db_timeout", "log_level"):
                continue
            sub.add_argument("--" + name.replace("_", "-"), dest=name, default=None, **options)

    services = commands.add_parser("services", help="list registered services")
    _client_flags(services)
    services.add_argument("--status", choices=["ok", "degraded", "down"], help="only this status (default: all)")

    discover = commands.add_parser("discover", help="find live services, best first")
    _client_flags(discover)
    discover.add_argument("--name", help="only this name (default: any)")
    discover.add_argument("--type", choices=["model", "tool", "agent", "service"], help="only this type (default: any)")
    discover.add_argument("--role", choices=["production", "staging", "canary", "experimental"],
                          help="only this role (default: any)")
    discover.add_argument("--cap", action="append", default=[], help="a capability it must have"
                          " (repeat; default: any)")
    discover.add_argument("--label", action="append", default=[], help="key=value it must carry "
                          "(repeat; default: any)")
    discover.add_argument("--status", choices=["ok", "degraded", "down"],
                          help="only this status (default: ok and degraded)")
    discover.add_argument("--limit", type=int, default=100, help="at most this many, best first (default 100)")

    status = commands.add_parser("status", help="the fleet in numbers: services by status, the monitor, the buses")
    _client_flags(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of text (default: text)")

    token = commands.add_parser("token", help="make, list and revoke tokens (needs an admin token)")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="make a token and print its secret (shown this once)")
    create.add_argument("--name", required=True,
                        help="the principal's name, e.g. ci-deploy or agent-7 (required, no default)")
    create.add_argument("--scope", action="append", required=True, dest="scopes",
                        help="a scope it grants (repeat; at least one, no default): " + ", ".join(_SCOPES))
    create.add_argument("--expires", help="lifetime, e.g. 30d, 12h, 90m (default: never expires)")
    listing = token_commands.add_parser("list", help="every token (revoked ones too); never the secrets")
    revoke = token_commands.add_parser("revoke", help="revoke a token; refused everywhere within a second")
    revoke.add_argument("name", help="the token's name")
    for sub in (create, listing, revoke):
        _client_flags(sub)
        sub.add_argument("--json", action="store_true", help="print JSON instead of text (default: text)")

    bridge = commands.add_parser("bridge", help="serve Python tools over the snakepit bridge protocol")
    try:
        from muster.bridge.cli import configure_parser
    except ImportError:  # pragma: no cover - the bridge ships with Muster; guard for partial installs
        pass
    else:
        configure_parser(bridge)
    return parser


_SCOPES = ("catalog:read", "catalog:write", "leases:read", "leases:write", "graph:read", "graph:write",
           "events:read", "admin")


def _client_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every command that talks to a server shares."""
    default_server = os.environ.get("MUSTER_SERVER", "http://127.0.0.1:8080")
    parser.add_argument("--server", default=default_server, type=_server_url,
                        help=f"http(s)://host:port or grpc(s)://host:port (default {default_server}, "
                        "from $MUSTER_SERVER)")
    parser.add_argument("--token", help="bearer token (default $MUSTER_TOKEN)")
    parser.add_argument("--token-file", help="file holding the token (default $MUSTER_TOKEN_FILE)")
    parser.add_argument("--ca-file", help="CA that signed the server's certificate (default: the system's CAs)")
    parser.add_argument("--cert-file", help="client certificate, for a server that requires one (mTLS; default none)")
    parser.add_argument("--key-file", help="the client certificate's private key (default none)")


_SCHEMES = ("http://", "https://", "grpc://", "grpcs://")


def _server_url(value: str) -> str:
    """A server address with its scheme: ``localhost:8080`` alone could be either door."""
    if not value.startswith(_SCHEMES):
        raise argparse.ArgumentTypeError(
            f"{value!r} needs a scheme: http://{value} for the HTTP door or grpc://{value} for the gRPC door "
            "(https:// and grpcs:// with TLS)"
        )
    return value


async def _connect(args: argparse.Namespace) -> Any:
    from muster.client import MusterClient

    return await MusterClient.connect(
        args.server, token=args.token, token_file=args.token_file, ca_file=args.ca_file,
        cert_file=args.cert_file, key_file=args.key_file,
    )


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_COLUMNS = ("service_id", "name", "type", "role", "status", "url", "caps", "load", "p95_ms", "last_heartbeat_ts")


async def _services(args: argparse.Namespace) -> int:
    records: list[Any] = []
    async with await _connect(args) as client:
        while True:  # every service, a page of 1,000 at a time
            page = await client.list_services(status=args.status, limit=1000, offset=len(records))
            records += page
            if len(page) < 1000:
                break
    print(_table([r.to_dict() for r in records], _COLUMNS))
    return 0


async def _discover(args: argparse.Namespace) -> int:
    async with await _connect(args) as client:
        records = await client.discover(
            name=args.name, type=args.type, role=args.role, cap=args.cap, label=args.label,
            status=args.status, limit=args.limit,
        )
    print(_table([r.to_dict() for r in records], _COLUMNS))
    return 0


async def _status(args: argparse.Namespace) -> int:
    import orjson

    async with await _connect(args) as client:
        stats = await client.stats()
    if args.json:
        print(orjson.dumps(stats.to_dict()).decode())
        return 0
    body = stats.to_dict()
    print(f"services: {body['total_services']} ({body['healthy_services']} ok, {body['degraded_services']} "
          f"degraded, {body['down_services']} down)")
    print(f"monitor: last sweep {body['last_check'] or 'never'}, {body['replicas']} replica(s)"
          + (", self-preservation ON (evicting nobody)" if body["self_preservation"] else ""))
    print("buses:")
    print(_table(body["buses"], ("sink", "published_revision", "lag_revisions")) if body["buses"] else "(none)")
    return 0


_TOKEN_COLUMNS = ("name", "scopes", "created_at", "created_by", "expires_at", "revoked_at", "last_used_at")


async def _token(args: argparse.Namespace) -> int:
    import orjson

    async with await _connect(args) as client:
        if args.token_command == "create":
            issued = await client.create_token(args.name, args.scopes, expires=args.expires)
            if args.json:
                print(orjson.dumps(issued).decode())
            else:
                print(issued["token"])
                print(f"muster: token {args.name} made with {', '.join(issued['scopes'])}; "
                      "this is the only time its secret is shown", file=sys.stderr)
            return 0
        if args.token_command == "list":
            records = await client.list_tokens()
            print(orjson.dumps({"tokens": records}).decode() if args.json else _table(records, _TOKEN_COLUMNS))
            return 0
        record = await client.revoke_token(args.name)
        print(orjson.dumps(record).decode() if args.json else f"revoked {record['name']} at {record['revoked_at']}")
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("serve", "migrate"):
        from muster import server

        settings = _settings(args)
        if args.command == "serve":
            return server.serve(settings)
        from muster.logs import configure_logging
        from muster.startup import StartupError

        configure_logging(settings.log_level)
        try:
            before, after = asyncio.run(server.migrate(settings))
        except StartupError as exc:
            return server.startup_failed(exc)
        print(f"migrated: {before or 'empty'} -> {after}")
        return 0
    if args.command == "bridge":
        from muster.bridge.cli import run

        return run(args)
    from muster.errors import MusterError, NotFound

    commands = {"services": _services, "discover": _discover, "status": _status, "token": _token}
    try:
        return asyncio.run(commands[args.command](args))
    except NotFound as exc:
        print(f"muster: {exc.message}", file=sys.stderr)
        return 3
    except MusterError as exc:
        print(f"muster: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # an unreadable --token-file or certificate
        print(f"muster: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
