"""Muster's exceptions: one tree, one mapping to HTTP and gRPC.

    MusterError                     base of everything Muster raises on purpose
    ├── Invalid                     bad input: a field breaks a rule        422 / INVALID_ARGUMENT
    ├── NotFound                    no such id or name                      404 / NOT_FOUND
    ├── Conflict                    already exists / held by someone else   409 / ALREADY_EXISTS
    ├── FailedPrecondition          state does not allow the operation      409 / FAILED_PRECONDITION
    │   └── Expired                 the lease or reservation has expired    409 / FAILED_PRECONDITION
    ├── Unauthenticated             no token, or an unknown/expired one     401 / UNAUTHENTICATED
    ├── PermissionDenied            the token lacks the scope, or the thing 403 / PERMISSION_DENIED
    │                               belongs to another principal
    ├── RateLimited                 too many writes or expensive reads      429 / RESOURCE_EXHAUSTED
    ├── Unavailable                 store unreachable, shutting down        503 / UNAVAILABLE
    └── ResourceExhausted           a bound was hit (body, list, queue)     413 / RESOURCE_EXHAUSTED

Each class carries its HTTP status and gRPC status code, so the doors translate
errors in exactly one place and the client maps them back to the same class,
whichever transport it used. ``field`` names the offending input field where
there is one; ``message`` says the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import grpc

__all__ = [
    "Conflict",
    "Expired",
    "FailedPrecondition",
    "Invalid",
    "MusterError",
    "NotFound",
    "PermissionDenied",
    "Pruned",
    "RateLimited",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "error_for_grpc_code",
    "error_for_http_status",
    "error_from_code",
    "grpc_trailing_metadata",
    "trailing_metadata_of",
]


class MusterError(Exception):
    """Base class: an error that is part of Muster's API."""

    http_status: ClassVar[int] = 500
    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    code: ClassVar[str] = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class Invalid(MusterError):
    """A field of the request breaks a rule; the message names both."""

    http_status = 422
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    code = "invalid_argument"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}", field=field)
        self.rule = rule


class NotFound(MusterError):
    """The id or name does not exist (or no longer does)."""

    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND
    code = "not_found"


class Conflict(MusterError):
    """The thing already exists or is held by someone else."""

    http_status = 409
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    code = "already_exists"


class FailedPrecondition(MusterError):
    """The current state does not allow the operation."""

    http_status = 409
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    code = "failed_precondition"


class Expired(FailedPrecondition):
    """The lease or reservation has expired by the server's clock."""

    code = "expired"


class Pruned(FailedPrecondition):
    """A watch asked to resume from a revision the event log no longer keeps (see retention)."""

    code = "pruned"


class Unauthenticated(MusterError):
    """No credentials, or credentials Muster does not accept (unknown, revoked, expired, malformed)."""

    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    code = "unauthenticated"


class PermissionDenied(MusterError):
    """The principal is known but may not do this: a missing scope, or another principal's thing."""

    http_status = 403
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    code = "permission_denied"


class RateLimited(MusterError):
    """The caller spent its budget of writes or expensive reads; ``retry_after`` says when to come back."""

    http_status = 429
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float = 1.0, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class Unavailable(MusterError):
    """The store cannot be reached or the server is shutting down."""

    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE
    code = "unavailable"


class ResourceExhausted(MusterError):
    """A bound was hit: request body, list length, queue depth."""

    http_status = 413
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    code = "resource_exhausted"


