"""A transcryptor's own log is witnessed by federation nodes, and verifiable offline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from schakel.v1 import federation_pb2_grpc

from adapters.sdk import TranscryptorAddress, enrol_domain
from gateway.app import Node, load_signer, open_node
from gateway.audit import notes
from gateway.cli import main
from gateway.config import load_config
from gateway.dev import chain
from gateway.dev.keys import DevKeys
from gateway.tls import channel_credentials, node_channel
from gateway.tomlconfig import ConfigError
from gateway.transcryptor.config import load_transcryptor_config
from gateway.transcryptor.server import TranscryptorServer
from tests.support.pki import HL, RR, Federation
from tests.support.ports import free_port

WITNESSED, UNPINNED = "tc-regio", "tc-landelijk"


@dataclass
class Witnessed:
    fed: Federation
    keys: DevKeys
    node: Node
    servers: list[TranscryptorServer]
    log_vkeys: dict[str, str]


def witnessed_config(keys: DevKeys, fed: Federation, name: str, node_address: str) -> Path:
    cred = fed.transcryptor(name)
    tls = chain.TlsFiles(fed.ca_file, cred.cert_file, cred.key_file, fed.crl_file)
    path = chain.write_config(
        keys, name, tls, listen=f"127.0.0.1:{free_port()}", witnesses=[(RR, node_address)]
    )
    text = path.read_text().replace(
        "checkpoint_every_seconds = 5\n",
        "checkpoint_every_seconds = 1\ncheckpoint_every_records = 1\n",
    )
    path.write_text(text)
    return path


@pytest.fixture
async def witnessed(tmp_path: Path) -> AsyncIterator[Witnessed]:
    """Both transcryptors ask node RR to witness; RR pins only tc-regio's log key."""
    fed = Federation(tmp_path / "pki")
    keys = DevKeys(tmp_path / "keys")
    port = free_port()
    vkeys = {t: keys.transcryptor_log_vkey(t) for t in keys.transcryptors}
    configs = [witnessed_config(keys, fed, t, f"127.0.0.1:{port}") for t in keys.transcryptors]
    servers = await chain.start_in_process(configs)
    node = None
    try:
        endpoints = [(s.parts.id, s.address) for s in servers]
        sections = keys.node_sections(RR, transcryptors=endpoints)
        unpinned = f'log_key = "{vkeys[UNPINNED]}"\n'
        assert unpinned in sections and f'log_key = "{vkeys[WITNESSED]}"\n' in sections
        sections = sections.replace(unpinned, "")
        path = fed.write_config(fed.node(RR), extra=sections)
        path.write_text(path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
        node = open_node(load_config(path, environ={}))
        await node.start()
        yield Witnessed(fed, keys, node, servers, vkeys)
    finally:
        if node is not None:
            await node.stop(grace=None)
        await chain.stop_in_process(servers)


async def final_checkpoint(server: TranscryptorServer, timeout: float = 30.0) -> int:
    """The size of the transcryptor's newest checkpoint once it has its quorum."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        final = await asyncio.to_thread(server.checkpointer.latest_final)
        if final is not None and final.size > 0:
            return final.size
        await asyncio.sleep(0.2)
    raise AssertionError(f"{server.parts.id}: no checkpoint got its quorum in {timeout} s")


async def test_a_node_cosigns_the_transcryptor_log_it_pins_and_officers_verify_it(
    witnessed: Witnessed, capsys: pytest.CaptureFixture[str]
) -> None:
    cred = witnessed.fed.partner(RR, "politie-rr", "politie")
    # An enrolment is recorded in each transcryptor's own log.
    await enrol_domain(
        [TranscryptorAddress(s.parts.id, s.address) for s in witnessed.servers],
        cert_file=cred.cert_file,
        key_file=cred.key_file,
        ca_file=witnessed.fed.ca_file,
    )
    regio, landelijk = witnessed.servers
    size = await final_checkpoint(regio)
    latest = await asyncio.to_thread(regio.checkpointer.latest)
    assert latest is not None and latest.cosignatures
    assert notes.parse_signature_line(latest.cosignatures[0]).name == RR
    # The node holds what it cosigned, under the transcryptor's id as origin.
    held_size, held_root = witnessed.node.parts.witness.state(WITNESSED)
    assert held_size >= size and held_root

    # The transcryptor whose key the node does not pin is refused: its log stays unwitnessed.
    unwitnessed = await asyncio.to_thread(landelijk.checkpointer.latest)
    assert unwitnessed is not None and unwitnessed.size > 0
    assert unwitnessed.cosignatures == ()
    assert witnessed.node.parts.witness.state(UNPINNED)[0] == 0

    # A transcryptor submits its own log only: tc-landelijk offering tc-regio's is refused.
    assert latest is not None
    tls = landelijk.config.tls
    creds = channel_credentials(tls.ca_file, tls.cert_file, tls.key_file)
    async with node_channel(witnessed.node.address, RR, creds) as channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        request = regio.checkpointer.witness_request(latest, 0)
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await stub.AddCheckpoint(request, timeout=10)
    assert foreign.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "may not submit the log of another" in (foreign.value.details() or "")

    # Offline, an officer checks the transcryptor's database with the pinned keys.
    db = f"sqlite:///{witnessed.keys.transcryptor_dir(WITNESSED) / 'transcryptor.db'}"
    args = ["audit", "verify", "--db", db, "--log-key", witnessed.log_vkeys[WITNESSED]]
    witness = ["--witness-key", witnessed.keys.witness_vkey(RR), "--quorum", "1"]
    capsys.readouterr()
    assert await asyncio.to_thread(main, [*args, *witness]) == 0
    shown = capsys.readouterr().out
    assert "OK" in shown
    assert "with a quorum of 1 cosignatures" in shown and " 0 with a quorum" not in shown
    # Pinning another log key (tc-landelijk's) for that database fails.
    wrong = ["audit", "verify", "--db", db, "--log-key", witnessed.log_vkeys[UNPINNED]]
    assert await asyncio.to_thread(main, wrong) == 1
    assert "FAILED" in capsys.readouterr().out


def test_the_witnesses_of_a_transcryptor_are_checked_at_load(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "pki")
    keys = DevKeys(tmp_path / "keys")
    path = witnessed_config(keys, fed, WITNESSED, "127.0.0.1:7443")
    good = path.read_text()
    config = load_transcryptor_config(path, environ={})
    assert [w.id for w in config.witnesses] == [RR] and config.audit.quorum == 1
    bad = {
        "witnesses[0].witness_key": good.replace(keys.witness_vkey(RR), keys.log_vkey(RR)),
        "audit.quorum": good.replace("quorum = 1", "quorum = 2"),
        "witnesses[0].id": good.replace(f'id = "{RR}"', f'id = "{WITNESSED}"'),
    }
    for key, text in bad.items():
        path.write_text(text)
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            load_transcryptor_config(path, environ={})
    # A witness key named after another node is refused too.
    path.write_text(good.replace(keys.witness_vkey(RR), keys.witness_vkey(HL)))
    with pytest.raises(ConfigError, match="not after node"):
        load_transcryptor_config(path, environ={})


async def test_a_node_refuses_a_transcryptor_log_key_it_cannot_use(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "pki")
    keys = DevKeys(tmp_path / "keys")
    sections = keys.node_sections(RR, transcryptors=[(WITNESSED, "127.0.0.1:7600")])
    pin = f'log_key = "{keys.transcryptor_log_vkey(WITNESSED)}"\n'
    cosigner = load_signer(tmp_path / "cosign.key", WITNESSED, notes.COSIGNATURE_V1)
    node = fed.node(RR)
    # A key of another type, and a log key named after someone else.
    for vkey, reason in (
        (cosigner.verifier().vkey(), "must be a key of type"),
        (keys.transcryptor_log_vkey(UNPINNED), "not after node"),
    ):
        path = fed.write_config(node, extra=sections.replace(pin, f'log_key = "{vkey}"\n'))
        with pytest.raises(ConfigError, match=rf"transcryptors\[0\]\.log_key: .*{reason}"):
            open_node(load_config(path, environ={}))
