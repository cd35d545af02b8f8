"""A workload that handles real BSNs upstream, as a node would: pseudonymise, then audit."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.audit.inzage import encrypt_bsn, resolve_locally
from gateway.dev.fakedata import fake_bsns
from policy.pseudonyms import DomainKey, FederationKeys
from tests.support.audit import Node, record

__all__ = ["record", "run"]


@dataclass
class Workload:
    """Federation keys, the node's domain key, and the pseudonyms the log holds per BSN."""

    keys: FederationKeys
    domain_key: DomainKey
    subjects: dict[str, str]

    def pseudonym(self, bsn: str) -> str:
        """The node-domain pseudonym of ``bsn`` the long way round: encrypt, transcrypt, decrypt."""
        return resolve_locally(
            self.keys.transcryptor_keys().transcryptor(),
            self.domain_key,
            encrypt_bsn(bsn, self.keys.global_public_key),
        )


def run(n: Node, people: int = 6, per_person: int = 3) -> Workload:
    """Append ``per_person`` records for each of ``people`` BSNs, checkpoint and cosign."""
    keys = FederationKeys.generate()
    work = Workload(keys, keys.domain_key_material(n.signer.name), {})
    for bsn in fake_bsns(people, seed=5):
        work.subjects[bsn] = work.pseudonym(bsn)
    for _ in range(per_person):
        n.log.append_many([record(p) for p in work.subjects.values()] + [record()])
    n.checkpointer.sign()
    n.cosign_latest()
    return work
