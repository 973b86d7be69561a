"""Leases domain: inputs, the lease record and its state machine.

Pure: values in, values out, the time passed in. A lease is one reservation
of a symbol ``(repo, branch, fq_name)``::

    reserve ──> reserved ──claim(sha)──> active ──release──> deprecated
                   │  │
                   │  └──release──> released
                   └──(expires_at passes)──> expired

* *live* means ``reserved`` and not yet expired, or ``active``; at most one
  live lease per symbol exists (the database enforces it).
* A ``reserved`` lease whose ``expires_at`` has passed *is* expired, whether
  or not a transaction has written ``expired`` into its row yet:
  :meth:`Lease.status_at` is the one place that decides it.
* ``claim`` makes a live reservation ``active`` (no expiry); claiming again
  with the same sha is a no-op, with another sha a conflict.
* ``release`` ends a lease: a reservation becomes ``released``, an active
  symbol becomes ``deprecated``; releasing an ended lease changes nothing.
* ``extend`` moves a live reservation's deadline to ``now + ttl_sec``.
* Claiming or extending an expired lease fails with ``Expired`` ("lease
  expired"); an ended lease fails with ``FailedPrecondition``.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
)

from muster.clock import isoformat, parse_isoformat
from muster.errors import Conflict, Expired, FailedPrecondition
from muster.limits import MAX_PLAN_SYMBOLS
from muster.validation import NO_CONTROL_CHARS

__all__ = [
    "DEFAULT_TTL_SEC",
    "KINDS",
    "MAX_PLAN_SYMBOLS",
    "MAX_TTL_SEC",
    "ClaimInput",
    "ExtendInput",
    "Lease",
    "LeaseEvent",
    "LeaseIdInput",
    "LookupInput",
    "PlanIdInput",
    "PlanSymbol",
    "ReleaseInput",
    "ReserveInput",
    "ReservePlanInput",
    "Status",
    "Transition",
    "claim",
    "expire",
    "extend",
    "lease_from_dict",
    "release",
    "subject_of",
    "subject_prefix",
    "timestamp_text",
]

Status = Literal["reserved", "active", "deprecated", "released", "expired"]

DEFAULT_TTL_SEC = 600
MAX_TTL_SEC = 86_400
# Lease ids are JSON-safe integers (every JSON parser reads them exactly); the store counts up from 1.
MAX_LEASE_ID = (1 << 53) - 1

# What a symbol is; the set is closed so consumers can rely on it.
Kind = Literal[
    "class",
    "constant",
    "enum",
    "field",
    "function",
    "interface",
    "macro",
    "method",
    "module",
    "package",
    "property",
    "struct",
    "test",
    "trait",
    "type",
    "variable",
]
KINDS: tuple[str, ...] = get_args(Kind)


def _nfc(value: str) -> str:
    return value if value.isascii() else unicodedata.normalize("NFC", value)


# ``org/app`` and ``demo`` are repos; no spaces or control characters.
Repo = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")]
# Git's ref-name rules, roughly: no spaces, control or invisible format characters, ~ ^ : ? * [ or backslash.
# Names are compared in Unicode NFC, so a name typed decomposed (e + U+0301) is the same symbol as the composed one.
Branch = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255, pattern=r"^[^\s~^:?*\[\\\x00-\x1f\x7f\p{Cf}]+$"),
    AfterValidator(_nfc),
]
# Any language's qualified name: ``demo.func``, ``crate::mod::f``, ``com.x.Y#m``; no whitespace, control
# characters or invisible format characters (zero-width space, bidi marks).
FqName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=500, pattern=r"^[^\s\x00-\x1f\x7f\p{Cf}]+$"),
    AfterValidator(_nfc),
]
FilePath = Annotated[str, StringConstraints(max_length=1024, pattern=NO_CONTROL_CHARS)]
PlanId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")]
# Hex, either case; kept in lower case, so claiming ABCDEF1 after abcdef1 is the same commit.
CommitSha = Annotated[
    str, StringConstraints(min_length=7, max_length=64, pattern=r"^[0-9a-fA-F]+$"), AfterValidator(str.lower)
]
# Numbers in bodies must be JSON numbers: strict, so `true`, "7" or 7.0 are refused, not read as 1 or 7.
LeaseId = Annotated[int, Field(ge=1, le=MAX_LEASE_ID, strict=True)]
TtlSec = Annotated[int, Field(ge=1, le=MAX_TTL_SEC, strict=True)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LookupInput(_Input):
    """``GET /lookup``: which lease holds (or last held) this symbol."""

    repo: Repo
    branch: Branch
    fq_name: FqName

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.repo, self.branch, self.fq_name)


class PlanSymbol(LookupInput):
    """One symbol of a plan: where it lives and what it is."""

    kind: Kind
    # Unset is null in every reply (docs/api.md, "Unset values"); "" is taken as unset too.
    file_path: FilePath | None = Field("", description='The file it lives in; "" or null: not said.')

    @field_validator("file_path", mode="after")
    @classmethod
    def _none_is_empty(cls, value: str | None) -> str:
        return value or ""


class ReserveInput(PlanSymbol):
    """``POST /reserve``: hold a symbol for ``ttl_sec`` seconds before writing it."""

    # "" means no plan, as null does (a proto3 string's default); the schema says so.
    plan_id: Annotated[
        PlanId | None,
        WithJsonSchema({"anyOf": [TypeAdapter(PlanId).json_schema(), {"const": ""}, {"type": "null"}]}),
    ] = Field(None, description='The plan it belongs to; "" or null: none.')
    ttl_sec: TtlSec = DEFAULT_TTL_SEC

    @field_validator("plan_id", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class ReservePlanInput(_Input):
    """``POST /plans/reserve``: reserve every symbol of a plan, or none of them."""

    plan_id: PlanId
    symbols: list[PlanSymbol] = Field(min_length=1, max_length=MAX_PLAN_SYMBOLS)
    ttl_sec: TtlSec = DEFAULT_TTL_SEC

    @field_validator("symbols")
    @classmethod
    def _distinct(cls, value: list[PlanSymbol]) -> list[PlanSymbol]:
        seen: set[tuple[str, str, str]] = set()
        for symbol in value:
            if symbol.key in seen:
                raise ValueError(f"lists {'/'.join(symbol.key)} twice")
            seen.add(symbol.key)
        return value


class LeaseIdInput(_Input):
    lease_id: LeaseId


class ClaimInput(LeaseIdInput):
    """``POST /claim``: the commit landed; the symbol is now active."""

    commit_sha: CommitSha


class ReleaseInput(LeaseIdInput):
    """``POST /release``: give the symbol back."""


class ExtendInput(LeaseIdInput):
    """``POST /extend``: keep the reservation ``ttl_sec`` more seconds from now."""

    ttl_sec: TtlSec = DEFAULT_TTL_SEC


class PlanIdInput(_Input):
    plan_id: PlanId


# -- the lease record ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    """One lease as stored: ``status`` is what the row says, :meth:`status_at` the truth."""

    lease_id: int
    repo: str
    branch: str
    fq_name: str
    kind: str
    file_path: str
    plan_id: str | None
    status: str
    commit_sha: str | None
    reserved_at: datetime
    expires_at: datetime | None
    updated_at: datetime
    # The principal that reserved it: only it (or an admin) may claim, release or extend it.
    owner: str = "anonymous"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.repo, self.branch, self.fq_name)

    @property
    def subject(self) -> str:
        return subject_of(self.repo, self.branch, self.fq_name)

    def status_at(self, now: datetime) -> str:
        """The status by the server's clock: a reservation past its deadline is expired."""
        if self.status == "reserved" and self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return self.status

    def is_live(self, now: datetime) -> bool:
        return self.status_at(now) in ("reserved", "active")

    def as_of(self, now: datetime) -> Lease:
        """This lease as a reader should see it at ``now``."""
        status = self.status_at(now)
        return self if status == self.status else replace(self, status=status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lease_id": self.lease_id,
            "repo": self.repo,
            "branch": self.branch,
            "fq_name": self.fq_name,
            "kind": self.kind,
            "file_path": self.file_path or None,
            "plan_id": self.plan_id,
            "status": self.status,
            "commit_sha": self.commit_sha,
            "reserved_at": timestamp_text(self.reserved_at),
            "expires_at": None if self.expires_at is None else timestamp_text(self.expires_at),
            "updated_at": timestamp_text(self.updated_at),
            "owner": self.owner,
        }


