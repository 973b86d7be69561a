"""A Hypothesis fuzzer over every method of every Muster gRPC service: 0 INTERNAL, 0 UNKNOWN.

For each method it sends raw bytes (mostly not a message at all) and messages
built from the method's descriptor with arbitrary field values: empty and
huge strings, non-ASCII, extreme integers, out-of-range timestamps. Every
answer must be a status Muster means (OK, INVALID_ARGUMENT, NOT_FOUND, ...),
never INTERNAL or UNKNOWN. ``MUSTER_FUZZ_EXAMPLES`` sets the examples per
method and kind (default 15).
"""

from __future__ import annotations

import os
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServerProcess
from tests.e2e.identity import grpc_util

assert grpc_util  # loads every Muster service into the descriptor pool
_EXAMPLES = int(os.environ.get("MUSTER_FUZZ_EXAMPLES", "15"))
# The suite's short runs draw the same examples every time (a run either finds a failure or never
# does); deep runs (MUSTER_FUZZ_EXAMPLES, ./dev test --fuzz-long) explore at random.
_DERANDOMIZE = "MUSTER_FUZZ_EXAMPLES" not in os.environ
_SERVICES = ("muster.v1.Catalog", "muster.v1.Events", "muster.v1.Graph", "srm.SymbolRegistry", "muster.v1.Tokens")
_METHODS = [m for name in _SERVICES for m in descriptor_pool.Default().FindServiceByName(name).methods]
_BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

# Protobuf strings are UTF-8: no lone surrogates (a client cannot even send them).
_CHARS = st.characters(blacklist_categories=("Cs",))
_TEXT = st.one_of(
    st.text(_CHARS, max_size=40), st.sampled_from(["", "ok", "model", "production", "catalog.", "a/b", "x" * 5_000]),
    st.text(alphabet=st.characters(min_codepoint=0x80, blacklist_categories=("Cs",)), max_size=20),
)
_INTS = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 2**31 - 1, -(2**31)]))
_INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]))


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=40)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return _INT64
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return _message(field.message_type, depth + 1)
    return _INTS


def _message(descriptor: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """A message of ``descriptor`` with an arbitrary subset of its fields set to arbitrary values."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 2:
        return st.just(cls())
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.builds(lambda s, n: cls(seconds=s, nanos=n), _INT64, _INTS)
    fields = {}
    for field in descriptor.fields:
        value = _value(field, depth)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, item = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            fields[field.name] = st.dictionaries(_value(key, depth), _value(item, depth), max_size=3)
        elif field.label == FieldDescriptor.LABEL_REPEATED:
            fields[field.name] = st.lists(value, max_size=3)
        else:
            fields[field.name] = value

    def build(values: dict[str, Any]) -> Any:
        message = cls()
        for name, value in values.items():
            target = getattr(message, name)
            if isinstance(value, dict):
                for k, v in value.items():
                    if hasattr(target[k], "CopyFrom"):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif isinstance(value, list):
                if value and hasattr(value[0], "SerializeToString"):
                    target.extend(value)
                else:
                    target.extend(value)
            elif hasattr(value, "SerializeToString"):
                target.CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries({}, optional=fields).map(build)


def _call(target: str, method: Any, payload: bytes) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    kind = ("stream" if method.client_streaming else "unary") + "_" + ("stream" if method.server_streaming else "unary")
    with grpc.insecure_channel(target) as channel:
        call = getattr(channel, kind)(path, request_serializer=None, response_deserializer=None)
        request = iter([payload]) if method.client_streaming else payload
        try:
            reply = call(request, timeout=2)
            if method.server_streaming:
                next(iter(reply), None)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fuzzed_grpc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A ``muster serve`` per engine, rate limits off (the fuzzer is one caller sending thousands of calls)."""
    import contextlib

    from tests.conftest import server_database

    tmp = tmp_path_factory.mktemp(f"grpc-fuzz-{request.param}")
    with contextlib.ExitStack() as stack:
        server = ServerProcess(
            data_dir=tmp / "data", database_url=server_database(request.param, tmp, stack),
            extra_args=["--rate-limit-writes", "0", "--rate-limit-expensive", "0"],
        ).start()
        stack.callback(server.stop)
        yield server


@pytest.mark.parametrize("method", _METHODS, ids=[f"{m.containing_service.name}/{m.name}" for m in _METHODS])
def test_no_method_answers_internal_or_unknown(fuzzed_grpc: ServerProcess, method: Any) -> None:
    """Raw bytes and arbitrary messages to this method, on each engine, never get INTERNAL or UNKNOWN."""
    shared_server = fuzzed_grpc
    payloads = st.one_of(
        st.binary(max_size=64),
        _message(method.input_type).map(lambda message: message.SerializeToString()),
    )

    calls = 0

    @settings(
        max_examples=_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
        derandomize=_DERANDOMIZE,
    )
    @given(payload=payloads)
    def probe(payload: bytes) -> None:
        nonlocal calls
        calls += 1
        code = _call(shared_server.grpc_target, method, payload)
        assert code not in _BAD, f"{method.full_name} answered {code.name} to {payload[:80]!r}"

    probe()
    _report(shared_server, method.full_name, calls)


def _report(server: ServerProcess, method: str, calls: int) -> None:
    """With ``MUSTER_FUZZ_REPORT=path``, append what this method's run did (for docs/reliability.md)."""
    path = os.environ.get("MUSTER_FUZZ_REPORT")
    if path:
        import json

        engine = "postgresql" if server.database_url else "sqlite"
        with open(path, "a") as report:
            report.write(json.dumps({"fuzzer": "grpc", "engine": engine, "method": method, "calls": calls}) + "\n")


@pytest.fixture(scope="module")
def bridge_target() -> Any:
    """A ``muster bridge`` worker process on a free port, serving the example tools."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    worker = subprocess.Popen([sys.executable, "-m", "muster.cli", "bridge", "--port", "0", "--log-level", "error"],
                              stdout=subprocess.PIPE, text=True, env=env)
    assert worker.stdout is not None
    line = worker.stdout.readline()
    assert line.startswith("GRPC_READY:"), line
    yield f"127.0.0.1:{int(line.strip().rsplit(':', 1)[1])}"
    worker.terminate()
    worker.wait(timeout=20)


def _bridge_methods() -> list[Any]:
    from muster._proto.snakepit.bridge import snakepit_bridge_pb2

    return list(snakepit_bridge_pb2.DESCRIPTOR.services_by_name["SnakepitBridge"].methods)


@pytest.mark.parametrize("method", _bridge_methods(), ids=[m.name for m in _bridge_methods()])
def test_no_bridge_method_answers_internal_or_unknown(bridge_target: str, method: Any) -> None:
    """Raw bytes and arbitrary messages to the bridge worker never get INTERNAL or UNKNOWN."""
    payloads = st.one_of(
        st.binary(max_size=64),
        _message(method.input_type).map(lambda message: message.SerializeToString()),
    )

    @settings(
        max_examples=_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
        derandomize=_DERANDOMIZE,
    )
    @given(payload=payloads)
    def probe(payload: bytes) -> None:
        code = _call(bridge_target, method, payload)
        assert code not in _BAD, f"{method.full_name} answered {code.name} to {payload[:80]!r}"

    probe()
