"""Queries for tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.identity.model import TokenRecord
from muster.identity.schema import tokens

__all__ = ["get_token", "insert_token", "load_tokens", "revoke_token", "touch_tokens"]


def _record(row: Any) -> TokenRecord:
    return TokenRecord(
        name=row.name,
        digest=row.digest,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


async def load_tokens(conn: AsyncConnection) -> list[TokenRecord]:
    return [_record(row) for row in await conn.execute(select(tokens).order_by(tokens.c.created_at, tokens.c.name))]


async def get_token(conn: AsyncConnection, name: str) -> TokenRecord | None:
    row = (await conn.execute(select(tokens).where(tokens.c.name == name))).first()
    return None if row is None else _record(row)


async def insert_token(conn: AsyncConnection, record: TokenRecord) -> None:
    await conn.execute(
        tokens.insert().values(
            name=record.name,
            digest=record.digest,
            scopes=list(record.scopes),
            created_at=record.created_at,
            created_by=record.created_by,
            expires_at=record.expires_at,
        )
    )


async def revoke_token(conn: AsyncConnection, name: str, now: datetime) -> bool:
    """Mark the token revoked; ``False`` if it was revoked already."""
    result = await conn.execute(
        update(tokens).where(tokens.c.name == name, tokens.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    return result.rowcount == 1


_TOUCH = (
    update(tokens)
    .where(tokens.c.name == bindparam("n"))
    .where((tokens.c.last_used_at.is_(None)) | (tokens.c.last_used_at < bindparam("t")))
    .values(last_used_at=bindparam("t"))
)


async def touch_tokens(conn: AsyncConnection, used: dict[str, datetime]) -> None:
    """Record when each token was last used (soft state: written in batches, no event)."""
    if used:
        await conn.execute(_TOUCH, [{"n": name, "t": moment} for name, moment in used.items()])
