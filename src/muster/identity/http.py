"""The identity HTTP routes: ``/tokens`` (admin only)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from muster.http.responses import JSON
from muster.identity import caller
from muster.identity.model import EXPIRY_PATTERN, NAME_PATTERN, SCOPES
from muster.identity.service import IdentityService

__all__ = ["CreateTokenInput", "router"]


class CreateTokenInput(BaseModel):
    """``POST /tokens``. The rules live in :mod:`muster.identity.model`, which both doors call, so the same
    bad input gets the same error over HTTP and gRPC; the schema states them for the contract."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="1 to 128 of letters, digits and . _ : @ / -, starting with a letter or digit",
        json_schema_extra={"pattern": NAME_PATTERN, "minLength": 1, "maxLength": 128},
    )
    scopes: list[str] = Field(json_schema_extra={"items": {"type": "string", "enum": list(SCOPES)}, "minItems": 1})
    expires: str | None = Field(
        None,
        description="30d, 12h, 90m, 2w or 45s from now, at most 100 years; absent: never",
        json_schema_extra={"pattern": EXPIRY_PATTERN},
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
