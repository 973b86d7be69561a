"""The session store: sessions, their variables, idle expiry and watchers.

Plain Python with an injected clock; every method runs on the event loop's
thread (tool code in worker threads reaches it through ``SessionContext``).
Each mutation is published to the session's watchers as a ``VariableEvent``.
Watchers have bounded queues: one that falls ``watch_queue_size`` events
behind is marked overflowed and its stream ends with RESOURCE_EXHAUSTED, so
a slow reader never grows the worker's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from muster.bridge.values import TypedValue
from muster.bridge.variables import VARIABLE_TYPES, Source, Variable, parse_constraints, validate_value
from muster.clock import Clock, SystemClock
from muster.errors import Invalid, NotFound, ResourceExhausted

__all__ = ["Session", "SessionStore", "VariableEvent", "Watcher", "WatcherFactory"]

INITIAL: Final = "INITIAL"


@dataclass(frozen=True, slots=True)
class VariableEvent:
    """One change a watcher sees: a new value, an initial value, or a deletion."""

    variable: Variable
    update_source: str  # "ELIXIR", "PYTHON" or "INITIAL"
    timestamp: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)
    deleted: bool = False


class Watcher:
    """A bounded queue of events for one watch stream.

    The queue holds at most ``limit`` events plus one end marker; when an
    event finds it full the watcher is marked ``overflowed`` and gets nothing
    more. ``None`` in the queue means the session ended.
    """

    def __init__(self, session_id: str, variable_ids: frozenset[str] | None, limit: int) -> None:
        self.session_id = session_id
        self.variable_ids = variable_ids  # None: every variable of the session
        self.limit = limit
        self.overflowed = False
        self.queue: asyncio.Queue[VariableEvent | None] = asyncio.Queue()

    def wants(self, variable_id: str) -> bool:
        return self.variable_ids is None or variable_id in self.variable_ids

    def offer(self, event: VariableEvent) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.queue.put_nowait(None)  # wake the reader so it ends now, not after the backlog
            return
        self.queue.put_nowait(event)

    def deliver_initial(self, event: VariableEvent) -> None:
        """A current value at the start of the watch (its limit already makes room for them)."""
        self.queue.put_nowait(event)

    def end(self) -> None:
        self.queue.put_nowait(None)


WatcherFactory = Callable[[str, "frozenset[str] | None", int], Watcher]
"""Builds a watcher from (session id, variable ids or ``None`` for all, queue limit)."""


@dataclass(slots=True)
class Session:
    id: str
    metadata: dict[str, str]
    created_at: datetime
    last_active_at: datetime
    variables: dict[str, Variable] = field(default_factory=dict)  # by id
    ids_by_name: dict[str, str] = field(default_factory=dict)
    watchers: dict[Watcher, None] = field(default_factory=dict)  # an ordered set: fan-out in watch order
    revision: int = 0  # bumped on every variable change; read caches check it
    calls_in_flight: int = 0  # tool calls running now: the session is not idle while any runs

    def find(self, ref: str) -> Variable | None:
        """A variable by id or, failing that, by name."""
        variable = self.variables.get(ref)
        if variable is None and ref in self.ids_by_name:
            variable = self.variables[self.ids_by_name[ref]]
        return variable


class SessionStore:
    """All sessions of one worker, in memory."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        idle_ttl_s: float = 3600.0,
        watch_queue_size: int = 1024,
        max_sessions: int = 10_000,
        max_variables_per_session: int = 10_000,
    ) -> None:
        self.clock = clock or SystemClock()
        self.idle_ttl_s = idle_ttl_s
        self.watch_queue_size = watch_queue_size
        self.max_sessions = max_sessions
        self.max_variables_per_session = max_variables_per_session
        self._sessions: dict[str, Session] = {}

    # --- sessions ----------------------------------------------------------------------------

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def initialize(self, session_id: str, metadata: Mapping[str, str] | None = None) -> tuple[Session, bool]:
        """The session, created if new (then ``True``); metadata is merged in. Idempotent."""
        if not session_id:
            raise Invalid("session_id", "must not be empty")
        now = self.clock.now()
        session = self._sessions.get(session_id)
        created = session is None
        if session is None:
            if len(self._sessions) >= self.max_sessions:
                raise ResourceExhausted(f"this worker already holds {self.max_sessions} sessions")
            session = Session(session_id, {}, created_at=now, last_active_at=now)
            self._sessions[session_id] = session
        session.metadata.update(metadata or {})
        session.last_active_at = now
        return session, created

    def get(self, session_id: str) -> Session:
        """The session, marked active; ``NotFound`` if unknown or expired."""
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"session {session_id!r} not found (never initialised, cleaned up or expired)")
        session.last_active_at = self.clock.now()
        return session

    def check_current(self, session: Session) -> None:
        """``NotFound`` unless ``session`` is still the live session of its id."""
        if self._sessions.get(session.id) is not session:
            raise NotFound(f"session {session.id!r} has ended (cleaned up or expired)")

    @contextlib.contextmanager
    def in_call(self, session: Session) -> Iterator[None]:
        """A tool call runs in ``session``: it is not idle meanwhile, and active when the call ends."""
        session.calls_in_flight += 1
        try:
            yield
        finally:
            session.calls_in_flight -= 1
            session.last_active_at = self.clock.now()

    def cleanup(self, session_id: str) -> bool:
        """Remove the session and end its watchers; ``False`` if it was unknown."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.revision += 1  # read caches of tool contexts must miss from now on
        for watcher in session.watchers:
            watcher.end()
        session.watchers.clear()
        return True

    def expire_idle(self) -> list[str]:
        """Clean up sessions idle for longer than the TTL; an open watch or a running tool is activity."""
        now = self.clock.now()
        expired = [
            session.id
            for session in self._sessions.values()
            if not session.watchers
            and not session.calls_in_flight
            and (now - session.last_active_at).total_seconds() > self.idle_ttl_s
        ]
        for session_id in expired:
            self.cleanup(session_id)
        return expired

    def clear(self) -> None:
        for session_id in list(self._sessions):
            self.cleanup(session_id)

    # --- variables ---------------------------------------------------------------------------

    def register(
        self,
        session_id: str,
        name: str,
        type_name: str,
        value: Any,
        *,
        constraints_json: str = "",
        metadata: Mapping[str, str] | None = None,
        source: Source = Source.ELIXIR,
    ) -> Variable:
        """Declare a variable (or redeclare it: same name keeps its id)."""
        session = self.get(session_id)
        variable = self._build(session, name, type_name, value, constraints_json, metadata, source)
        self._commit(session, [variable], source, metadata)
        return variable

    def get_variable(self, session_id: str, ref: str) -> Variable:
        variable = self.get(session_id).find(ref)
        if variable is None:
            raise NotFound(f"variable {ref!r} not found in session {session_id!r}", field="variable_id")
        return variable

    def list_variables(self, session_id: str) -> list[Variable]:
        return sorted(self.get(session_id).variables.values(), key=lambda variable: variable.name)

    def set_variable(
        self,
        session_id: str,
        ref: str,
        typed: TypedValue,
        *,
        metadata: Mapping[str, str] | None = None,
        source: Source = Source.ELIXIR,
    ) -> Variable:
        """Update a variable, or create it with the value's type when ``ref`` is unknown."""
        session = self.get(session_id)
        variable = self._updated(session, ref, typed, metadata, source)
        self._commit(session, [variable], source, metadata)
        return variable

    def set_variables(
        self,
        session_id: str,
        updates: Mapping[str, TypedValue],
        *,
        atomic: bool,
        metadata: Mapping[str, str] | None = None,
        source: Source = Source.ELIXIR,
        refused: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Apply a batch; the refused updates' errors by ref. Atomic batches apply all or none.

        ``refused`` carries updates the caller already rejected (say, undecodable
        values): they count as errors of the batch.
        """
        session = self.get(session_id)
        staged: list[Variable] = []
        errors: dict[str, str] = dict(refused or {})
        for ref, typed in updates.items():
            try:
                staged.append(self._updated(session, ref, typed, metadata, source))
            except (Invalid, ResourceExhausted) as exc:
                errors[ref] = str(exc)
        if errors and atomic:
            return errors
        self._commit(session, staged, source, metadata)
        return errors

    def delete_variable(self, session_id: str, ref: str) -> Variable:
        session = self.get(session_id)
        variable = self.get_variable(session_id, ref)
        del session.variables[variable.id]
        del session.ids_by_name[variable.name]
        session.revision += 1
        event = VariableEvent(variable, "DELETED", self.clock.now(), deleted=True)
        self._publish(session, [event])
        return variable

    # --- watching ----------------------------------------------------------------------------

    def watch(self, session_id: str, refs: Iterable[str], make_watcher: WatcherFactory = Watcher) -> Watcher:
        """A watcher holding the current values of ``refs`` (all if empty), then every update.

        ``make_watcher(session_id, variable_ids, limit)`` builds it: a ``Watcher`` with
        its own queue by default, or one that forwards to a shared stream.
        """
        session = self.get(session_id)
        refs = list(refs)
        if refs:
            variables = [self.get_variable(session_id, ref) for ref in refs]
            watcher = make_watcher(session_id, frozenset(v.id for v in variables), self.watch_queue_size)
        else:
            variables = sorted(session.variables.values(), key=lambda variable: variable.name)
            watcher = make_watcher(session_id, None, max(self.watch_queue_size, len(variables)))
        now = self.clock.now()
        seen: set[str] = set()
        for variable in variables:  # each once, in the order asked
            if variable.id not in seen:
                seen.add(variable.id)
                watcher.deliver_initial(VariableEvent(variable, INITIAL, now))
        session.watchers[watcher] = None
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        session = self._sessions.get(watcher.session_id)
        if session is not None:
            session.watchers.pop(watcher, None)

    # --- internals ---------------------------------------------------------------------------

    def _build(
        self,
        session: Session,
        name: str,
        type_name: str,
        value: Any,
        constraints_json: str,
        metadata: Mapping[str, str] | None,
        source: Source,
    ) -> Variable:
        if not name:
            raise Invalid("name", "a variable needs a non-empty name")
        existing = session.find(name)
        if existing is None and len(session.variables) >= self.max_variables_per_session:
            raise ResourceExhausted(f"session {session.id!r} already holds {self.max_variables_per_session} variables")
        constraints = parse_constraints(name, type_name, constraints_json)
        normalised = validate_value(name, type_name, value, constraints)
        return Variable(
            id=existing.id if existing else f"var_{uuid.uuid4().hex[:16]}",
            name=existing.name if existing else name,
            type=type_name,
            value=normalised,
            constraints=constraints,
            last_updated_at=self.clock.now(),
            source=source,
            metadata=dict(metadata or {}),
            version=existing.version + 1 if existing else 1,
        )

    def _updated(
        self,
        session: Session,
        ref: str,
        typed: TypedValue,
        metadata: Mapping[str, str] | None,
        source: Source,
    ) -> Variable:
        existing = session.find(ref)
        if existing is None:
            if typed.type not in VARIABLE_TYPES:
                raise Invalid(
                    ref,
                    f"variable does not exist and a {typed.type!r} value cannot create one "
                    f"(types: {', '.join(VARIABLE_TYPES)}); use RegisterVariable",
                )
            return self._build(session, ref, typed.type, typed.value, "", metadata, source)
        value = validate_value(existing.name, existing.type, typed.value, existing.constraints)
        merged = {**existing.metadata, **(metadata or {})}
        return replace(
            existing,
            value=value,
            last_updated_at=self.clock.now(),
            source=source,
            metadata=merged,
            version=existing.version + 1,
        )

    def _commit(
        self,
        session: Session,
        variables: list[Variable],
        source: Source,
        metadata: Mapping[str, str] | None,
    ) -> None:
        if not variables:
            return
        events = []
        for variable in variables:
            session.variables[variable.id] = variable
            session.ids_by_name[variable.name] = variable.id
            events.append(VariableEvent(variable, source.name, variable.last_updated_at, dict(metadata or {})))
        session.revision += 1
        self._publish(session, events)

    def _publish(self, session: Session, events: list[VariableEvent]) -> None:
        # Event by event, so a shared stream sees one event's watchers back to back.
        for event in events:
            for watcher in session.watchers:
                if watcher.wants(event.variable.id):
                    watcher.offer(event)
