"""Witnessing driven by the signed federation directory, with no ``[[peers]]`` at all.

Two whole nodes over mTLS learn each other's checkpoint and cosignature keys
from the directory only; a re-signed directory with a rotated key is taken
up without a restart, and a tampered one leaves the last good keys in force.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app import Node, load_parts, open_node
from gateway.audit import notes
from gateway.audit.checkpoint import Checkpoints, StoredCheckpoint
from gateway.audit.store import AuditLog
from gateway.audit.verify import Keys, verify_database
from gateway.audit.witness import Witness
from gateway.config import ConfigError, load_config
from gateway.dev.keys import DevKeys
from gateway.federation import Peer
from gateway.federation.directory import DirectoryError, parse_directory
from gateway.federation.witnesses import WitnessRoster
from policy import signing
from tests.support.audit import migrated, record
from tests.support.pki import Federation, LogCapture
from tests.support.ports import free_port

A, B = "zvh-a", "zvh-b"


def entries(keys: DevKeys, addresses: Mapping[str, str], **override: str) -> list[dict[str, str]]:
    """Directory entries with every node's own keys; ``override`` maps ``<id>.<key>`` to text."""
    out = []
    for node_id, address in addresses.items():
        entry = {
            "id": node_id,
            "address": address,
            "log_key": keys.log_vkey(node_id),
            "witness_key": keys.witness_vkey(node_id),
        }
        for name in ("log_key", "witness_key"):
            text = override.get(f"{node_id}.{name}")
            if text is not None:
                entry[name] = text
        out.append({k: v for k, v in entry.items() if v})
    return out


def publish(path: Path, key: Path, nodes: list[dict[str, str]]) -> None:
    """Write and sign a directory."""
    path.write_text(yaml.safe_dump({"federation": "test", "nodes": nodes}, sort_keys=False))
    signing.sign_bundle(path, key)


@dataclass
class Keyed:
    """Nodes whose only source of peers and witness keys is the signed directory."""

    fed: Federation
    keys: DevKeys
    directory: Path
    directory_key: Path
    addresses: dict[str, str]
    configs: dict[str, Path] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)

    def publish(self, **override: str) -> None:
        """Re-sign the directory with the nodes' current keys (and ``override``)."""
        publish(self.directory, self.directory_key, entries(self.keys, self.addresses, **override))

    async def start(self, node_id: str) -> Node:
        """Start ``node_id`` from its config (again, after a stop)."""
        node = open_node(load_config(self.configs[node_id], environ={}))
        await node.start()
        self.nodes[node_id] = node
        return node

    async def stop(self, node_id: str) -> None:
        """Stop ``node_id``."""
        await self.nodes.pop(node_id).stop(grace=None)


def config_for(keyed: Keyed, node_id: str, db_url: str | None = None) -> Path:
    """A node.toml with the directory, quorum 1 and no ``[[peers]]``."""
    sections = keyed.keys.node_sections(
        node_id, checkpoint_every_records=1, checkpoint_every_seconds=1
    ).replace("quorum = 0", "quorum = 1")
    sections += f"""
[federation]
directory = "{keyed.directory}"
public_key = "{signing.public_key_path(keyed.directory_key)}"
reload_seconds = 1
"""
    if db_url is not None:
        sections += f'\n[database]\nurl = "{db_url}"\n'
    path = keyed.fed.write_config(keyed.fed.node(node_id), extra=sections)
    path.write_text(path.read_text().replace("127.0.0.1:0", keyed.addresses[node_id]))
    return path


@pytest.fixture
async def keyed(tmp_path: Path, db_url: str) -> AsyncIterator[Keyed]:
    """A (on ``db_url``: SQLite, then PostgreSQL) and B (SQLite), witnessing by directory."""
    key = tmp_path / "directory.key"
    signing.generate_key(key)
    pair = Keyed(
        Federation(tmp_path / "pki"),
        DevKeys(tmp_path / "keys"),
        tmp_path / "directory.yaml",
        key,
        {A: f"127.0.0.1:{free_port()}", B: f"127.0.0.1:{free_port()}"},
    )
    pair.publish()
    pair.configs = {A: config_for(pair, A, db_url), B: config_for(pair, B)}
    try:
        for node_id in (A, B):
            await pair.start(node_id)
        yield pair
    finally:
        for node_id in list(pair.nodes):
            await pair.stop(node_id)


async def cosigned_beyond(node: Node, size: int, timeout: float = 15.0) -> StoredCheckpoint:
    """The newest checkpoint above ``size`` with a quorum, once the witness cosigned one."""
    checkpointer = node.parts.checkpointer
    for _ in range(int(timeout / 0.1)):
        final = await asyncio.to_thread(checkpointer.latest_final)
        if final is not None and final.size > size:
            return final
        await asyncio.sleep(0.1)
    raise AssertionError(f"{node.parts.node_id}: no checkpoint above {size} cosigned in time")


