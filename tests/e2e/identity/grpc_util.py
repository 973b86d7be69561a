"""Call any Muster RPC by its full name with a dict request (sync grpc; tests only)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory

# Load every Muster service into the default descriptor pool.
from muster._proto.muster.v1 import catalog_pb2, events_pb2, graph_pb2, identity_pb2  # noqa: F401
from muster._proto.srm import symbol_pb2  # noqa: F401


def call(
    target: str, method: str, request: dict[str, Any], token: str | None, *, credentials: Any = None,
    metadata: list[tuple[str, Any]] | None = None, timeout: float = 10.0,
) -> tuple[grpc.StatusCode, str, Any]:
    """(code, details, first reply) of one call; streams are read to their first message."""
    desc = descriptor_pool.Default().FindMethodByName(method.strip("/").replace("/", "."))
    request_class = message_factory.GetMessageClass(desc.input_type)
    reply_class = message_factory.GetMessageClass(desc.output_type)
    message = json_format.ParseDict(request, request_class())
    sent = list(metadata or [])
    if token is not None:
        sent.append(("authorization", f"Bearer {token}"))
    channel = grpc.secure_channel(target, credentials) if credentials is not None else grpc.insecure_channel(target)
    with channel:
        kind = ("stream" if desc.client_streaming else "unary") + "_" + ("stream" if desc.server_streaming else "unary")
        stub = getattr(channel, kind)(
            method, request_serializer=request_class.SerializeToString, response_deserializer=reply_class.FromString
        )
        try:
            if desc.client_streaming and desc.server_streaming:
                stream = stub(iter([message]), metadata=sent, timeout=timeout)
                return grpc.StatusCode.OK, "", next(stream)
            if desc.server_streaming:
                stream = stub(message, metadata=sent, timeout=timeout)
                first = next(stream)
                stream.cancel()
                return grpc.StatusCode.OK, "", first
            return grpc.StatusCode.OK, "", stub(message, metadata=sent, timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", None