_BY_CODE: dict[str, type[MusterError]] = {
    cls.code: cls
    for cls in (
        Invalid, NotFound, Conflict, FailedPrecondition, Expired, Pruned, Unauthenticated, PermissionDenied,
        RateLimited, Unavailable, ResourceExhausted,
    )
}
_BY_GRPC: dict[grpc.StatusCode, type[MusterError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: Invalid,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


def _build(cls: type[MusterError], message: str, field: str | None) -> MusterError:
    if cls is Invalid:
        rule = message.split(": ", 1)[1] if field and message.startswith(f"{field}: ") else message
        return Invalid(field or "request", rule)
    return cls(message, field=field)


def error_from_code(code: str, message: str, field: str | None) -> MusterError:
    """Rebuild an exception from its Muster error code (as carried in a reply message)."""
    return _build(_BY_CODE.get(code, MusterError), message or code, field)


def error_for_http_status(status: int, body: dict[str, Any]) -> MusterError:
    """Rebuild the exception a server reported over HTTP (client side)."""
    cls = _BY_CODE.get(str(body.get("error", "")))
    if cls is None:
        cls = {
            401: Unauthenticated, 403: PermissionDenied, 422: Invalid, 404: NotFound, 409: Conflict, 429: RateLimited,
            503: Unavailable, 413: ResourceExhausted,
        }.get(
            status, MusterError
        )
    message = str(body.get("message") or body.get("detail") or f"HTTP {status}")
    return _build(cls, message, body.get("field"))


ERROR_CODE_KEY = "muster-error"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "muster"


def grpc_trailing_metadata(error: MusterError) -> tuple[tuple[str, str | bytes], ...]:
    """Trailing metadata a servicer sends with ``error``: Muster's code, and the rich status.

    The status details stay the plain human message, so clients generated from
    the proto alone read a clean error. The rich status (``google.rpc.Status``
    in ``grpc-status-details-bin``, as grpcio-status and every gRPC language
    read it) carries an ``ErrorInfo`` (reason: Muster's error code, domain
    ``muster``) and, when a field is at fault, a ``BadRequest`` naming it. The
    field never travels as a metadata value of its own: metadata must be ASCII,
    field paths need not be. ``muster-error`` (always ASCII) repeats the code
    for clients that read metadata only.
    """
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.code, domain=ERROR_DOMAIN))
    details = [info]
    if error.field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=getattr(error, "rule", error.message)
        )
        bad = any_pb2.Any()
        bad.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        details.append(bad)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        from google.protobuf import duration_pb2

        retry = any_pb2.Any()
        wait = duration_pb2.Duration()
        wait.FromNanoseconds(int(retry_after * 1e9))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=wait))
        details.append(retry)
    status = status_pb2.Status(code=error.grpc_code.value[0], message=error.message, details=details)
    return ((ERROR_CODE_KEY, error.code), (STATUS_DETAILS_KEY, status.SerializeToString()))


def error_for_grpc_code(
    code: grpc.StatusCode, details: str | None, metadata: Mapping[str, str | bytes] | None = None
) -> MusterError:
    """Rebuild the exception a server reported over gRPC (client side), from its trailing metadata."""
    metadata = metadata or {}
    message = details or code.name
    reason, field = _rich_status(metadata.get(STATUS_DETAILS_KEY))
    named = metadata.get(ERROR_CODE_KEY)
    reason = reason or (named if isinstance(named, str) else "")
    cls = _BY_CODE.get(reason) or _BY_GRPC.get(code, MusterError)
    return _build(cls, message, field)


def _rich_status(raw: str | bytes | None) -> tuple[str, str | None]:
    """(Muster's error code, the field at fault) from a ``google.rpc.Status``; empty where absent."""
    if not isinstance(raw, bytes):
        return "", None
    from google.protobuf.message import DecodeError
    from google.rpc import error_details_pb2, status_pb2

    try:
        status = status_pb2.Status.FromString(raw)
    except DecodeError:
        return "", None
    reason, field = "", None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations:
                field = bad.field_violations[0].field
    return reason, field


def trailing_metadata_of(exc: grpc.RpcError) -> dict[str, str | bytes]:
    """A failed call's trailing metadata as a dict, values as received (``-bin`` ones are bytes)."""
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    return {str(key): value for key, value in (trailing or ())}
