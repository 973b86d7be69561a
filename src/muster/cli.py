"""The ``muster`` command: serve, migrate, bridge, and readable views of a running server.

    muster serve [--host H] [--http-port N] [--grpc-port N] [--data-dir D]
                 [--database-url URL] [--monitor-interval S] [--doors split|single]
    muster migrate [--database-url URL | --data-dir D]
    muster services [--server URL] [--status S]
    muster discover [--server URL] [--name N] [--type T] [--role R] [--cap C]... [--label K=V]...
    muster bridge --port N --adapter package.module.Class [--registry URL]

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
    "doors": {"choices": ["split", "single"], "help": "HTTP and gRPC in two processes (default) or one"},
    "shutdown_grace": {"type": float, "help": "seconds to drain in-flight requests on SIGTERM (default 10)"},
    "log_level": {"choices": ["debug", "info", "warning", "error"]},
    "max_body_bytes": {"type": int, "help": "largest request body accepted, in bytes (default 1048576)"},
}


def _settings(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from muster.config import Settings

    overrides = {k: v for k in _SERVE_FLAGS if (v := getattr(args, k, None)) is not None}
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
            if sub is migrate and name not in ("data_dir", "database_url"):
                continue
            sub.add_argument("--" + name.replace("_", "-"), dest=name, default=None, **options)

    default_server = os.environ.get("MUSTER_SERVER", "http://127.0.0.1:8080")
    services = commands.add_parser("services", help="list registered services")
    services.add_argument("--server", default=default_server, help="http://host:port or grpc://host:port")
    services.add_argument("--status", choices=["ok", "degraded", "down"])

    discover = commands.add_parser("discover", help="find live services, best first")
    discover.add_argument("--server", default=default_server)
    discover.add_argument("--name")
    discover.add_argument("--type", choices=["model", "tool", "agent", "service"])
    discover.add_argument("--role", choices=["production", "staging", "canary", "experimental"])
    discover.add_argument("--cap", action="append", default=[])
    discover.add_argument("--label", action="append", default=[], help="key=value")
    discover.add_argument("--status", choices=["ok", "degraded", "down"])
    discover.add_argument("--limit", type=int, default=100)

    bridge = commands.add_parser("bridge", help="serve Python tools over the snakepit bridge protocol")
    try:
        from muster.bridge.cli import configure_parser
    except ImportError:  # pragma: no cover - the bridge ships with Muster; guard for partial installs
        pass
    else:
        configure_parser(bridge)
    return parser


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
    from muster.client import MusterClient

    records: list[Any] = []
    async with await MusterClient.connect(args.server) as client:
        while True:  # every service, a page of 1,000 at a time
            page = await client.list_services(status=args.status, limit=1000, offset=len(records))
            records += page
            if len(page) < 1000:
                break
    print(_table([r.to_dict() for r in records], _COLUMNS))
    return 0


async def _discover(args: argparse.Namespace) -> int:
    from muster.client import MusterClient

    async with await MusterClient.connect(args.server) as client:
        records = await client.discover(
            name=args.name, type=args.type, role=args.role, cap=args.cap, label=args.label,
            status=args.status, limit=args.limit,
        )
    print(_table([r.to_dict() for r in records], _COLUMNS))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from muster.server import serve

        return serve(_settings(args))
    if args.command == "migrate":
        from muster.server import migrate

        before, after = asyncio.run(migrate(_settings(args)))
        print(f"migrated: {before or 'empty'} -> {after}")
        return 0
    if args.command == "bridge":
        from muster.bridge.cli import run

        return run(args)
    from muster.errors import MusterError

    try:
        return asyncio.run(_services(args) if args.command == "services" else _discover(args))
    except MusterError as exc:
        print(f"muster: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
