"""Key material of a development federation: pseudonym keys, policy key, audit keys.

``make run`` and the tests use this to give every node what production gets
from its key authority and policy owner: the transcryptor secrets and the
node's own domain key, a signed policy bundle, checkpoint and witness keys,
and the ``[[peers]]`` that witness each other. Files are written 0600 and
reused when present, so pseudonyms stay stable across runs.
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
from policy.pseudonyms import DomainKey, FederationKeys

BASELINE_BUNDLE = Path(policy.__file__).resolve().parent / "bundles" / "baseline"


@dataclass(frozen=True)
class DevKeys:
    """Where a dev federation's keys are, under one root folder."""

    root: Path

    @property
    def federation_file(self) -> Path:
        """The key authority's file (y, Y, PS, RS): kept apart from every node in production."""
        return self.root / "pep" / "federation-keys.json"

    @property
    def transcryptor_file(self) -> Path:
        """PS, RS and Y: what every node's config points to."""
        return self.root / "pep" / "transcryptor.json"

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

    def federation(self) -> FederationKeys:
        """The federation keys, created on first use."""
        if not self.federation_file.exists():
            keys = FederationKeys.generate()
            self.federation_file.parent.mkdir(parents=True, exist_ok=True)
            keys.save(self.federation_file)
            keys.transcryptor_keys().save(self.transcryptor_file)
        return FederationKeys.load(self.federation_file)

    def domain(self, domain: str) -> DomainKey:
        """An organisation's (or node's) domain key, enrolled on first use."""
        path = self.domain_file(domain)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.federation().domain_key_material(domain).save(path)
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
    ) -> str:
        """TOML for a node's key sections; ``peers`` are (node id, address) that witness it."""
        self.domain(node_id)
        self.sign_baseline()
        peers = list(peers)
        text = f"""
[pseudonyms]
transcryptor_keys = "{self.transcryptor_file.resolve()}"
domain_key = "{self.domain_file(node_id).resolve()}"

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
