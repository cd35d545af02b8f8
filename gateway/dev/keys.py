"""Key material of a development federation: pseudonym keys, policy key, audit keys.

``make run`` and the tests use this to give every node what production gets
from the transcryptors and its policy owner: the node's own domain key
(assembled from every transcryptor's factor; the node holds no transcryptor
secret), a signed policy bundle, checkpoint and witness keys, and the
``[[peers]]`` that witness each other. The transcryptors' shares and the
key ceremony's transcript are made here too, each share in its own
transcryptor's state directory: in a development federation one person
plays every party. Files are written 0600 and reused when present, so
pseudonyms stay stable across runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import policy
from gateway.app import load_signer
from gateway.audit import notes
from policy import signing
from policy.pseudonyms import DomainKey, KeyFileError
from policy.pseudonyms.ceremony import Transcript, run_ceremony
from policy.pseudonyms.chain import LocalChain
from policy.pseudonyms.shares import TranscryptorShare

BASELINE_BUNDLE = Path(policy.__file__).resolve().parent / "bundles" / "baseline"
TRANSCRYPTORS = ("tc-regio", "tc-landelijk")
"""The dev chain: a regional and a national transcryptor, called in this order."""


@dataclass(frozen=True)
class DevKeys:
    """Where a dev federation's keys are, under one root folder."""

    root: Path
    transcryptors: tuple[str, ...] = TRANSCRYPTORS

    def transcryptor_dir(self, transcryptor: str) -> Path:
        """A transcryptor's state directory: its share, the transcript, its audit log."""
        return self.root / "transcryptors" / transcryptor

    @property
    def ceremony_file(self) -> Path:
        """The key ceremony's transcript (public)."""
        return self.root / "pep" / "ceremony.json"

    def chain(self) -> LocalChain:
        """Every transcryptor's share and the federation key, made (and the ceremony held)
        on first use; each transcryptor's state directory gets its share and the transcript."""
        shares = []
        for name in self.transcryptors:
            path = self.transcryptor_dir(name) / "share.json"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                TranscryptorShare.generate(name).save(path)
            shares.append(TranscryptorShare.load(path))
        try:
            transcript = Transcript.load(self.ceremony_file)
        except KeyFileError:
            transcript = Transcript(())
        if transcript.transcryptors != list(self.transcryptors) or any(
            transcript.steps[i].share != s.public_share for i, s in enumerate(shares)
        ):
            transcript = run_ceremony(shares)
            transcript.save(self.ceremony_file)
        for name in self.transcryptors:
            transcript.save(self.transcryptor_dir(name) / "ceremony.json")
        return LocalChain(tuple(shares), transcript.global_public_key)

    def global_public_key(self) -> bytes:
        """The federation key Y partners encrypt under."""
        return self.chain().global_public_key

    def domain_file(self, domain: str) -> Path:
        """The domain key file of an organisation or node."""
        return self.root / "pep" / "domains" / f"{domain}.json"

    @property
    def policy_key(self) -> Path:
        """The policy owner's private key."""
        return self.root / "policy" / "policy.key"

    @property
    def bundle(self) -> Path:
        """The signed copy of the baseline bundle the nodes load."""
        return self.root / "policy" / "bundle.yaml"

    def audit_key(self, node_id: str, kind: str) -> Path:
        """A node's ``log`` (checkpoint) or ``witness`` (cosignature) key."""
        return self.root / node_id / f"audit-{kind}.key"

    def domain(self, domain: str) -> DomainKey:
        """An organisation's (or node's) domain key, assembled from every transcryptor's
        factor on first use (offline enrolment), and again after a new ceremony."""
        path = self.domain_file(domain)
        chain = self.chain()
        if not path.exists() or DomainKey.load(path).global_public_key != chain.global_public_key:
            path.parent.mkdir(parents=True, exist_ok=True)
            chain.domain_key(domain).save(path, force=True)
        return DomainKey.load(path)

    def sign_baseline(self) -> None:
        """Copy the baseline bundle and sign it with the (created once) dev policy key."""
        self.bundle.parent.mkdir(parents=True, exist_ok=True)
        if not self.policy_key.exists():
            signing.generate_key(self.policy_key)
        # Copied and signed on every run, so edits to the baseline show up in `make run`.
        shutil.copyfile(BASELINE_BUNDLE / "bundle.yaml", self.bundle)
        signing.sign_bundle(self.bundle, self.policy_key)

    def log_vkey(self, node_id: str) -> str:
        """The node's checkpoint verifier key (created with the key on first use)."""
        path = self.audit_key(node_id, "log")
        path.parent.mkdir(parents=True, exist_ok=True)
        return load_signer(path, node_id, notes.ED25519).verifier().vkey()

    def transcryptor_log_vkey(self, transcryptor: str) -> str:
        """A transcryptor's checkpoint verifier key (its key made in its state directory on
        first use, where the transcryptor finds it)."""
        path = self.transcryptor_dir(transcryptor) / "audit-log.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        return load_signer(path, transcryptor, notes.ED25519).verifier().vkey()

    def witness_vkey(self, node_id: str) -> str:
        """The node's cosignature verifier key (created with the key on first use)."""
        path = self.audit_key(node_id, "witness")
        path.parent.mkdir(parents=True, exist_ok=True)
        return load_signer(path, node_id, notes.COSIGNATURE_V1).verifier().vkey()

    def node_sections(
        self,
        node_id: str,
        peers: Iterable[tuple[str, str]] = (),
        *,
        checkpoint_every_records: int = 1000,
        checkpoint_every_seconds: int = 60,
        transcryptors: Iterable[tuple[str, str]] = (),
    ) -> str:
        """TOML for a node's key sections; ``peers`` are (node id, address) that witness it,
        ``transcryptors`` (id, address) the running chain, in order (none: no pseudonyms),
        each with its log key pinned, so the node witnesses it when asked."""
        self.sign_baseline()
        peers = list(peers)
        text = ""
        transcryptors = list(transcryptors)
        if transcryptors:
            self.domain(node_id)
            text += f"""
[pseudonyms]
domain_key = "{self.domain_file(node_id).resolve()}"
"""
        for transcryptor, address in transcryptors:
            text += f"""
[[transcryptors]]
id = "{transcryptor}"
address = "{address}"
identity = "schakel://transcryptor/{transcryptor}"
log_key = "{self.transcryptor_log_vkey(transcryptor)}"
"""
        text += f"""
[policy]
bundle = "{self.bundle.resolve()}"
public_key = "{signing.public_key_path(self.policy_key).resolve()}"

[audit]
signing_key = "{self.audit_key(node_id, "log").resolve()}"
witness_key = "{self.audit_key(node_id, "witness").resolve()}"
checkpoint_every_records = {checkpoint_every_records}
checkpoint_every_seconds = {checkpoint_every_seconds}
quorum = {len(peers)}
# log_vkey: {self.log_vkey(node_id)}
# witness_vkey: {self.witness_vkey(node_id)}

[cases]
contact_handle = "procesregie@{node_id}.example"
"""
        for peer_id, address in peers:
            text += f"""
[[peers]]
id = "{peer_id}"
address = "{address}"
log_key = "{self.log_vkey(peer_id)}"
witness_key = "{self.witness_vkey(peer_id)}"
"""
        return text
