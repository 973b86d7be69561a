"""The identity HTTP routes: ``/tokens`` (admin only)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from muster.http.responses import JSON
from muster.identity import caller
from muster.identity.service import IdentityService

__all__ = ["CreateTokenInput", "router"]


class CreateTokenInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="letters, digits and . _ : @ / -")
    scopes: list[str] = Field(min_length=1, max_length=8, description="catalog:read ... admin")
    expires: str | None = Field(None, max_length=16, description="30d, 12h, 90m, 2w or 45s from now; absent: never")


def router(identity: IdentityService) -> APIRouter:
    api = APIRouter(tags=["identity"])

    @api.post("/tokens", summary="Make a token (admin); its secret is in this reply only")
    async def create(body: CreateTokenInput) -> Response:
        issued = await identity.create(body.name, body.scopes, expires=body.expires, by=caller.current())
        return JSON(issued.to_dict(), status_code=201)

    @api.get("/tokens", summary="Every token, revoked ones included (admin); never the secrets")
    async def list_tokens() -> Response:
        return JSON({"tokens": [r.to_dict() for r in await identity.list()]})

    @api.delete("/tokens/{name:path}", summary="Revoke a token (admin); refused everywhere within a second")
    async def revoke(name: str) -> Response:
        return JSON((await identity.revoke(name)).to_dict())

    return api
