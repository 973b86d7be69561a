"""The lease state machine and input validation, with a fake clock and no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from muster.clock import FakeClock
from muster.errors import Conflict, Expired, FailedPrecondition, Invalid
from muster.leases import model
from muster.leases.model import (
    ClaimInput,
    ExtendInput,
    Lease,
    LookupInput,
    ReserveInput,
    ReservePlanInput,
    subject_of,
    subject_prefix,
)
from muster.validation import parse

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
OTHER_SHA = "e83c5163316f89bfbde7d9ab23ca2e25604af290"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def reserved(clock: FakeClock, ttl: int = 60, **overrides: Any) -> Lease:
    now = clock.now()
    values: dict[str, Any] = {
        "lease_id": 7,
        "repo": "demo",
        "branch": "main",
        "fq_name": "demo.func",
        "kind": "function",
        "file_path": "demo.py",
        "plan_id": None,
        "status": "reserved",
        "commit_sha": None,
        "reserved_at": now,
        "expires_at": now + timedelta(seconds=ttl),
        "updated_at": now,
    }
    values.update(overrides)
    return Lease(**values)


def test_reservation_is_live_until_its_deadline_and_expired_at_it(clock: FakeClock) -> None:
    """A reservation is live before expires_at and reads expired from that instant on."""
    lease = reserved(clock, ttl=60)
    clock.advance(59.999)
    assert (lease.status_at(clock.now()), lease.is_live(clock.now())) == ("reserved", True)
    clock.advance(0.001)
    assert (lease.status_at(clock.now()), lease.is_live(clock.now())) == ("expired", False)
    assert lease.as_of(clock.now()).status == "expired"


def test_claim_makes_a_live_reservation_active_without_expiry(clock: FakeClock) -> None:
    """Claim turns reserved into active, records the sha and drops the deadline."""
    clock.advance(10)
    step = model.claim(reserved(clock), SHA, clock.now())
    assert (
        step.event, step.lease.status, step.lease.commit_sha, step.lease.expires_at
    ) == ("leases.claimed", "active", SHA, None)
    clock.advance(10**6)
    assert step.lease.is_live(clock.now())


def test_claim_with_the_same_sha_is_a_no_op_and_another_sha_conflicts(clock: FakeClock) -> None:
    """Claim is idempotent for one sha; a second sha on an active lease is a Conflict."""
    active = model.claim(reserved(clock), SHA, clock.now()).lease
    again = model.claim(active, SHA, clock.now())
    assert (None, active) == (again.event, again.lease)
    with pytest.raises(Conflict):
        model.claim(active, OTHER_SHA, clock.now())


def test_claim_and_extend_after_expiry_fail_with_lease_expired(clock: FakeClock) -> None:
    """Claim or extend of an overdue reservation raises Expired whose message starts "lease expired"."""
    lease = reserved(clock, ttl=5)
    clock.advance(5)
    with pytest.raises(Expired) as claimed:
        model.claim(lease, SHA, clock.now())
    with pytest.raises(Expired) as extended:
        model.extend(lease, 60, clock.now())
    assert claimed.value.message.startswith("lease expired")
    assert extended.value.message.startswith("lease expired")
    assert isinstance(claimed.value, FailedPrecondition)


def test_extend_moves_the_deadline_to_now_plus_ttl(clock: FakeClock) -> None:
    """Extend sets expires_at to the current time plus ttl_sec (not the old deadline plus ttl)."""
    lease = reserved(clock, ttl=30)
    clock.advance(20)
    step = model.extend(lease, 100, clock.now())
    assert ("leases.extended", clock.now() + timedelta(seconds=100)) == (step.event, step.lease.expires_at)


def test_extend_of_active_or_ended_leases_is_a_failed_precondition(clock: FakeClock) -> None:
    """Active leases never expire and ended leases cannot come back: both refuse extend."""
    active = model.claim(reserved(clock), SHA, clock.now()).lease
    released = model.release(reserved(clock), clock.now()).lease
    for lease in (active, released):
        with pytest.raises(FailedPrecondition):
            model.extend(lease, 60, clock.now())


def test_release_ends_reservations_and_deprecates_active_symbols(clock: FakeClock) -> None:
    """Release: reserved → released, active → deprecated."""
    assert (
        model.release(reserved(clock), clock.now()).event,
        model.release(reserved(clock), clock.now()).lease.status,
    ) == ("leases.released", "released")
    active = model.claim(reserved(clock), SHA, clock.now()).lease
    step = model.release(active, clock.now())
    assert (step.event, step.lease.status) == ("leases.deprecated", "deprecated")


def test_release_is_idempotent(clock: FakeClock) -> None:
    """Releasing an ended lease changes nothing and records no event."""
    released = model.release(reserved(clock), clock.now()).lease
    step = model.release(released, clock.now())
    assert (None, released) == (step.event, step.lease)


def test_release_of_an_overdue_reservation_records_its_expiry(clock: FakeClock) -> None:
    """Releasing a reservation past its deadline writes it down as expired (it was already free)."""
    lease = reserved(clock, ttl=1)
    clock.advance(2)
    step = model.release(lease, clock.now())
    assert (step.event, step.lease.status) == ("leases.expired", "expired")


def test_ended_leases_cannot_be_claimed(clock: FakeClock) -> None:
    """A released or deprecated lease refuses claim with FailedPrecondition (not Expired)."""
    released = model.release(reserved(clock), clock.now()).lease
    with pytest.raises(FailedPrecondition) as raised:
        model.claim(released, SHA, clock.now())
    assert not isinstance(raised.value, Expired)


def test_expire_is_a_no_op_before_the_deadline(clock: FakeClock) -> None:
    """expire() only records an expiry the clock has already reached."""
    lease = reserved(clock, ttl=10)
    assert None is model.expire(lease, clock.now()).event
    clock.advance(10)
    assert model.expire(lease, clock.now()).event == "leases.expired"


def test_lease_round_trips_through_its_dict(clock: FakeClock) -> None:
    """to_dict and lease_from_dict are inverses (event payloads rebuild the same lease)."""
    lease = replace(reserved(clock), plan_id="P1")
    lease = replace(lease, reserved_at=lease.reserved_at.replace(microsecond=123000))
    assert lease == model.lease_from_dict(lease.to_dict())


def test_subjects_escape_slashes_so_repo_and_branch_prefixes_are_unambiguous() -> None:
    """repo org/app on branch main and repo org on branch app/main have distinct subjects."""
    one = subject_of("org/app", "main", "x.f")
    two = subject_of("org", "app/main", "x.f")
    assert one != two
    assert one.startswith(subject_prefix("org/app", "main"))
    assert not two.startswith(subject_prefix("org/app", "main"))
    assert subject_of("demo", "main", "demo.func") == "demo/main/demo.func"
    assert subject_prefix() == ""


SEED_BODY = {
    "repo": "demo",
    "branch": "main",
    "fq_name": "demo.func",
    "kind": "function",
    "file_path": "demo.py",
    "plan_id": "P1",
}


def test_the_seed_body_is_valid_and_ttl_defaults_to_600() -> None:
    """The seed's smoke-test body parses, with ttl_sec 600 by default."""
    data = parse(ReserveInput, SEED_BODY)
    assert (data.ttl_sec, data.plan_id) == (600, "P1")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"repo": ""}, "repo"),
        ({"branch": ""}, "branch"),
        ({"fq_name": ""}, "fq_name"),
        ({"fq_name": "x" * 501}, "fq_name"),
        ({"fq_name": "has space"}, "fq_name"),
        ({"repo": "r" * 201}, "repo"),
        ({"branch": "a b"}, "branch"),
        ({"kind": "gadget"}, "kind"),
        ({"ttl_sec": 0}, "ttl_sec"),
        ({"ttl_sec": 86_401}, "ttl_sec"),
        ({"ttl_sec": 1.5}, "ttl_sec"),
        ({"file_path": "a\nb"}, "file_path"),
        ({"plan_id": " /bad"}, "plan_id"),
        ({"owner": "me"}, "owner"),
    ],
)
def test_bad_reserve_input_names_the_field(change: dict[str, Any], field: str) -> None:
    """Each broken rule raises Invalid naming the offending field."""
    with pytest.raises(Invalid) as raised:
        parse(ReserveInput, {**SEED_BODY, **change})
    assert field == raised.value.field


