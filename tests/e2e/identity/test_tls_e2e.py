"""TLS and mTLS on both doors, with the Python client and with curl, from a throwaway CA made by the test."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from muster.client import MusterClient
from muster.errors import PermissionDenied, Unavailable
from tests.conftest import ServerProcess
from tests.e2e.identity.conftest import start_auth_server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1, and a client certificate whose CN is agent-7."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("agent-7.muster.test", common_name="agent-7")
    files = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "client_cert", "client_key")}
    ca.cert_pem.write_to_path(files["ca"])
    server.cert_chain_pems[0].write_to_path(files["cert"])
    server.private_key_pem.write_to_path(files["key"])
    client.cert_chain_pems[0].write_to_path(files["client_cert"])
    client.private_key_pem.write_to_path(files["client_key"])
    return files


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def tls_server(pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``muster serve`` with TLS on both doors (no client certificates required)."""
    server = ServerProcess(
        data_dir=tmp_path_factory.mktemp("tls"),
        extra_args=["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])],
    ).start()
    yield server
    server.stop()


def test_tls_serves_both_doors_to_the_client_and_curl(tls_server: ServerProcess, pki: dict[str, Path]) -> None:
    """https:// and grpcs:// with the CA file work; plaintext and an unknown CA are refused."""

    async def main() -> None:
        for url in (f"https://127.0.0.1:{tls_server.http_port}", f"grpcs://127.0.0.1:{tls_server.grpc_port}"):
            async with await MusterClient.connect(url, ca_file=pki["ca"]) as client:
                reply = await client.register(name="tls", type="agent", url="https://127.0.0.1:9")
                assert reply.service_id == (await client.get_service(reply.service_id)).service_id
        async with await MusterClient.connect(f"grpcs://127.0.0.1:{tls_server.grpc_port}", rpc_timeout=3) as client:
            with pytest.raises(Unavailable):  # the system's CAs do not know the test's CA
                await client.stats()

    asyncio.run(main())
    ok = _curl("--cacert", str(pki["ca"]), f"https://127.0.0.1:{tls_server.http_port}/health")
    assert 0 == ok.returncode and '"status":"ok"' in ok.stdout
    assert 60 == _curl(f"https://127.0.0.1:{tls_server.http_port}/health").returncode  # unknown CA
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.http_port}/health", timeout=3)


@pytest.fixture(scope="module")
def mtls_server(pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """Auth and mTLS on both doors; a client certificate's CN stands for the token of that name."""
    auth = start_auth_server(
        tmp_path_factory.mktemp("mtls") / "data",
        None,
        ["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]), "--tls-client-ca", str(pki["ca"]),
         "--tls-principal-from-cn"],
        https=(pki["ca"], pki["client_cert"], pki["client_key"]),
    )
    auth.make_token("agent-7", ["catalog:read"])
    yield auth.server, auth.admin
    auth.server.stop()


def test_mtls_requires_a_client_certificate(mtls_server: tuple[ServerProcess, str], pki: dict[str, Path]) -> None:
    """Without a client certificate neither door completes the handshake; with one, the CN acts as its token."""
    server, admin = mtls_server
    cert = {"ca_file": pki["ca"], "cert_file": pki["client_cert"], "key_file": pki["client_key"]}

    async def main() -> None:
        for url in (f"https://127.0.0.1:{server.http_port}", f"grpcs://127.0.0.1:{server.grpc_port}"):
            async with await MusterClient.connect(url, ca_file=pki["ca"], rpc_timeout=3) as client:
                with pytest.raises(Unavailable):
                    await client.stats()
            async with await MusterClient.connect(url, **cert) as client:  # as agent-7: catalog:read only
                assert (await client.stats()).total_services >= 0
                with pytest.raises(PermissionDenied):
                    await client.register(name="nope", type="agent", url="http://127.0.0.1:9")
            async with await MusterClient.connect(url, token=admin, **cert) as client:  # a bearer wins over the CN
                await client.register(name="by-admin", type="agent", url="http://127.0.0.1:9")

    asyncio.run(main())
    base = f"https://127.0.0.1:{server.http_port}"
    with_cert = _curl("--cacert", str(pki["ca"]), "--cert", str(pki["client_cert"]), "--key", str(pki["client_key"]),
                      f"{base}/stats")
    assert 0 == with_cert.returncode and "total_services" in with_cert.stdout
    assert 0 != _curl("--cacert", str(pki["ca"]), f"{base}/stats").returncode
