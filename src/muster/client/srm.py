"""``SRMClient``: the symbol registry's async client over gRPC.

    async with SRMClient(target="localhost", port=9090) as srm:
        lease = await srm.reserve(repo="demo", branch="main", fq_name="demo.func",
                                  kind="function", file_path="demo.py", plan_id="P1")
        await srm.claim(lease.lease_id, commit_sha="9fceb02d0ae598e95dc970b74767f19372d61af8")
        print((await srm.lookup(repo="demo", branch="main", fq_name="demo.func")).status)   # active

Inputs are validated before they leave the process (with the models the server
uses), and server errors come back as the same ``MusterError`` subclasses the
service raises: ``Conflict`` (symbol held), ``Expired`` (lease expired),
``FailedPrecondition``, ``NotFound``, ``Invalid``, ``Unavailable``. Every
method returns :class:`~muster.leases.model.Lease` values. A closed client
refuses reuse.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from muster._proto.srm import symbol_pb2 as pb
from muster._proto.srm import symbol_pb2_grpc as pb_grpc
from muster.client._credentials import Credentials
from muster.clock import parse_isoformat
from muster.errors import MusterError, error_for_grpc_code, trailing_metadata_of
from muster.leases.model import (
    DEFAULT_TTL_SEC,
    ClaimInput,
    ExtendInput,
    Lease,
    LeaseEvent,
    LookupInput,
    PlanIdInput,
    PlanSymbol,
    ReleaseInput,
    ReserveInput,
    ReservePlanInput,
)
from muster.leases.service import PlanRelease
from muster.validation import parse

__all__ = ["SRMClient"]

Reply = TypeVar("Reply")


def _ts(value: str) -> datetime | None:
    return parse_isoformat(value)


def lease_from_message(message: pb.Lease) -> Lease:
    reserved_at, updated_at = _ts(message.reserved_at), _ts(message.updated_at)
    assert reserved_at is not None and updated_at is not None
    return Lease(
        lease_id=message.lease_id,
        repo=message.repo,
        branch=message.branch,
        fq_name=message.fq_name,
        kind=message.kind,
        file_path=message.file_path,
        plan_id=message.plan_id or None,
        status=message.status,
        commit_sha=message.commit_sha or None,
        reserved_at=reserved_at,
        expires_at=_ts(message.expires_at),
        updated_at=updated_at,
        owner=message.owner,
    )


def _error(exc: grpc.aio.AioRpcError) -> MusterError:
    return error_for_grpc_code(exc.code(), exc.details(), trailing_metadata_of(exc))


def _symbol_message(symbol: PlanSymbol) -> pb.PlanSymbol:
    return pb.PlanSymbol(
        repo=symbol.repo, branch=symbol.branch, fq_name=symbol.fq_name, kind=symbol.kind, file_path=symbol.file_path
    )


class SRMClient:
    """One method per ``srm.SymbolRegistry`` RPC."""

    def __init__(
        self,
        target: str = "localhost",
        port: int = 9090,
        *,
        rpc_timeout: float = 10.0,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        # "host:port" in ``target`` wins over ``port``; a ``grpcs://`` prefix asks for TLS.
        self.secure = target.startswith("grpcs://")
        target = target.removeprefix("grpcs://").removeprefix("grpc://")
        self.target = target if ":" in target.rsplit("]", 1)[-1] else f"{target}:{port}"
        self.credentials = Credentials.resolve(
            token=token, token_file=token_file, ca_file=ca_file, cert_file=cert_file, key_file=key_file
        )
        self.rpc_timeout = rpc_timeout
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.SymbolRegistryStub | None = None
        self._closed = False

    @classmethod
    async def connect(
        cls, target: str = "localhost", port: int = 9090, *, rpc_timeout: float = 10.0, **credentials: Any
    ) -> SRMClient:
        """As the constructor; ``credentials``: ``token``, ``token_file``, ``ca_file``, ``cert_file``, ``key_file``."""
        client = cls(target, port, rpc_timeout=rpc_timeout, **credentials)
        client._open()
        return client

    def _open(self) -> pb_grpc.SymbolRegistryStub:
        if self._closed:
            raise RuntimeError("this SRMClient is closed; create a new one")
        if self._stub is None:
            # Created on first use, inside the running event loop (grpc.aio binds to it).
            self._channel = self.credentials.grpc_channel(self.target, secure=self.secure)
            self._stub = pb_grpc.SymbolRegistryStub(self._channel)
        return self._stub

    async def __aenter__(self) -> Self:
        self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()

    async def _call(self, method: Callable[[Any], Awaitable[Reply]], request: Any) -> Reply:
        try:
            return await method(request, timeout=self.rpc_timeout)  # type: ignore[call-arg]
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None

    # -- the seed's three operations ------------------------------------------------------

    async def reserve(
        self,
        *,
        repo: str,
        branch: str,
        fq_name: str,
        kind: str,
        file_path: str = "",
        plan_id: str | None = None,
        ttl_sec: int = DEFAULT_TTL_SEC,
    ) -> Lease:
        """Hold the symbol for ``ttl_sec`` seconds; ``Conflict`` if a live lease holds it."""
        data = parse(
            ReserveInput,
            {"repo": repo, "branch": branch, "fq_name": fq_name, "kind": kind,
             "file_path": file_path, "plan_id": plan_id, "ttl_sec": ttl_sec or DEFAULT_TTL_SEC},
        )  # ttl_sec 0 is the default, as on the wire (proto3's unset)
        request = pb.ReserveRequest(
            repo=data.repo, branch=data.branch, fq_name=data.fq_name, kind=data.kind,
            file_path=data.file_path, plan_id=data.plan_id or "", ttl_sec=data.ttl_sec,
        )
        reply = await self._call(self._open().Reserve, request)
        return lease_from_message(reply.lease)

    async def claim(self, lease_id: int, commit_sha: str) -> Lease:
        """Make the reserved symbol active at ``commit_sha`` (idempotent for the same sha)."""
        data = parse(ClaimInput, {"lease_id": lease_id, "commit_sha": commit_sha})
        request = pb.ClaimRequest(lease_id=data.lease_id, commit_sha=data.commit_sha)
        return lease_from_message((await self._call(self._open().Claim, request)).lease)

    async def lookup(self, *, repo: str, branch: str, fq_name: str) -> Lease:
        """The symbol's newest lease as of now (``NotFound`` if it was never reserved)."""
        data = parse(LookupInput, {"repo": repo, "branch": branch, "fq_name": fq_name})
        request = pb.LookupRequest(repo=data.repo, branch=data.branch, fq_name=data.fq_name)
        return lease_from_message((await self._call(self._open().Lookup, request)).lease)

    # -- beyond the seed -------------------------------------------------------------------

    async def release(self, lease_id: int) -> Lease:
        """Give the symbol back (idempotent): reserved → released, active → deprecated."""
        data = parse(ReleaseInput, {"lease_id": lease_id})
        request = pb.ReleaseRequest(lease_id=data.lease_id)
        return lease_from_message((await self._call(self._open().Release, request)).lease)

    async def extend(self, lease_id: int, ttl_sec: int = DEFAULT_TTL_SEC) -> Lease:
        """The reservation now expires ``ttl_sec`` seconds from now (``Expired`` if it already has)."""
        data = parse(ExtendInput, {"lease_id": lease_id, "ttl_sec": ttl_sec or DEFAULT_TTL_SEC})
        request = pb.ExtendRequest(lease_id=data.lease_id, ttl_sec=data.ttl_sec)
        return lease_from_message((await self._call(self._open().Extend, request)).lease)

    async def reserve_plan(
        self,
        plan_id: str,
        symbols: Iterable[Mapping[str, Any] | PlanSymbol],
        *,
        ttl_sec: int = DEFAULT_TTL_SEC,
    ) -> list[Lease]:
        """Reserve every symbol (dicts with repo, branch, fq_name, kind, file_path) or none."""
        items = [s.model_dump() if isinstance(s, PlanSymbol) else dict(s) for s in symbols]
        data = parse(ReservePlanInput, {"plan_id": plan_id, "symbols": items, "ttl_sec": ttl_sec or DEFAULT_TTL_SEC})
        request = pb.ReservePlanRequest(
            plan_id=data.plan_id, symbols=[_symbol_message(s) for s in data.symbols], ttl_sec=data.ttl_sec
        )
        reply = await self._call(self._open().ReservePlan, request)
        return [lease_from_message(m) for m in reply.leases]

    async def get_plan(self, plan_id: str) -> list[Lease]:
        """Every lease taken under ``plan_id``, oldest first."""
        data = parse(PlanIdInput, {"plan_id": plan_id})
        reply = await self._call(self._open().GetPlan, pb.GetPlanRequest(plan_id=data.plan_id))
        return [lease_from_message(m) for m in reply.leases]

    async def release_plan(self, plan_id: str) -> PlanRelease:
        """Release the plan's reservations; claimed symbols stay active."""
        data = parse(PlanIdInput, {"plan_id": plan_id})
        reply = await self._call(self._open().ReleasePlan, pb.ReleasePlanRequest(plan_id=data.plan_id))
        return PlanRelease(reply.plan_id, reply.released, [lease_from_message(m) for m in reply.leases])

    async def watch(self, *, repo: str = "", branch: str = "", since: int | None = None) -> AsyncIterator[LeaseEvent]:
        """Lease events of a repo (or repo/branch) after ``since``, then live ones, until cancelled.

        Resume after a disconnect with ``since=`` the last ``revision`` seen.
        """
        request = pb.WatchRequest(repo=repo, branch=branch)
        if since is not None:
            request.since = since
        call = self._open().Watch(request)
        try:
            async for message in call:
                ts = _ts(message.ts)
                assert ts is not None
                yield LeaseEvent(message.revision, message.kind, lease_from_message(message.lease), ts, message.actor)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and self._closed:
                return
            raise _error(exc) from None
        finally:
            call.cancel()