def cosignature_by(checkpoint: StoredCheckpoint, witness: str) -> notes.Signature:
    """The cosignature ``witness`` put on ``checkpoint``."""
    (sig,) = [
        s
        for s in (notes.parse_signature_line(line) for line in checkpoint.cosignatures)
        if s.name == witness
    ]
    return sig


def verifies(checkpoint: StoredCheckpoint, witness: str, vkey: str) -> bool:
    """True when ``witness``'s cosignature on ``checkpoint`` verifies with ``vkey``."""
    try:
        notes.verify_cosignature(
            notes.parse_note(checkpoint.note).text,
            cosignature_by(checkpoint, witness),
            notes.Verifier.from_vkey(vkey),
        )
    except notes.NoteError:
        return False
    return True


async def test_a_directory_alone_makes_two_nodes_witness_each_other(keyed: Keyed) -> None:
    for node_id in (A, B):
        assert keyed.nodes[node_id].parts.config.peers == []
        await keyed.nodes[node_id].parts.audit.append(record())
    for node_id, witness in ((A, B), (B, A)):
        node = keyed.nodes[node_id]
        final = await cosigned_beyond(node, 0)
        assert verifies(final, witness, keyed.keys.witness_vkey(witness))
        # An officer pinning the directory's keys counts the checkpoint as final.
        pinned = Keys(
            notes.Verifier.from_vkey(keyed.keys.log_vkey(node_id)),
            [notes.Verifier.from_vkey(keyed.keys.witness_vkey(witness))],
            quorum=1,
        )
        report = await asyncio.to_thread(verify_database, node.parts.engine, pinned)
        assert report.ok, report.message
        assert report.final_checkpoints >= 1
        # What the witness holds for this log is what it cosigned.
        held = keyed.nodes[witness].parts.witness.state(node_id)[0]
        assert held >= final.size


async def test_a_re_signed_directory_with_a_rotated_witness_key_is_taken_up(
    keyed: Keyed, logs: LogCapture
) -> None:
    a = keyed.nodes[A]
    await a.parts.audit.append(record())
    before = await cosigned_beyond(a, 0)
    old_vkey = keyed.keys.witness_vkey(B)
    assert verifies(before, B, old_vkey)

    # B rotates its cosignature key: a new key file, then a newly signed directory.
    await keyed.stop(B)
    keyed.keys.audit_key(B, "witness").unlink()
    await keyed.start(B)  # creates the new key, like on first start
    new_vkey = keyed.keys.witness_vkey(B)
    assert new_vkey != old_vkey
    keyed.publish()

    await a.parts.audit.append(record())
    after = await cosigned_beyond(a, before.size)
    assert keyed.nodes[A] is a  # A was not restarted
    assert a.parts.checkpointer.witnesses[B].vkey() == new_vkey
    assert verifies(after, B, new_vkey)
    assert not verifies(after, B, old_vkey)
    (changed,) = logs.events("witness_keys_changed")
    assert changed["witnesses_rotated"] == B
    assert changed["witnesses_added"] == changed["witnesses_removed"] == ""


async def test_a_tampered_directory_keeps_the_last_good_keys(
    keyed: Keyed, logs: LogCapture
) -> None:
    a = keyed.nodes[A]
    await a.parts.audit.append(record())
    before = await cosigned_beyond(a, 0)
    good = keyed.keys.witness_vkey(B)
    intruder = notes.Signer.generate(B, notes.COSIGNATURE_V1).verifier().vkey()
    # The directory now names another witness key for B, but its signature is the old one.
    text = keyed.directory.read_text()
    keyed.directory.write_text(text.replace(good, intruder))
    for _ in range(50):
        if logs.events("directory_reload_refused"):
            break
        await asyncio.sleep(0.1)
    assert logs.events("directory_reload_refused"), "the tampered directory was not looked at"

    await a.parts.audit.append(record())
    after = await cosigned_beyond(a, before.size)
    assert a.parts.checkpointer.witnesses[B].vkey() == good
    assert a.parts.witness.logs[B].vkey() == keyed.keys.log_vkey(B)
    assert verifies(after, B, good)
    assert logs.events("witness_keys_changed") == []


