"""``SessionContext``: what a tool sees of its session.

Tools read and write the session's variables through it; writes are marked
``PYTHON`` and reach every watcher. The methods are plain (not coroutines)
and safe from both kinds of tool: on the event loop they call the store
directly; from a sync tool's worker thread they hop onto the loop and wait.

Reads go through a short cache: an entry is served while it is younger than
``cache_ttl_s`` *and* the session has not changed since (its revision), so a
cached read is never stale, and a sync tool re-reading a variable skips the
hop onto the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

from muster.bridge.session import Session, SessionStore
from muster.bridge.values import TypedValue, infer_type
from muster.bridge.variables import Source, Variable

__all__ = ["SessionContext"]

T = TypeVar("T")

_LOOP_CALL_TIMEOUT_S = 30.0


class SessionContext:
    """One session's variables, as seen from tool code."""

    def __init__(
        self,
        store: SessionStore,
        session: Session,
        loop: asyncio.AbstractEventLoop,
        *,
        cache_ttl_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._session = session
        self._loop = loop
        self.cache_ttl_s = cache_ttl_s
        self._monotonic = monotonic
        self._cache: dict[str, tuple[Any, int, float]] = {}  # name → (value, revision, expires)

    @property
    def session_id(self) -> str:
        return self._session.id

    @property
    def metadata(self) -> dict[str, str]:
        """The session's metadata, as given to InitializeSession."""
        return dict(self._session.metadata)

    # --- reads -------------------------------------------------------------------------------

    def get_variable(self, name: str, *, bypass_cache: bool = False) -> Any:
        """The value of a variable (by name or id); ``NotFound`` if there is none."""
        if not bypass_cache:
            hit = self._cache.get(name)
            if hit is not None and hit[1] == self._session.revision and hit[2] > self._monotonic():
                return copy.deepcopy(hit[0])
        revision = self._session.revision
        variable = self._on_loop(self._store.get_variable, self.session_id, name)
        self._remember(name, variable.value, revision)
        return copy.deepcopy(variable.value)

    def __getitem__(self, name: str) -> Any:
        return self.get_variable(name)

    def variables(self) -> dict[str, Any]:
        """Every variable of the session: name → value."""
        listed = self._on_loop(self._store.list_variables, self.session_id)
        return {variable.name: copy.deepcopy(variable.value) for variable in listed}

    def describe(self, name: str) -> Variable:
        """The whole stored variable: type, constraints, source, timestamps."""
        return self._on_loop(self._store.get_variable, self.session_id, name)

    # --- writes ------------------------------------------------------------------------------

    def set_variable(self, name: str, value: Any, *, metadata: Mapping[str, str] | None = None) -> None:
        """Update a variable, or create it with the type the value suggests."""
        typed = TypedValue(infer_type(value), value)

        def write() -> tuple[Variable, int]:
            variable = self._store.set_variable(self.session_id, name, typed, metadata=metadata, source=Source.PYTHON)
            return variable, self._session.revision  # read on the loop: no write can slip in between

        variable, revision = self._on_loop(write)
        self._remember(name, variable.value, revision)

    def __setitem__(self, name: str, value: Any) -> None:
        self.set_variable(name, value)

    def register_variable(
        self,
        name: str,
        type_name: str,
        value: Any,
        *,
        constraints: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Declare a typed variable with constraints (see docs/bridge.md for the rules)."""
        constraints_json = orjson.dumps(dict(constraints)).decode() if constraints else ""
        self._on_loop(
            lambda: self._store.register(
                self.session_id,
                name,
                type_name,
                value,
                constraints_json=constraints_json,
                metadata=metadata,
                source=Source.PYTHON,
            )
        )

    def delete_variable(self, name: str) -> None:
        self._on_loop(self._store.delete_variable, self.session_id, name)
        self._cache.pop(name, None)

    # --- internals ---------------------------------------------------------------------------

    def _remember(self, name: str, value: Any, revision: int) -> None:
        if self.cache_ttl_s > 0:
            self._cache[name] = (value, revision, self._monotonic() + self.cache_ttl_s)

    def _on_loop(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` on the store's loop thread and return its result.

        ``NotFound`` once this context's session has ended, even if a new session took its id since:
        a tool still running from a cleaned-up session must not read or write its successor.
        """
        def checked(*args: Any) -> T:
            self._store.check_current(self._session)
            return function(*args)

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return checked(*args)
        if running is not None:
            raise RuntimeError("SessionContext belongs to another event loop")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(checked(*args))
                except BaseException as exc:  # handed to the waiting thread, which re-raises it
                    future.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        return future.result(timeout=_LOOP_CALL_TIMEOUT_S)
