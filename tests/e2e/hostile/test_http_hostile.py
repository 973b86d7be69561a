"""Hostile HTTP input gets Muster's error shape and the right status: 404, 405 with Allow, 413, 415, bad JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess


def _shape(reply: httpx.Response) -> dict[str, str]:
    body = reply.json()
    assert {"error", "message"} <= set(body), body
    assert "detail" not in body
    return dict(body)


def test_unknown_route_is_404_in_musters_words(shared_server: ServerProcess) -> None:
    """An unknown path answers 404 with {"error": "not_found", ...}, never FastAPI's {"detail": ...}."""
    reply = httpx.get(shared_server.http_url + "/no/such/route")
    assert 404 == reply.status_code
    body = _shape(reply)
    assert "not_found" == body["error"] and "/no/such/route" in body["message"]


def test_wrong_method_is_405_with_allow(shared_server: ServerProcess) -> None:
    """A known path with the wrong method (OPTIONS too) answers 405, lists the allowed methods in Allow."""
    for method in ("DELETE", "OPTIONS"):
        reply = httpx.request(method, shared_server.http_url + "/register")
        assert 405 == reply.status_code, method
        assert "POST" in reply.headers["allow"]
        assert "method_not_allowed" == _shape(reply)["error"]


def test_json_syntax_error_names_the_body_with_line_and_column(shared_server: ServerProcess) -> None:
    """A body that is not JSON: 422, field "body", "request body is not valid JSON (line 1, column N)"."""
    reply = httpx.post(shared_server.http_url + "/register", content=b'{"name": "x",, }',
                       headers={"content-type": "application/json"})
    assert 422 == reply.status_code
    body = _shape(reply)
    assert "body" == body["field"]
    assert "request body is not valid JSON (line 1, column" in body["message"]


def test_a_body_that_is_not_json_by_its_type_is_415(shared_server: ServerProcess) -> None:
    """A text/plain body on a JSON route answers 415 and is not parsed."""
    reply = httpx.post(shared_server.http_url + "/register", content=b'{"name": "x"}',
                       headers={"content-type": "text/plain"})
    assert 415 == reply.status_code
    assert "unsupported_media_type" == _shape(reply)["error"]


def test_oversized_bodies_are_413_plain_or_chunked(shared_server: ServerProcess) -> None:
    """A body over the limit answers 413, whether its length is declared or it comes chunked."""
    big = b'{"name": "' + b"x" * 2_000_000 + b'"}'
    declared = httpx.post(shared_server.http_url + "/register", content=big,
                          headers={"content-type": "application/json"})
    assert 413 == declared.status_code

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    chunked = httpx.post(shared_server.http_url + "/register", content=chunks(),
                         headers={"content-type": "application/json"})
    assert 413 == chunked.status_code
    assert "resource_exhausted" == _shape(chunked)["error"]


def test_unknown_query_parameters_are_refused_by_name(shared_server: ServerProcess) -> None:
    """A typo in a query parameter (/discover?caps=...) is a 422 naming it and the one meant, on any route."""
    reply = httpx.get(shared_server.http_url + "/discover", params={"caps": "infer"})
    assert 422 == reply.status_code
    body = _shape(reply)
    assert "caps" == body["field"] and "did you mean cap?" in body["message"]
    other = httpx.get(shared_server.http_url + "/services", params={"stat": "ok"})
    assert 422 == other.status_code and "status" in other.json()["message"]
    assert 200 == httpx.get(shared_server.http_url + "/discover", params={"cap": "infer"}).status_code


def _trickle(port: int, data: bytes, pause: float, limit: float) -> bool:
    """Send ``data`` a byte at a time; whether the server closed the connection before ``limit`` seconds."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        return _trickle_on(sock, data, pause, limit)


def test_slow_clients_are_cut_off_and_memory_stays_bounded(server_factory: Any) -> None:
    """Headers or a body trickled a byte at a time are cut off at their deadline; 200 of them cost little memory."""
    import socket

    import psutil

    server = server_factory(extra_args=["--http-header-timeout", "1", "--http-body-timeout", "1"])
    headers = b"GET /health HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 200 + b"\r\n\r\n"
    assert _trickle(server.http_port, headers, 0.2, 15)
    body_head = b"POST /register HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=15) as sock:
        sock.sendall(body_head)
        assert _trickle_on(sock, b"{" + b" " * 150, 0.2, 15)
    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss
    sockets = [socket.create_connection(("127.0.0.1", server.http_port)) for _ in range(200)]
    try:
        for sock in sockets:
            sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n")  # never finished
        grown = process.memory_info().rss - before
    finally:
        for sock in sockets:
            sock.close()
    assert grown < 64 * 2**20, f"200 slow connections grew the HTTP door by {grown / 2**20:.1f} MiB"
    assert 200 == httpx.get(server.http_url + "/health").status_code


def _trickle_on(sock: Any, data: bytes, pause: float, limit: float) -> bool:
    import time

    started = time.monotonic()
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return True
        sock.settimeout(pause)
        try:
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            pass
        if time.monotonic() - started > limit:
            return False
    return False


def test_oversized_headers_are_refused_with_431(shared_server: ServerProcess) -> None:
    """A request whose headers pass 64 KiB is answered 431 in Muster's shape and the connection closed."""
    import socket

    with socket.create_connection(("127.0.0.1", shared_server.http_port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 431")
    assert b'"error":"resource_exhausted"' in data


def test_unparsable_http_is_answered_400_in_muster_shape(shared_server: ServerProcess) -> None:
    """A header with a control character, which the HTTP parser refuses, is answered 400 as JSON naming `request`."""
    import json
    import socket

    with socket.create_connection(("127.0.0.1", shared_server.http_port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-bad: a\x01b\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/json" in head.lower()
    answer = json.loads(body)
    assert answer["error"] == "invalid_argument"
    assert answer["field"] == "request"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/register", {"name": " payments", "type": "agent", "url": "http://h:1"}, "name"),
        ("/plans/reserve", {"plan_id": "p1", "symbols": [
            {"repo": "r", "branch": "main", "fq_name": "pkg.f ", "kind": "function"}]}, "symbols[0].fq_name"),
    ],
)
def test_surrounding_whitespace_is_refused_not_trimmed(
    shared_server: ServerProcess, path: str, body: dict[str, object], field: str
) -> None:
    """A name with surrounding spaces breaks its pattern, as the schema says: 422 naming it, never trimmed."""
    answer = httpx.post(shared_server.http_url + path, json=body)
    assert 422 == answer.status_code, answer.text
    assert field == answer.json()["field"]


def test_a_client_that_leaves_mid_body_is_no_server_error(shared_server: ServerProcess) -> None:
    """A client that closes its connection halfway through a request body costs no 500, no error line and
    no traceback in the log: it is logged as gone, at info."""
    import socket
    import time

    assert shared_server.log_path is not None
    before = len(shared_server.log_path.read_text(errors="replace"))
    for path in ("/reserve", "/register"):
        with socket.create_connection(("127.0.0.1", shared_server.http_port)) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: 200\r\n\r\n{\"repo\": ".encode())
            time.sleep(0.2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        written = shared_server.log_path.read_text(errors="replace")[before:]
        if written.count('"event":"http.request"') >= 2:
            break
        time.sleep(0.05)
    statuses = [json.loads(line)["status"] for line in written.splitlines() if '"event":"http.request"' in line]
    assert len(statuses) == 2 and all(400 <= status < 500 for status in statuses), written[-2000:]
    assert "Traceback" not in written and '"level":"error"' not in written
