"""``muster bridge``: run one bridge worker process.

The lead's ``muster`` command mounts ``configure_parser`` / ``run`` as its
``bridge`` subcommand; ``python -m muster.bridge`` runs the same thing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from muster._loop import fast_loop_factory
from muster.bridge.process import WorkerOptions, parse_cpus, serve
from muster.bridge.values import DEFAULT_MAX_MESSAGE_BYTES
from muster.errors import Invalid, MusterError
from muster.logs import configure_logging

__all__ = ["configure_parser", "run"]

DEFAULT_ADAPTER = "muster.bridge.examples.ExampleAdapter"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the worker's options to ``parser``."""
    parser.add_argument("--port", type=int, default=0, help="port to serve on; 0 picks a free one (default)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--adapter",
        default=DEFAULT_ADAPTER,
        help=f"adapter class as package.module.Class (default {DEFAULT_ADAPTER})",
    )
    parser.add_argument(
        "--session-ttl",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="idle session expiry (default 3600)",
    )
    parser.add_argument(
        "--watch-queue-size",
        type=int,
        default=1024,
        metavar="N",
        help="updates a watcher may fall behind before its stream is ended (default 1024)",
    )
    parser.add_argument("--tool-threads", type=int, default=8, metavar="N", help="threads for sync tools (default 8)")
    parser.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=1000,
        metavar="N",
        help="calls in flight before RESOURCE_EXHAUSTED (default 1000)",
    )
    parser.add_argument(
        "--max-message-mb",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES >> 20,
        metavar="MB",
        help=f"largest message either way, in MiB (default {DEFAULT_MAX_MESSAGE_BYTES >> 20}; gRPC's own is 4)",
    )
    parser.add_argument(
        "--stop-grace", type=float, default=5.0, metavar="SECONDS",
        help="time calls get to finish on SIGTERM (default 5)",
    )
    parser.add_argument(
        "--supervised-by",
        type=int,
        metavar="PID",
        help="exit when this process dies or closes our stdin (set by muster.bridge.Worker; default none)",
    )
    parser.add_argument("--registry", metavar="URL", help="register in this Muster catalog and keep heartbeating "
                        "(default: not registered)")
    parser.add_argument("--registry-name", metavar="NAME", help="name to register under (default bridge-<pid>)")
    parser.add_argument(
        "--heartbeat-interval", type=int, default=5, metavar="SECONDS", help="registry heartbeat interval (default 5)"
    )
    parser.add_argument("--registry-ttl", type=int, default=15, metavar="SECONDS", help="registration TTL (default 15)")
    parser.add_argument(
        "--cpus",
        type=_cpu_list,
        metavar="LIST",
        help="run the worker on these CPUs only, e.g. 0 or 0-1: lower latency at low load, "
        "throughput bounded by those CPUs (default: every CPU)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="callers must send this file's token as 'authorization: Bearer <token>' metadata; "
        "required for a non-loopback --host (default: no token on loopback)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback --host without a token (default: refused)",
    )
    parser.add_argument(
        "--log-level", default="info", type=str.lower, choices=["debug", "info", "warning", "error"],
        help="debug, info, warning or error, in any case, as for muster serve (default info)",
    )


def _cpu_list(text: str) -> frozenset[int]:
    try:
        return parse_cpus(text)
    except Invalid as exc:
        raise argparse.ArgumentTypeError(exc.rule) from exc


def _options(args: argparse.Namespace) -> WorkerOptions:
    return WorkerOptions(
        adapter=args.adapter,
        host=args.host,
        port=args.port,
        session_ttl_s=args.session_ttl,
        watch_queue_size=args.watch_queue_size,
        max_tool_threads=args.tool_threads,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        max_message_bytes=args.max_message_mb << 20,
        stop_grace_s=args.stop_grace,
        supervised_by=args.supervised_by,
        registry=args.registry,
        registry_name=args.registry_name,
        heartbeat_interval_s=args.heartbeat_interval,
        registry_ttl_s=args.registry_ttl,
        cpus=args.cpus,
        token_file=args.token_file,
        insecure=args.insecure,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM; the exit code (2 for bad options, 1 when serving failed)."""
    configure_logging(str(args.log_level).lower(), door="bridge")
    try:
        with asyncio.Runner(loop_factory=fast_loop_factory()) as runner:
            return runner.run(serve(_options(args)))
    except MusterError as exc:
        print(f"muster bridge: {exc}", file=sys.stderr)
        return 2 if exc.grpc_code.name == "INVALID_ARGUMENT" else 1
