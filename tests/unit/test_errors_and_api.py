"""The error tree maps once to HTTP and gRPC and back; public exports are pinned."""

from __future__ import annotations

import grpc
import pytest

import muster
import muster.client
from muster.errors import (
    Conflict,
    Expired,
    FailedPrecondition,
    Invalid,
    MusterError,
    NotFound,
    ResourceExhausted,
    Unavailable,
    error_for_grpc_code,
    error_for_http_status,
    grpc_trailing_metadata,
)

ALL = [Invalid("name", "must not be empty"), NotFound("no such service", field="service_id"),
       Conflict("taken"), FailedPrecondition("not now"), Expired("lease expired"), Unavailable("down"),
       ResourceExhausted("too big")]


@pytest.mark.parametrize("error", ALL, ids=lambda e: type(e).__name__)
def test_errors_round_trip_over_http(error: MusterError) -> None:
    """A server error rebuilt from its HTTP status and body is the same class, message and field."""
    rebuilt = error_for_http_status(error.http_status, error.to_dict())
    assert (type(error), error.message, error.field) == (type(rebuilt), rebuilt.message, rebuilt.field)


@pytest.mark.parametrize("error", ALL, ids=lambda e: type(e).__name__)
def test_errors_round_trip_over_grpc(error: MusterError) -> None:
    """A server error rebuilt from its gRPC code, details and trailing metadata is the same class."""
    rebuilt = error_for_grpc_code(error.grpc_code, error.message, dict(grpc_trailing_metadata(error)))
    assert (type(error), error.message, error.field) == (type(rebuilt), rebuilt.message, rebuilt.field)


def test_status_codes_follow_the_contract() -> None:
    """Invalid is 422/INVALID_ARGUMENT, NotFound 404, Conflict 409/ALREADY_EXISTS, Expired 409/FAILED_PRECONDITION."""
    assert (Invalid.http_status, Invalid.grpc_code) == (422, grpc.StatusCode.INVALID_ARGUMENT)
    assert (NotFound.http_status, NotFound.grpc_code) == (404, grpc.StatusCode.NOT_FOUND)
    assert (Conflict.http_status, Conflict.grpc_code) == (409, grpc.StatusCode.ALREADY_EXISTS)
    assert (Expired.http_status, Expired.grpc_code) == (409, grpc.StatusCode.FAILED_PRECONDITION)


def test_foreign_grpc_errors_map_by_code() -> None:
    """Without Muster's metadata the status code alone picks the class."""
    assert isinstance(error_for_grpc_code(grpc.StatusCode.NOT_FOUND, "gone"), NotFound)


def test_public_exports_are_pinned() -> None:
    """The package's public names are exactly these (a change here is an API change)."""
    assert sorted(muster.__all__) == muster.__all__
    assert {"Conflict", "Expired", "FailedPrecondition", "Invalid", "MusterError", "NotFound",
            "ResourceExhausted", "Unavailable", "__version__"} == set(muster.__all__)
    assert {"HeartbeatStream", "KeepAlive", "MusterClient", "SRMClient"} <= set(muster.client.__all__)


def test_a_heartbeat_stream_result_keeps_its_error_class() -> None:
    """found=false is NotFound (register again); a failed beat of a known service is its own error class."""
    from muster._proto.muster.v1 import catalog_pb2 as pb
    from muster.client import _stream_result

    missing = _stream_result(pb.HeartbeatReply(service_id="s", found=False, error="gone", error_code="not_found"))
    bad = _stream_result(
        pb.HeartbeatReply(service_id="s", found=True, error="status: bad", error_code="invalid_argument",
                          error_field="status")
    )
    away = _stream_result(pb.HeartbeatReply(service_id="s", found=True, error="store", error_code="unavailable"))
    assert (type(missing).__name__, type(bad).__name__, bad.field, type(away).__name__) == (
        "NotFound", "Invalid", "status", "Unavailable"
    )


def test_cli_server_without_a_scheme_is_a_usage_error_naming_both(capsys: pytest.CaptureFixture[str]) -> None:
    """``--server localhost:8080`` could be either door: exit 2 with the two URLs to choose from, no traceback."""
    from muster.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["services", "--server", "localhost:8080"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "http://localhost:8080" in err and "grpc://localhost:8080" in err and "Traceback" not in err


def test_every_cli_option_says_its_default() -> None:
    """Each option of every muster subcommand (bridge included) states its default in its help."""
    import argparse

    from muster.cli import _parser

    silent: list[str] = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    walk(subparser, f"{name} {sub}")
            elif action.option_strings and action.dest != "help" and "default" not in (action.help or ""):
                silent.append(f"{name} {action.option_strings[0]}")

    walk(_parser(), "muster")
    assert silent == []


def test_log_levels_are_read_in_any_case() -> None:
    """``--log-level WARNING`` and ``warning`` are the same, for serve and bridge alike."""
    from muster.cli import _parser

    assert _parser().parse_args(["serve", "--log-level", "WARNING"]).log_level == "warning"
    assert _parser().parse_args(["bridge", "--adapter", "m.C", "--log-level", "Debug"]).log_level == "debug"
