"""The session store: lifecycle, idle expiry, variables, batches and watchers (with a fake clock)."""

from __future__ import annotations

import pytest

from muster.bridge.session import SessionStore
from muster.bridge.values import TypedValue
from muster.bridge.variables import Source
from muster.clock import FakeClock
from muster.errors import Invalid, NotFound, ResourceExhausted


def test_initialise_is_idempotent_and_keeps_variables(store: SessionStore) -> None:
    """Initialising twice keeps the session and its variables, and reports it was not new."""
    _, created = store.initialize("s")
    store.register("s", "x", "integer", 1)
    session, created_again = store.initialize("s", {"k": "v"})
    assert (created, created_again) == (True, False)
    assert ([v.name for v in store.list_variables("s")], session.metadata) == (["x"], {"k": "v"})


def test_cleanup_is_true_then_false(store: SessionStore) -> None:
    """Cleaning up a session answers True once, then False."""
    store.initialize("s")
    assert [store.cleanup("s"), store.cleanup("s")] == [True, False]


def test_idle_sessions_expire_after_the_ttl(store: SessionStore, clock: FakeClock) -> None:
    """A session untouched for longer than the TTL is expired; a recently used one survives."""
    store.initialize("idle")
    store.initialize("busy")
    clock.advance(45)
    store.get("busy")
    clock.advance(30)
    assert store.expire_idle() == ["idle"]
    assert ("idle" not in store, "busy" in store) == (True, True)


def test_an_open_watch_keeps_a_session_alive(store: SessionStore, clock: FakeClock) -> None:
    """A session with a watcher is not expired however long it is idle."""
    store.initialize("s")
    store.watch("s", [])
    clock.advance(3600)
    assert store.expire_idle() == []


def test_unknown_session_is_not_found(store: SessionStore) -> None:
    """Variable operations on an unknown session raise NotFound naming it."""
    with pytest.raises(NotFound, match="'nope'"):
        store.get_variable("nope", "x")


def test_variables_resolve_by_id_or_name(store: SessionStore) -> None:
    """A variable can be read by its id and by its name."""
    store.initialize("s")
    variable = store.register("s", "temp", "float", 0.5, constraints_json='{"max": 1}')
    assert variable == store.get_variable("s", variable.id) == store.get_variable("s", "temp")


def test_set_creates_unknown_variables_with_the_value_type(store: SessionStore, clock: FakeClock) -> None:
    """Setting an unknown variable creates it with the type named by the value, source and time set."""
    store.initialize("s")
    variable = store.set_variable("s", "n", TypedValue("integer", 5), source=Source.PYTHON)
    assert ("integer", 5, Source.PYTHON, clock.now()) == (
        variable.type,
        variable.value,
        variable.source,
        variable.last_updated_at,
    )


def test_set_validates_against_the_declared_type(store: SessionStore) -> None:
    """An update is checked against the declared type and constraints, whatever type the value claims."""
    store.initialize("s")
    store.register("s", "mode", "choice", "a", constraints_json='{"choices": ["a", "b"]}')
    store.set_variable("s", "mode", TypedValue("string", "b"))
    with pytest.raises(Invalid, match="mode: choices are"):
        store.set_variable("s", "mode", TypedValue("string", "c"))
    assert store.get_variable("s", "mode").value == "b"


def test_json_values_cannot_create_variables(store: SessionStore) -> None:
    """A value of no variable type cannot create a variable implicitly."""
    store.initialize("s")
    with pytest.raises(Invalid, match="use RegisterVariable"):
        store.set_variable("s", "doc", TypedValue("json", {"a": 1}))


def test_atomic_batch_applies_nothing_on_any_error(store: SessionStore) -> None:
    """An atomic batch with one bad update changes nothing and reports that update."""
    store.initialize("s")
    store.register("s", "a", "integer", 0, constraints_json='{"max": 10}')
    store.register("s", "b", "integer", 0)
    errors = store.set_variables("s", {"a": TypedValue("integer", 11), "b": TypedValue("integer", 1)}, atomic=True)
    assert list(errors) == ["a"]
    assert (store.get_variable("s", "a").value, store.get_variable("s", "b").value) == (0, 0)


def test_non_atomic_batch_applies_the_valid_updates(store: SessionStore) -> None:
    """A non-atomic batch applies what is valid and reports the rest."""
    store.initialize("s")
    store.register("s", "a", "integer", 0, constraints_json='{"max": 10}')
    store.register("s", "b", "integer", 0)
    errors = store.set_variables(
        "s",
        {"a": TypedValue("integer", 11), "b": TypedValue("integer", 1)},
        atomic=False,
        refused={"c": "c: bad value"},
    )
    assert {"a", "c"} == set(errors)
    assert (store.get_variable("s", "a").value, store.get_variable("s", "b").value) == (0, 1)


def test_watch_starts_with_current_values_then_updates(store: SessionStore) -> None:
    """A watcher first holds the current values, then each update with its source."""
    store.initialize("s")
    store.register("s", "x", "integer", 1)
    watcher = store.watch("s", ["x"])
    store.set_variable("s", "x", TypedValue("integer", 2), source=Source.PYTHON)
    events = [watcher.queue.get_nowait() for _ in range(2)]
    assert [(e.variable.value, e.update_source) for e in events if e] == [(1, "INITIAL"), (2, "PYTHON")]


def test_watch_filters_by_variable(store: SessionStore) -> None:
    """A watcher of one variable does not see updates to another."""
    store.initialize("s")
    store.register("s", "x", "integer", 1)
    store.register("s", "y", "integer", 1)
    watcher = store.watch("s", ["x"])
    store.set_variable("s", "y", TypedValue("integer", 2))
    assert watcher.queue.qsize() == 1


def test_slow_watcher_overflows_instead_of_growing(store: SessionStore) -> None:
    """A watcher that falls queue-size updates behind is marked overflowed and stops receiving."""
    store.initialize("s")
    store.register("s", "x", "integer", 0)
    watcher = store.watch("s", ["x"])
    for value in range(1, 10):
        store.set_variable("s", "x", TypedValue("integer", value))
    assert (True, watcher.limit + 1) == (watcher.overflowed, watcher.queue.qsize())


def test_cleanup_ends_watchers(store: SessionStore) -> None:
    """Cleaning up a session puts the end marker in its watchers' queues."""
    store.initialize("s")
    watcher = store.watch("s", [])
    store.cleanup("s")
    assert None is watcher.queue.get_nowait()


def test_delete_notifies_watchers(store: SessionStore) -> None:
    """Deleting a variable removes it and tells its watchers."""
    store.initialize("s")
    store.register("s", "x", "integer", 1)
    watcher = store.watch("s", ["x"])
    watcher.queue.get_nowait()
    store.delete_variable("s", "x")
    event = watcher.queue.get_nowait()
    assert event is not None and event.deleted
    with pytest.raises(NotFound):
        store.get_variable("s", "x")


def test_bounds_on_sessions_and_variables(clock: FakeClock) -> None:
    """Too many sessions or variables is ResourceExhausted, not unbounded growth."""
    small = SessionStore(clock=clock, max_sessions=1, max_variables_per_session=1)
    small.initialize("a")
    small.register("a", "x", "integer", 1)
    with pytest.raises(ResourceExhausted):
        small.initialize("b")
    with pytest.raises(ResourceExhausted):
        small.register("a", "y", "integer", 1)
