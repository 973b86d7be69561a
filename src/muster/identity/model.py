"""Pure identity values: scopes, principals, token secrets and the rules they follow.

A token is a random secret of 256 bits, shown once when it is made and kept
only as its SHA-256 digest. A slow password hash would buy nothing here: the
secret is never chosen by a person, so guessing it is as hard as guessing the
digest's preimage, and verification must stay cheap on every request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from muster.errors import Invalid, PermissionDenied

__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "CONTEXT_SCOPES",
    "EXPIRY_PATTERN",
    "NAME_PATTERN",
    "SCOPES",
    "SYSTEM",
    "Principal",
    "TokenRecord",
    "bearer_secret",
    "check_name",
    "check_scopes",
    "digest",
    "new_secret",
    "parse_expiry",
    "require_owner",
]

CONTEXT_SCOPES = ("catalog", "leases", "graph")
SCOPES = (
    "catalog:read",
    "catalog:write",
    "leases:read",
    "leases:write",
    "graph:read",
    "graph:write",
    "events:read",
    "admin",
)
ADMIN = "admin"
SECRET_PREFIX = "mst_"
# Longer than any secret Muster makes (4 + 43 characters) by a wide margin, short enough to
# refuse a 10 KB header before hashing it.
MAX_SECRET_CHARS = 256
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$"
EXPIRY_PATTERN = r"^([1-9][0-9]{0,5})([smhdw])$"
_NAME = re.compile(NAME_PATTERN)
_EXPIRY = re.compile(EXPIRY_PATTERN)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_LIFETIME_S = 36_500 * 86_400


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's name (or a certificate's CN) and what it may do."""

    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def allows(self, scope: str) -> bool:
        """``admin`` allows everything; ``X:write`` allows ``X:read``."""
        if scope in self.scopes or ADMIN in self.scopes:
            return True
        context, _, level = scope.partition(":")
        return level == "read" and f"{context}:write" in self.scopes


# Auth off: every caller is this principal, with every scope (and owns nothing in particular).
ANONYMOUS = Principal("anonymous", frozenset(SCOPES))
# Muster's own background work (the heartbeat monitor, the lease sweeper, retention).
SYSTEM = Principal("muster", frozenset(SCOPES))
# Records made while auth was off belong to nobody in particular: any principal with the
# context's write scope may act on them.
_UNOWNED = frozenset({ANONYMOUS.name, ""})


def require_owner(principal: Principal, owner: str | None, what: str) -> None:
    """Refuse, as ``PermissionDenied``, a principal acting on what another principal made."""
    if owner is None or owner in _UNOWNED or owner == principal.name or principal.is_admin:
        return
    raise PermissionDenied(f"{what} belongs to {owner}; only its owner or an admin token may change it")


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token as Muster keeps it: never the secret, only its digest."""

    name: str
    digest: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def principal(self) -> Principal:
        return Principal(self.name, frozenset(self.scopes))

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def to_dict(self) -> dict[str, Any]:
        from muster.clock import isoformat

        return {
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": isoformat(self.created_at),
            "created_by": self.created_by,
            "expires_at": isoformat(self.expires_at),
            "revoked_at": isoformat(self.revoked_at),
            "last_used_at": isoformat(self.last_used_at),
        }


def new_secret() -> str:
    """A fresh token secret: ``mst_`` and 256 random bits, URL-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise Invalid(
            "name",
            "must be 1 to 128 characters: letters, digits and . _ : @ / -, starting with a letter or digit",
        )
    return name


def check_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    if not scopes:
        raise Invalid("scopes", "required: at least one of " + ", ".join(SCOPES))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise Invalid("scopes", f"unknown scope {unknown[0]!r}; known: " + ", ".join(SCOPES))
    return tuple(dict.fromkeys(scopes))


def parse_expiry(text: str | None, now: datetime) -> datetime | None:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` from now; ``None`` or empty: never expires."""
    if not text:
        return None
    match = _EXPIRY.fullmatch(text)
    if match is None:
        raise Invalid("expires", "must be a whole number followed by s, m, h, d or w, e.g. 30d")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > _MAX_LIFETIME_S:
        raise Invalid("expires", "at most 100 years (36500d)")
    return now + timedelta(seconds=seconds)


def bearer_secret(header: str | None) -> str | None:
    """The secret in ``Bearer <secret>``, or ``None`` when there is no header at all.

    Raises ``Unauthenticated`` for a header that is present but not a usable bearer token.
    """
    from muster.errors import Unauthenticated

    if header is None:
        return None
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated("authorization must be 'Bearer <token>'")
    secret = secret.strip()
    if not secret:
        raise Unauthenticated("authorization carries an empty token")
    if len(secret) > MAX_SECRET_CHARS or not secret.isascii() or not secret.isprintable():
        raise Unauthenticated("authorization carries a malformed token")
    return secret
