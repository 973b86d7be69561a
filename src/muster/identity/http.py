"""The identity HTTP routes: ``/tokens`` (admin only)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from muster.http.responses import JSON
from muster.identity import caller
from muster.identity.service import IdentityService

__all__ = ["CreateTokenInput", "router"]


Scope = Literal[
    "catalog:read", "catalog:write", "leases:read", "leases:write", "graph:read", "graph:write", "events:read", "admin"
]


class CreateTokenInput(BaseModel):
    """``POST /tokens``: the schema states every rule :mod:`muster.identity.model` enforces."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$",
        description="1 to 128 of letters, digits and . _ : @ / -, starting with a letter or digit",
    )
    scopes: list[Scope] = Field(min_length=1, max_length=8)
    expires: str | None = Field(
        None, pattern=r"^[1-9][0-9]{0,5}[smhdw]$", description="30d, 12h, 90m, 2w or 45s from now; absent: never"
    )


def router(identity: IdentityService) -> APIRouter:
    api = APIRouter(tags=["identity"])

    @api.post("/tokens", summary="Make a token (admin); its secret is in this reply only", status_code=201)
    async def create(body: CreateTokenInput) -> Response:
        issued = await identity.create(body.name, list(body.scopes), expires=body.expires, by=caller.current())
        return JSON(issued.to_dict(), status_code=201)

    @api.get("/tokens", summary="Every token, revoked ones included (admin); never the secrets")
    async def list_tokens() -> Response:
        return JSON({"tokens": [r.to_dict() for r in await identity.list()]})

    @api.delete("/tokens/{name:path}", summary="Revoke a token (admin); refused everywhere within a second")
    async def revoke(name: str) -> Response:
        return JSON((await identity.revoke(name)).to_dict())

    return api
