"""Pure identity rules: scopes, bearer parsing, expiry, ownership."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from muster.errors import Invalid, PermissionDenied, Unauthenticated
from muster.identity.model import (
    ANONYMOUS,
    SCOPES,
    Principal,
    TokenRecord,
    bearer_secret,
    check_name,
    check_scopes,
    digest,
    new_secret,
    parse_expiry,
    require_owner,
)
from muster.identity.scopes import scope_for_grpc, scope_for_http

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def test_write_implies_read_of_the_same_context_only() -> None:
    """catalog:write allows catalog:read, not leases:read; admin allows everything."""
    writer = Principal("w", frozenset({"catalog:write"}))
    assert writer.allows("catalog:read") and writer.allows("catalog:write")
    assert not writer.allows("leases:read") and not writer.allows("events:read") and not writer.allows("admin")
    reader = Principal("r", frozenset({"graph:read"}))
    assert not reader.allows("graph:write")
    admin = Principal("a", frozenset({"admin"}))
    assert all(admin.allows(scope) for scope in SCOPES)


def test_secrets_are_long_random_and_stored_as_digests() -> None:
    """A secret carries 256 random bits; its digest is SHA-256 hex and never the secret."""
    first, second = new_secret(), new_secret()
    assert first != second and first.startswith("mst_") and len(first) >= 4 + 43
    assert 64 == len(digest(first)) and first not in digest(first)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER abc", "abc")],
)
def test_bearer_header_is_parsed(header: str | None, expected: str | None) -> None:
    """Bearer is case-insensitive and spaces around the secret are dropped; no header is no secret."""
    assert expected == bearer_secret(header)


@pytest.mark.parametrize(
    ("header", "says"),
    [("Basic dXNlcg==", "Bearer <token>"), ("Bearer", "empty"), ("Bearer   ", "empty"), ("abc", "Bearer <token>"),
     ("Bearer " + "x" * 10_000, "malformed"), ("Bearer caf\u00e9", "malformed"), ("Bearer a\x00b", "malformed")],
)
def test_malformed_bearer_headers_are_unauthenticated(header: str, says: str) -> None:
    """Wrong scheme, empty, oversized, non-ASCII or unprintable tokens are refused, saying why."""
    with pytest.raises(Unauthenticated, match=says):
        bearer_secret(header)


def test_expiry_is_parsed_from_now() -> None:
    """30d, 12h, 90m, 2w and 45s are offsets from now; nothing means never."""
    assert NOW + timedelta(days=30) == parse_expiry("30d", NOW)
    assert NOW + timedelta(minutes=90) == parse_expiry("90m", NOW)
    assert NOW + timedelta(weeks=2) == parse_expiry("2w", NOW)
    assert parse_expiry(None, NOW) is None and parse_expiry("", NOW) is None
    for bad in ("30", "0d", "-1d", "1y", "1.5h", "d30"):
        with pytest.raises(Invalid, match="expires"):
            parse_expiry(bad, NOW)


def test_names_and_scopes_are_checked() -> None:
    """Names follow one pattern; scopes must be known, at least one, duplicates folded."""
    assert "ci/deploy-1@eu" == check_name("ci/deploy-1@eu")
    for bad in ("", "-lead", "sp ace", "x" * 129, "caf\u00e9"):
        with pytest.raises(Invalid, match="name"):
            check_name(bad)
    assert ("catalog:read",) == check_scopes(["catalog:read", "catalog:read"])
    with pytest.raises(Invalid, match="unknown scope 'catalog:admin'"):
        check_scopes(["catalog:admin"])
    with pytest.raises(Invalid, match="required"):
        check_scopes([])


def test_token_usable_until_revoked_or_expired() -> None:
    """A token is usable before its expiry and until it is revoked."""
    record = TokenRecord("t", "d", ("catalog:read",), NOW, "admin", expires_at=NOW + timedelta(hours=1))
    assert record.usable(NOW) and not record.usable(NOW + timedelta(hours=1))
    assert not TokenRecord("t", "d", ("admin",), NOW, "admin", revoked_at=NOW).usable(NOW)


def test_only_the_owner_or_an_admin_acts_on_owned_things() -> None:
    """Another principal is refused; the owner, an admin, and anything made with auth off are allowed."""
    alice, bob = Principal("alice", frozenset({"catalog:write"})), Principal("bob", frozenset({"catalog:write"}))
    require_owner(alice, "alice", "service s")
    require_owner(Principal("root", frozenset({"admin"})), "alice", "service s")
    require_owner(bob, "anonymous", "service s")
    require_owner(ANONYMOUS, "alice", "service s")  # auth off: every caller is anonymous, with admin
    with pytest.raises(PermissionDenied, match="service s belongs to alice"):
        require_owner(bob, "alice", "service s")


def test_unlisted_routes_and_methods_fail_closed() -> None:
    """Anything the scope table does not name needs admin; /metrics is open unless metrics_auth."""
    assert "admin" == scope_for_http("GET", "/not-in-the-table", metrics_auth=False)
    assert "admin" == scope_for_grpc("/muster.v1.Secret/Method")
    assert scope_for_http("GET", "/metrics", metrics_auth=False) is None
    assert "admin" == scope_for_http("GET", "/metrics", metrics_auth=True)
    assert "catalog:write" == scope_for_http("PUT", "/heartbeat", metrics_auth=False)


@pytest.mark.parametrize("check", ["token name", "expiry", "service url", "graph service id"])
def test_a_trailing_newline_is_refused_as_the_schema_patterns_say(check: str) -> None:
    """Python's ``$`` also matches before a final newline; JSON Schema's does not: the code refuses it too."""
    from muster.catalog.model import RegisterInput
    from muster.graph.model import service_id_can_exist
    from muster.validation import parse

    if check == "token name":
        with pytest.raises(Invalid):
            check_name("G\n")
    elif check == "expiry":
        with pytest.raises(Invalid):
            parse_expiry("30d\n", datetime(2026, 1, 1, tzinfo=UTC))
    elif check == "service url":
        with pytest.raises(Invalid):
            parse(RegisterInput, {"name": "a", "type": "tool", "url": "http://10.0.0.5:8000\n"})
    else:
        assert not service_id_can_exist("checkout\n") and service_id_can_exist("checkout")
