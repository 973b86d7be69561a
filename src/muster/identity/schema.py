"""Identity tables: tokens, kept as digests (the secret itself is never stored)."""

from __future__ import annotations

from sqlalchemy import Column, Table, Text

from muster.store.schema import JSONType, UTCDateTime, metadata

__all__ = ["tokens"]

tokens = Table(
    "tokens",
    metadata,
    Column("name", Text, primary_key=True),
    # SHA-256 of the secret, hex; unique so one secret can never name two principals.
    Column("digest", Text, nullable=False, unique=True),
    Column("scopes", JSONType, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
)