@dataclass(frozen=True, slots=True)
class LeaseEvent:
    """One change of a lease, as a watcher sees it."""

    revision: int
    kind: str
    lease: Lease
    ts: datetime
    actor: str = "anonymous"


# A group of concurrent reserves shares one transaction time and usually one deadline,
# so the same few timestamps are formatted and parsed over and over: remember them.
@functools.lru_cache(maxsize=4096)
def timestamp_text(moment: datetime) -> str:
    """``isoformat(moment)`` (UTC, milliseconds, ``Z``), remembered for recent timestamps."""
    return isoformat(moment) or ""


@functools.lru_cache(maxsize=4096)
def _parse_ts(text: str) -> datetime:
    moment = parse_isoformat(text)
    assert moment is not None
    return moment


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    return _parse_ts(str(value))


def lease_from_dict(data: dict[str, Any]) -> Lease:
    """The inverse of :meth:`Lease.to_dict` (event payloads, HTTP replies)."""
    reserved_at, updated_at = _ts(data["reserved_at"]), _ts(data["updated_at"])
    assert reserved_at is not None and updated_at is not None
    return Lease(
        lease_id=int(data["lease_id"]),
        repo=data["repo"],
        branch=data["branch"],
        fq_name=data["fq_name"],
        kind=data["kind"],
        file_path=data.get("file_path") or "",
        plan_id=data.get("plan_id"),
        status=data["status"],
        commit_sha=data.get("commit_sha"),
        reserved_at=reserved_at,
        expires_at=_ts(data.get("expires_at")),
        updated_at=updated_at,
        owner=data.get("owner", "anonymous"),
    )


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("/", "%2F")


