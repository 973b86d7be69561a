"""Run in a separate interpreter: a client built only from the seed's proto (stubs generated here).

Usage: python seed_client.py <stub-dir> <grpc-target>. Prints one JSON object.
(A separate process because the seed's messages share the ``srm.*`` names with
Muster's own stubs, and one protobuf descriptor pool cannot hold both.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grpc_tools import protoc


def main() -> None:
    out, target = Path(sys.argv[1]), sys.argv[2]
    here = Path(__file__).parent
    code = protoc.main(
        ["protoc", f"-I{here}", f"--python_out={out}", f"--grpc_python_out={out}", str(here / "seed_symbol.proto")]
    )
    if code != 0:
        raise SystemExit("protoc failed")
    sys.path.insert(0, str(out))
    import grpc
    import seed_symbol_pb2 as pb
    import seed_symbol_pb2_grpc as pb_grpc

    report: dict[str, object] = {}
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.SymbolRegistryStub(channel)
        reserve = pb.ReserveRequest(
            repo="seed", branch="main", fq_name="demo.func", kind="function", file_path="demo.py", plan_id="P1"
        )
        reply = stub.Reserve(reserve, timeout=10)
        report["reserve"] = {"lease_id": reply.lease_id, "status": reply.status, "expires_at": reply.expires_at}
        try:
            stub.Reserve(reserve, timeout=10)
        except grpc.RpcError as exc:
            report["second_reserve"] = exc.code().name
        claim = stub.Claim(pb.ClaimRequest(lease_id=reply.lease_id, commit_sha="9fceb02d0ae598e9"), timeout=10)
        report["claim"] = claim.status
        lookup = stub.Lookup(pb.LookupRequest(repo="seed", branch="main", fq_name="demo.func"), timeout=10)
        report["lookup"] = {"status": lookup.status, "file_path": lookup.file_path, "commit_sha": lookup.commit_sha}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
