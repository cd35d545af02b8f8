"""Sealed key files in real processes: transcryptors and a node start with them, and a wrong
passphrase stops each with exit 2, naming the file and the key."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from schakel.v1 import partner_pb2, partner_pb2_grpc

from gateway.cli import main
from gateway.dev import chain
from gateway.dev.keys import DevKeys
from gateway.tls import channel_credentials, node_channel
from policy.pseudonyms import Ciphertext, DomainKey, decrypt, pseudonym_hex
from policy.pseudonyms.hazmat.group import mul
from policy.pseudonyms.identifiers import subject_point
from tests.support.paths import ROOT
from tests.support.pki import RR, Federation
from tests.support.ports import free_port
from tests.support.process import REFERRER, NodeProcess, node_process, referral

BSN = "111222333"
PASSPHRASE = "a passphrase only the operator knows"


def seal(path: Path, passphrase_file: Path) -> None:
    assert main(["certs", "pep", "seal", str(path), "--passphrase-file", str(passphrase_file)]) == 0
    assert json.loads(path.read_text())["format"] == "schakel-pep-sealed/v1"


def transcryptor_config(keys: DevKeys, fed: Federation, name: str, passphrase: Path) -> Path:
    cred = fed.transcryptor(name)
    tls = chain.TlsFiles(fed.ca_file, cred.cert_file, cred.key_file, fed.crl_file)
    path = chain.write_config(keys, name, tls, listen=f"127.0.0.1:{free_port()}")
    text = path.read_text().replace(
        "[transcryptor]\n", f'[transcryptor]\nshare_passphrase_file = "{passphrase}"\n', 1
    )
    path.write_text(text)
    return path


def run_briefly(*args: str) -> subprocess.CompletedProcess[str]:
    """A `schakel` command that is expected to stop by itself."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def address_of(config: Path) -> str:
    line = next(x for x in config.read_text().splitlines() if x.startswith("listen = "))
    return line.split('"')[1]


@dataclass
class Sealed:
    """A chain whose shares are sealed, and what the test needs to know before sealing them."""

    fed: Federation
    keys: DevKeys
    configs: list[Path]
    passphrase: Path
    global_public_key: bytes
    partner_key: DomainKey
    expected: str
    """The partner's pseudonym of BSN, straight from the scheme's definition."""
    node: NodeProcess
    """The node, configured with its sealed domain key."""


@pytest.fixture
def sealed(tmp_path: Path) -> Sealed:
    """Two transcryptors' shares sealed, each config naming its passphrase file; the node's
    domain key is made (plain) beforehand."""
    fed = Federation(tmp_path / "pki")
    keys = DevKeys(tmp_path / "keys")
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    passphrase.chmod(0o600)
    configs = [transcryptor_config(keys, fed, name, passphrase) for name in keys.transcryptors]
    factor = keys.chain().pseudonymisation_factor(REFERRER[0])
    expected = pseudonym_hex(mul(factor, subject_point("bsn", BSN), "test"))
    endpoints = [(n, address_of(c)) for n, c in zip(keys.transcryptors, configs, strict=True)]
    node = node_process(tmp_path, fed, RR, f"sqlite:///{tmp_path / 'rr.db'}", "", endpoints)
    node_key = keys.domain_file(RR).resolve()
    text = node.config.read_text().replace(
        f'domain_key = "{node_key}"\n',
        f'domain_key = "{node_key}"\ndomain_key_passphrase_file = "{passphrase}"\n',
    )
    assert text != node.config.read_text()
    node.config.write_text(text)
    made = Sealed(
        fed,
        keys,
        configs,
        passphrase,
        keys.global_public_key(),
        keys.domain(REFERRER[0]),
        expected,
        node,
    )
    for name in keys.transcryptors:
        seal(keys.transcryptor_dir(name) / "share.json", passphrase)
    seal(node_key, passphrase)
    return made


async def test_transcryptors_and_a_node_run_on_sealed_keys(sealed: Sealed, tmp_path: Path) -> None:
    fed, keys, configs, passphrase = sealed.fed, sealed.keys, sealed.configs, sealed.passphrase
    node = sealed.node
    processes = []
    try:
        for name, config in zip(keys.transcryptors, configs, strict=True):
            processes.append(chain.spawn(config, tmp_path / f"{name}.log"))
            await chain.wait_listening(name, address_of(config), processes[-1])
        node.start()
        try:
            partner = fed.partner(RR, *REFERRER, force=True)
            await node.serving(partner, fed.ca_file)
            creds = channel_credentials(fed.ca_file, partner.cert_file, partner.key_file)
            y = sealed.global_public_key
            async with node_channel(node.address, RR, creds) as channel:
                stub = partner_pb2_grpc.PartnerServiceStub(channel)
                # The node decrypts the referral's subject with its sealed domain key.
                made = await stub.SubmitReferral(referral(y, "sealed-1", BSN), timeout=20)
                assert made.case_ref.case_id
                request = referral(y, "sealed-2", BSN)
                moved = await stub.Pseudonymise(
                    partner_pb2.PseudonymiseRequest(
                        purpose=request.purpose, subjects=[request.subject]
                    ),
                    timeout=20,
                )
        finally:
            assert node.stop() == 0
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    got = decrypt(Ciphertext.from_proto(moved.subjects[0]), sealed.partner_key.secret_key)
    assert pseudonym_hex(got) == sealed.expected
    assert DomainKey.load(keys.domain_file(RR), passphrase).domain == RR


def test_a_wrong_passphrase_stops_the_transcryptor_and_the_node_with_exit_2(
    sealed: Sealed, tmp_path: Path
) -> None:
    keys, configs, passphrase = sealed.keys, sealed.configs, sealed.passphrase
    passphrase.write_text("not the passphrase it was sealed with\n")
    share = keys.transcryptor_dir(keys.transcryptors[0]) / "share.json"
    done = run_briefly("transcryptor", "run", "--config", str(configs[0]))
    assert done.returncode == 2
    assert f"transcryptor.state_dir: {share}: cannot open it: wrong passphrase" in done.stderr
    assert PASSPHRASE not in done.stderr and "not the passphrase" not in done.stderr
    # The ceremony and enrol steps name it the same way.
    step = tmp_path / "step.json"
    done = run_briefly("transcryptor", "ceremony", "--config", str(configs[0]), "--out", str(step))
    assert done.returncode == 2 and "wrong passphrase" in done.stderr
    assert not step.exists()

    node_key = keys.domain_file(RR).resolve()
    config = sealed.node.config
    done = run_briefly("node", "run", "--config", str(config))
    assert done.returncode == 2
    assert f"pseudonyms.domain_key: {node_key}: cannot open it" in done.stderr
    # Without its passphrase file the sealed key is refused as well, saying what is missing.
    config.write_text(
        config.read_text().replace(f'domain_key_passphrase_file = "{passphrase}"', "")
    )
    done = run_briefly("node", "run", "--config", str(config))
    assert done.returncode == 2
    assert "is sealed with a passphrase: give its passphrase file" in done.stderr
