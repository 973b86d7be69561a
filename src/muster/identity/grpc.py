"""``muster.v1.Tokens``: token management over gRPC (admin only)."""

from __future__ import annotations

from typing import Any

from muster._proto.muster.v1 import identity_pb2 as pb
from muster._proto.muster.v1 import identity_pb2_grpc as pb_grpc
from muster.grpc.common import timestamp, unary
from muster.identity import caller
from muster.identity.model import TokenRecord
from muster.identity.service import IdentityService

__all__ = ["SERVICE_NAME", "TokensServicer", "token_message"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Tokens"].full_name


def token_message(record: TokenRecord) -> pb.Token:
    message = pb.Token(name=record.name, scopes=list(record.scopes), created_by=record.created_by)
    for name in ("created_at", "expires_at", "revoked_at", "last_used_at"):
        moment = getattr(record, name)
        if moment is not None:
            getattr(message, name).CopyFrom(timestamp(moment))
    return message


class TokensServicer(pb_grpc.TokensServicer):
    def __init__(self, identity: IdentityService) -> None:
        self.identity = identity

    @unary("Tokens/CreateToken")
    async def CreateToken(self, request: pb.CreateTokenRequest, _context: Any) -> pb.CreateTokenReply:
        issued = await self.identity.create(
            request.name, list(request.scopes), expires=request.expires or None, by=caller.current()
        )
        return pb.CreateTokenReply(token=token_message(issued.record), secret=issued.secret)

    @unary("Tokens/ListTokens")
    async def ListTokens(self, _request: pb.ListTokensRequest, _context: Any) -> pb.ListTokensReply:
        return pb.ListTokensReply(tokens=[token_message(r) for r in await self.identity.list()])

    @unary("Tokens/RevokeToken")
    async def RevokeToken(self, request: pb.RevokeTokenRequest, _context: Any) -> pb.Token:
        return token_message(await self.identity.revoke(request.name))
