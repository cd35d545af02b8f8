"""Start-up checks: a node refuses to start with a certificate or key that cannot work.

The certificate must be this node's, chain to ``tls.ca_file``, be valid now
and match ``tls.key_file``; an encrypted key needs its passphrase file.
``schakel node run`` then exits 2 with a message naming the key.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certs.authority import Validity
from certs.keys import private_key_pem
from gateway.config import ConfigError, load_config
from gateway.rpc.server import build_server
from tests.support.paths import ROOT
from tests.support.pki import HL, RR, Credential, Federation, StartNode, channel_to

PASSPHRASE = b"correct horse battery staple"


def _config_with(federation: Federation, cert: Credential, key: Credential) -> Path:
    """A config for node RR presenting ``cert`` with ``key``'s key file."""
    own = federation.node(RR, force=True)
    path = federation.write_config(own)
    text = path.read_text()
    text = text.replace(str(own.cert_file), str(cert.cert_file))
    path.write_text(text.replace(str(own.key_file), str(key.key_file)))
    return path


def _another_nodes(federation: Federation) -> tuple[Credential, Credential]:
    other = federation.node(HL)
    return other, other


def _a_partners(federation: Federation) -> tuple[Credential, Credential]:
    partner = federation.partner(RR, "politie-rr", "politie")
    return partner, partner


def _foreign(federation: Federation) -> tuple[Credential, Credential]:
    (federation.root / "foreign").mkdir()
    foreign = Federation(federation.root / "foreign", name="Namaak CA").node(RR)
    return foreign, foreign


def _expired(federation: Federation) -> tuple[Credential, Credential]:
    now = dt.datetime.now(dt.UTC)
    old = federation.credential(
        "node-old",
        federation.node(RR).identity,
        validity=Validity(now - dt.timedelta(days=30), now - dt.timedelta(days=1)),
    )
    return old, old


def _wrong_key(federation: Federation) -> tuple[Credential, Credential]:
    return federation.node(RR), federation.partner(RR, "ggz-rr", "ggz")


Case = Callable[[Federation], tuple[Credential, Credential]]


@pytest.mark.parametrize(
    ("case", "key", "message"),
    [
        (_another_nodes, "tls.cert_file", f"schakel://node/{HL}, not of this node {RR}"),
        (_a_partners, "tls.cert_file", "schakel://partner/"),
        (_foreign, "tls.cert_file", "does not chain to the CA"),
        (_expired, "tls.cert_file", "does not chain to the CA"),
        (_wrong_key, "tls.key_file", "does not belong to"),
    ],
    ids=["another-node", "partner", "foreign-ca", "expired", "wrong-key"],
)
def test_a_node_certificate_that_cannot_work_stops_the_start(
    federation: Federation, case: Case, key: str, message: str
) -> None:
    cert, key_of = case(federation)
    path = _config_with(federation, cert, key_of)
    with pytest.raises(ConfigError) as err:
        build_server(load_config(path, environ={}))
    assert f": {key}: " in str(err.value)
    assert message in str(err.value)


async def test_an_encrypted_node_key_needs_its_passphrase_file(
    federation: Federation, start_node: StartNode, tmp_path: Path
) -> None:
    node_cred = federation.node(RR)
    key = node_cred.key_file
    plain = serialization.load_pem_private_key(key.read_bytes(), password=None)
    key.write_bytes(private_key_pem(plain, PASSPHRASE))
    with pytest.raises(ConfigError, match=r"tls\.key_file: .* is encrypted"):
        build_server(federation.config(node_cred))
    secret = tmp_path / "tls.pass"
    secret.write_bytes(PASSPHRASE + b"\n")
    wrong = tmp_path / "wrong.pass"
    wrong.write_bytes(b"not the passphrase, sorry\n")
    with pytest.raises(ConfigError, match=r"tls\.key_file: .*wrong passphrase"):
        build_server(federation.config(node_cred, extra=f'key_passphrase_file = "{wrong}"\n'))
    config = federation.config(node_cred, extra=f'key_passphrase_file = "{secret}"\n')
    node = await start_node(config)
    politie = federation.partner(RR, "politie-rr", "politie")
    async with channel_to(node, politie, federation.ca_file) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_schakel_node_run_exits_2_naming_the_key(federation: Federation) -> None:
    other, _ = _another_nodes(federation)
    path = _config_with(federation, other, other)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "node", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "tls.cert_file" in done.stderr
    assert f"not of this node {RR}" in done.stderr
