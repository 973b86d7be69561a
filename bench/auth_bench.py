"""Auth benchmark: heartbeats with identity off and on, on both doors, in one run.

    ./dev bench auth [--rounds 2] [--seconds 8] [--database-url postgresql://...]

Starts ``muster serve`` (split doors, SQLite unless told) once with auth off and
once with ``--auth``, alternating over rounds, and drives each with the same
load: HTTP heartbeats from wrk (64 connections, 2 threads) and unary gRPC
``Catalog/Heartbeat`` calls from h2load (16 connections x 8 streams). With auth
on, every request carries a bearer token whose principal owns the services it
beats, so each beat pays for the whole check: header parsing, digest, scope,
ownership. Prints JSON with each round, the medians and the on/off ratios
(target: >= 0.9 on both doors).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from _harness import emit, grpc_frame, h2load_unary, machine, muster_server, progress, wrk  # beside this file

from muster._proto.muster.v1 import catalog_pb2 as pb

TARGET_RATIO = 0.9


def _require(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise SystemExit(f"{tool} not found: apt-get install -y {package}")


def _register(http_url: str, headers: dict[str, str], count: int) -> list[str]:
    with httpx.Client(base_url=http_url, headers=headers, timeout=30) as http:
        ids = []
        for i in range(count):
            body = {"name": f"bench-{i}", "type": "model", "url": f"http://10.0.0.{i % 250}:80",
                    "heartbeat_interval_s": 60, "ttl_s": 90}
            reply = http.post("/register", json=body)
            reply.raise_for_status()
            ids.append(reply.json()["service_id"])
        return ids


def _script(ids: list[str], token: str | None, directory: Path) -> str:
    listed = "\n".join(f'"{sid}",' for sid in ids)
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    path = directory / ("beat-auth.lua" if token else "beat.lua")
    path.write_text(
        'wrk.method = "PUT"\nwrk.headers["Content-Type"] = "application/json"\n' + auth
        + f"local ids = {{\n{listed}\n}}\nlocal n = 0\n"
        "request = function()\n  n = n + 1\n  local id = ids[(n % #ids) + 1]\n"
        "  return wrk.format(nil, \"/heartbeat\", nil, "
        "'{\"service_id\":\"' .. id .. '\",\"status\":\"ok\",\"load\":0.3,\"p95_ms\":12.5}')\nend\n"
    )
    return str(path)


@contextmanager
def _fresh_database(admin_url: str | None) -> Iterator[str | None]:
    """A new, empty PostgreSQL database beside ``admin_url``'s for one round (SQLite: ``None``)."""
    if admin_url is None:
        yield None
        return
    name = f"muster_auth_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _round(auth: bool, options: argparse.Namespace, work: Path) -> dict[str, Any]:
    extra = ["--auth"] if auth else []
    with _fresh_database(options.database_url) as url, muster_server(database_url=url, extra=extra) as server:
        headers: dict[str, str] = {}
        token: str | None = None
        if auth:
            admin = (server.data_dir / "admin.token").read_text().strip()
            reply = httpx.post(f"{server.http_url}/tokens", headers={"authorization": f"Bearer {admin}"},
                               json={"name": "bench-agent", "scopes": ["catalog:write"]})
            reply.raise_for_status()
            token = reply.json()["token"]
            headers = {"authorization": f"Bearer {token}"}
        ids = _register(server.http_url, headers, options.services)
        http = wrk(server.http_url, connections=64, seconds=options.seconds, script=_script(ids, token, work),
                   threads=2)
        frame = work / "beat.bin"
        frame.write_bytes(grpc_frame(pb.HeartbeatRequest(service_id=ids[0], status="ok", load=0.3)))
        port = int(server.grpc_target.rsplit(":", 1)[1])
        grpc = h2load_unary(port, "/muster.v1.Catalog/Heartbeat", frame, connections=16, streams=8,
                            duration=options.seconds, headers=headers)
        if http["non_2xx"] or grpc["failed"]:
            raise SystemExit(f"refused requests in the {'auth' if auth else 'open'} round: {http} {grpc}")
        return {"http_beats_per_s": http["rps"], "http_p99_ms": http["p99_ms"],
                "grpc_beats_per_s": round(grpc["rps"]), "grpc_p99_ms": grpc["p99_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating off/on rounds (default 2)")
    parser.add_argument("--seconds", type=int, default=8, help="seconds of load per door and round (default 8)")
    parser.add_argument("--services", type=int, default=500, help="services registered and beaten (default 500)")
    parser.add_argument("--database-url", help="postgresql://.../db: each round gets a fresh database beside it "
                        "(default: SQLite in a temporary folder)")
    options = parser.parse_args()
    _require("wrk", "wrk")
    _require("h2load", "nghttp2-client")
    work = Path(tempfile.mkdtemp(prefix="auth-bench-"))
    result: dict[str, Any] = {"machine": machine(), "engine": "postgresql" if options.database_url else "sqlite",
                              "rounds": []}
    for number in range(options.rounds):
        for auth in (False, True):
            progress(f"round {number + 1}/{options.rounds}: auth {'on' if auth else 'off'}")
            result["rounds"].append({"auth": auth, **_round(auth, options, work)})
    summary: dict[str, Any] = {}
    for door in ("http", "grpc"):
        off = statistics.median(r[f"{door}_beats_per_s"] for r in result["rounds"] if not r["auth"])
        on = statistics.median(r[f"{door}_beats_per_s"] for r in result["rounds"] if r["auth"])
        summary[door] = {"auth_off_per_s": round(off), "auth_on_per_s": round(on),
                         "ratio_on_to_off": round(on / off, 3), "target_ratio": TARGET_RATIO}
    result["summary"] = summary
    shutil.rmtree(work, ignore_errors=True)
    emit(result)
    sys.exit(0)


if __name__ == "__main__":
    main()
