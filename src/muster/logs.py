"""Structured logs: JSON lines on stderr from structlog, request id and door bound per context."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

__all__ = ["configure_logging"]


def configure_logging(level: str = "info", *, door: str | None = None) -> None:
    """JSON lines on stderr, ours and the libraries' alike; ``request_id`` and ``door`` ride along."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # One write of record + newline per line: door processes (and threads) share stderr,
    # and a record written in two pieces can be split by another writer.
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )
    # Records from the standard library's logging (uvicorn, alembic, grpc) get the same JSON form.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.processors.format_exc_info],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
    # uvicorn's access log is replaced by our metrics; alembic narrates every step at INFO.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    if door is not None:
        structlog.contextvars.bind_contextvars(door=door)