def test_ttl_bounds_are_inclusive() -> None:
    """ttl_sec 1 and 86400 are both accepted."""
    assert [parse(ReserveInput, {**SEED_BODY, "ttl_sec": t}).ttl_sec for t in (1, 86_400)] == [1, 86_400]


@pytest.mark.parametrize("sha", ["", "abc", "g" * 40, "a" * 65])
def test_claim_needs_a_hex_commit_sha(sha: str) -> None:
    """commit_sha must be 7 to 64 hex digits."""
    with pytest.raises(Invalid) as raised:
        parse(ClaimInput, {"lease_id": 1, "commit_sha": sha})
    assert raised.value.field == "commit_sha"


@pytest.mark.parametrize("lease_id", [0, -1, 1 << 63])
def test_lease_ids_are_positive_int64(lease_id: int) -> None:
    """lease_id must fit a positive int64."""
    with pytest.raises(Invalid):
        parse(ExtendInput, {"lease_id": lease_id})


def test_plans_are_bounded_and_list_each_symbol_once() -> None:
    """A plan needs 1..500 symbols, none of them twice."""
    symbol = {k: v for k, v in SEED_BODY.items() if k not in ("plan_id",)}
    for symbols in ([], [symbol] * 2, [{**symbol, "fq_name": f"f{i}"} for i in range(501)]):
        with pytest.raises(Invalid) as raised:
            parse(ReservePlanInput, {"plan_id": "P1", "symbols": symbols})
        assert raised.value.field is not None and raised.value.field.startswith("symbols")