def subject_of(repo: str, branch: str, fq_name: str) -> str:
    """The event subject ``{repo}/{branch}/{fq_name}``, each part with ``%`` and ``/`` escaped.

    Escaping keeps the prefix of one repo/branch unambiguous: repo ``org/app``
    on branch ``main`` and repo ``org`` on branch ``app/main`` differ.
    """
    return f"{_escape(repo)}/{_escape(branch)}/{_escape(fq_name)}"


def subject_prefix(repo: str = "", branch: str = "") -> str:
    """The subject prefix that selects one repo, or one repo/branch ("" = everything)."""
    if not repo:
        return ""
    prefix = _escape(repo) + "/"
    return prefix + _escape(branch) + "/" if branch else prefix


# -- transitions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    """The lease after an operation, and the event to record (``None``: nothing changed)."""

    lease: Lease
    event: str | None


def _ended(lease: Lease, verb: str) -> FailedPrecondition:
    return FailedPrecondition(f"lease {lease.lease_id} is {lease.status}; it cannot be {verb}", field="lease_id")


def _expired(lease: Lease) -> Expired:
    return Expired(
        f"lease expired: lease {lease.lease_id} expired at {isoformat(lease.expires_at)}; reserve the symbol again",
        field="lease_id",
    )


def expire(lease: Lease, now: datetime) -> Transition:
    """Write down an expiry that has already happened by the clock (no-op otherwise)."""
    if lease.status == "reserved" and lease.status_at(now) == "expired":
        return Transition(replace(lease, status="expired", updated_at=now), "leases.expired")
    return Transition(lease, None)


def claim(lease: Lease, commit_sha: str, now: datetime) -> Transition:
    status = lease.status_at(now)
    if status == "reserved":
        active = replace(lease, status="active", commit_sha=commit_sha, expires_at=None, updated_at=now)
        return Transition(active, "leases.claimed")
    if status == "active":
        if lease.commit_sha == commit_sha:
            return Transition(lease, None)
        raise Conflict(
            f"lease {lease.lease_id} is already active at commit {lease.commit_sha}, not {commit_sha}",
            field="commit_sha",
        )
    if status == "expired":
        raise _expired(lease)
    raise _ended(lease, "claimed")


def release(lease: Lease, now: datetime) -> Transition:
    status = lease.status_at(now)
    if status == "reserved":
        return Transition(replace(lease, status="released", expires_at=None, updated_at=now), "leases.released")
    if status == "active":
        return Transition(replace(lease, status="deprecated", updated_at=now), "leases.deprecated")
    if status == "expired":
        return expire(lease, now)  # already free: record the expiry if the row lags
    return Transition(lease, None)


def extend(lease: Lease, ttl_sec: int, now: datetime) -> Transition:
    status = lease.status_at(now)
    if status == "reserved":
        longer = replace(lease, expires_at=now + timedelta(seconds=ttl_sec), updated_at=now)
        return Transition(longer, "leases.extended")
    if status == "expired":
        raise _expired(lease)
    if status == "active":
        raise FailedPrecondition(f"lease {lease.lease_id} is active: it no longer expires", field="lease_id")
    raise _ended(lease, "extended")
