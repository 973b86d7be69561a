"""The principal of the operation under way, carried with the request's context.

A door (the ASGI middleware, the gRPC interceptor) sets it once per request
after verifying the caller; the service layer reads it where ownership is
decided and the store stamps it on every event as ``actor``. Where auth is off
nobody sets it, and every request runs as
:data:`~muster.identity.model.ANONYMOUS`; the server's own background work (the
heartbeat monitor, the lease sweeper) sets :data:`~muster.identity.model.SYSTEM`
when it starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from muster.identity.model import ANONYMOUS, Principal

__all__ = ["acting_as", "current", "set_current"]

_current: ContextVar[Principal] = ContextVar("muster_principal", default=ANONYMOUS)


def current() -> Principal:
    return _current.get()


def set_current(principal: Principal) -> None:
    """Set the principal for the rest of this task (a door does this once per request)."""
    _current.set(principal)


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    token = _current.set(principal)
    try:
        yield principal
    finally:
        _current.reset(token)