# -- without a network ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field_name", "text", "message"),
    [
        ("log_key", "zvh-a+0000+AA==", r"nodes\[0\]\.log_key: vkey"),
        ("log_key", "OTHER", r"nodes\[0\]\.log_key: the key is named 'zvh-b', not after"),
        ("log_key", "WITNESS", r"nodes\[0\]\.log_key: must be a key of type Ed25519"),
        ("witness_key", "LOG", r"nodes\[0\]\.witness_key: must be a key of type cosignature"),
    ],
)
def test_directory_keys_must_be_the_nodes_own_of_the_right_kind(
    field_name: str, text: str, message: str
) -> None:
    samples = {
        "OTHER": notes.Signer.generate(B).verifier().vkey(),
        "WITNESS": notes.Signer.generate(A, notes.COSIGNATURE_V1).verifier().vkey(),
        "LOG": notes.Signer.generate(A).verifier().vkey(),
    }
    doc = {"nodes": [{"id": A, "address": "h:1", field_name: samples.get(text, text)}]}
    with pytest.raises(DirectoryError, match=message):
        parse_directory(yaml.safe_dump(doc).encode(), "dir.yaml")


def _offline_config(tmp_path: Path, nodes: list[dict[str, str]], extra: str = "") -> Path:
    fed = Federation(tmp_path / "pki")
    keys = DevKeys(tmp_path / "keys")
    key = tmp_path / "directory.key"
    signing.generate_key(key)
    directory = tmp_path / "directory.yaml"
    publish(directory, key, nodes)
    sections = keys.node_sections(A).replace("quorum = 0", "quorum = 1") + extra
    sections += f"""
[federation]
directory = "{directory}"
public_key = "{signing.public_key_path(key)}"
"""
    return fed.write_config(fed.node(A), extra=sections)


def test_a_quorum_above_the_directory_witnesses_is_a_config_error(tmp_path: Path) -> None:
    keys = DevKeys(tmp_path / "keys")
    # B is listed, and its log is witnessed here, but it witnesses nobody.
    nodes = [{"id": B, "address": "127.0.0.1:9", "log_key": keys.log_vkey(B)}]
    config = load_config(_offline_config(tmp_path, nodes), environ={})
    with pytest.raises(ConfigError, match=r"audit\.quorum: must be from 0 to the number of wit"):
        load_parts(config)


def test_peers_are_ignored_for_witnessing_when_a_directory_is_configured(
    tmp_path: Path, logs: LogCapture
) -> None:
    keys = DevKeys(tmp_path / "keys")
    nodes = entries(keys, {B: "127.0.0.1:9"})
    stale = f"""
[[peers]]
id = "zvh-c"
address = "127.0.0.1:10"
log_key = "{keys.log_vkey("zvh-c")}"
witness_key = "{keys.witness_vkey("zvh-c")}"
"""
    config = load_config(_offline_config(tmp_path, nodes, stale), environ={})
    parts = load_parts(config)
    try:
        (warning,) = logs.events("peers_section_ignored")
        assert "[[peers]] is not used" in warning["reason"]
        assert list(parts.checkpointer.witnesses) == [B]
        assert list(parts.witness.logs) == [B]
    finally:
        parts.audit.close()
        parts.engine.dispose()


def test_the_roster_follows_added_removed_and_rotated_keys(
    tmp_path: Path, logs: LogCapture
) -> None:
    engine = migrated(f"sqlite:///{tmp_path / 'node.db'}")
    log = AuditLog(engine)
    try:
        signers = {n: notes.Signer.generate(n, notes.COSIGNATURE_V1) for n in (B, "zvh-c")}
        log_key = notes.Signer.generate(B).verifier().vkey()
        listed = [Peer(B, "h:1", log_key=log_key, witness_key=signers[B].verifier().vkey())]
        checkpoints = Checkpoints(log)
        witness = Witness(engine, notes.Signer.generate(A, notes.COSIGNATURE_V1), {})
        roster = WitnessRoster(lambda: listed, checkpoints, witness, quorum=1)
        assert set(checkpoints.witnesses) == {B} and set(witness.logs) == {B}

        rotated = notes.Signer.generate(B, notes.COSIGNATURE_V1).verifier().vkey()
        listed = [
            Peer(B, "h:1", log_key=log_key, witness_key=rotated),
            Peer("zvh-c", "h:2", witness_key=signers["zvh-c"].verifier().vkey()),
        ]
        roster.refresh()
        assert checkpoints.witnesses[B].vkey() == rotated
        assert set(checkpoints.witnesses) == {B, "zvh-c"}
        change: dict[str, Any] = logs.events("witness_keys_changed")[-1]
        assert (change["witnesses_added"], change["witnesses_rotated"]) == ("zvh-c", B)

        listed = [Peer(B, "h:1", log_key=log_key)]
        roster.refresh()
        assert checkpoints.witnesses == {} and set(witness.logs) == {B}
        assert logs.events("witness_quorum_unreachable")[-1]["witnesses"] == 0

        # A list with an unusable key changes nothing.
        listed = [Peer(B, "h:1", log_key="not a key", witness_key=rotated)]
        roster.refresh()
        assert checkpoints.witnesses == {} and set(witness.logs) == {B}
        assert logs.events("witness_keys_refused")[-1]["key"] == "log_key"
    finally:
        log.close()
        engine.dispose()