def test_lookup_needs_all_three_parts() -> None:
    """Lookup without branch is Invalid naming branch."""
    with pytest.raises(Invalid) as raised:
        parse(LookupInput, {"repo": "demo", "branch": "", "fq_name": "demo.func"})
    assert raised.value.field == "branch"


@pytest.mark.parametrize("field", ["repo", "branch", "fq_name", "file_path"])
def test_control_characters_are_refused(field: str) -> None:
    """A NUL or newline in any text field is Invalid (PostgreSQL text cannot even hold NUL)."""
    with pytest.raises(Invalid) as raised:
        parse(ReserveInput, {**SEED_BODY, field: "a\x00b"})
    assert field == raised.value.field


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (ClaimInput, {"lease_id": True, "commit_sha": "abcdef1"}, "lease_id"),
        (ClaimInput, {"lease_id": "7", "commit_sha": "abcdef1"}, "lease_id"),
        (ExtendInput, {"lease_id": 7.0}, "lease_id"),
        (ReserveInput, {**SEED_BODY, "ttl_sec": True}, "ttl_sec"),
        (ReserveInput, {**SEED_BODY, "ttl_sec": "600"}, "ttl_sec"),
    ],
)
def test_numbers_must_be_json_numbers(model: Any, body: dict[str, Any], field: str) -> None:
    """`true`, "7" or 7.0 for a lease id or a TTL is Invalid, never read as 1 or 7."""
    with pytest.raises(Invalid) as raised:
        parse(model, body)
    assert raised.value.field == field


def test_names_are_compared_in_nfc_and_invisible_characters_are_refused() -> None:
    """A decomposed name is the composed symbol; a zero-width space or bidi mark in a name is Invalid."""
    composed = parse(ReserveInput, {**SEED_BODY, "fq_name": "caf\u00e9", "branch": "f\u00e9ature"})
    decomposed = parse(ReserveInput, {**SEED_BODY, "fq_name": "cafe\u0301", "branch": "fe\u0301ature"})
    assert (composed.fq_name, composed.branch) == (decomposed.fq_name, decomposed.branch)
    for field, value in (("fq_name", "zw\u200bsp"), ("branch", "main\u200e")):
        with pytest.raises(Invalid) as raised:
            parse(ReserveInput, {**SEED_BODY, field: value})
        assert raised.value.field == field


def test_commit_sha_is_kept_in_lower_case() -> None:
    """ABCDEF1 and abcdef1 are the same commit: the sha is stored in lower case."""
    assert parse(ClaimInput, {"lease_id": 1, "commit_sha": "ABCDEF1"}).commit_sha == "abcdef1"
