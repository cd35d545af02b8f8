"""The node's side of the pseudonym scheme: subjects in, subjects out, through the chain.

A subject arrives as a ciphertext under the federation key Y. Before it
leaves, the node has it converted to the recipient's domain by the
transcryptor chain (:class:`~gateway.chain.TranscryptorChain`),
each link rerandomising; to index its case registry and audit log the node
has it converted to its own domain and decrypts it with its own domain key,
the only pseudonym key it holds. It holds no transcryptor secret and never
a plaintext identifier.

Every method takes all the subjects of one step at once, so that a step is
one call per transcryptor whatever the number of recipients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schakel.v1 import common_pb2

from gateway.chain import TranscryptorChain
from gateway.observability import metrics
from policy.pseudonyms import (
    Ciphertext,
    DomainKey,
    PseudonymError,
    decrypt,
    encrypt,
    pseudonym_hex,
)


@dataclass(frozen=True)
class NodeSubjects:
    """Conversion through the chain, plus the node's own domain key for indexing."""

    chain: TranscryptorChain
    own: DomainKey

    def parse(self, message: common_pb2.EncryptedPseudonym) -> Ciphertext:
        """Validate a subject from the wire (PseudonymError says what is wrong)."""
        return Ciphertext.from_proto(message)

    def _from_global(self, subjects: Sequence[Ciphertext]) -> None:
        for subject in subjects:
            if subject.public_key != self.own.global_public_key:
                raise PseudonymError("the ciphertext is not encrypted under the federation key")

    async def node_pseudonym(self, subject: Ciphertext, activity: str) -> str:
        """The pseudonym in the node's own domain (hex) of a subject under Y."""
        (pseudonym,) = await self.node_pseudonyms([subject], activity)
        return pseudonym

    async def node_pseudonyms(self, subjects: Sequence[Ciphertext], activity: str) -> list[str]:
        """The node-domain pseudonyms of subjects under Y, in order: one call per link."""
        self._from_global(subjects)
        moved = await self.chain.transcrypt(
            [(s, self.own.domain) for s in subjects], from_domain=None, activity=activity
        )
        metrics.transcrypted("own", len(moved))
        return [self.open_own(ct) for ct in moved]

    def open_own(self, subject: Ciphertext) -> str:
        """The pseudonym (hex) of a subject already in the node's own domain.

        A peer sends a subject converted to this node's domain; decrypting it
        needs no conversion. A ciphertext under any other key is refused.
        """
        return pseudonym_hex(decrypt(subject, self.own.secret_key))

    def reencrypt(self, pseudonym: str) -> Ciphertext:
        """A fresh ciphertext in the node's own domain of a stored node pseudonym (hex).

        The registry keeps only the node-domain pseudonym ``s_node * M``; a
        ciphertext in the node's domain decrypts to exactly that, so this is
        what later requests convert onwards (``from_domain`` = node id).
        """
        try:
            point = bytes.fromhex(pseudonym)
        except ValueError as exc:
            raise PseudonymError("a stored pseudonym is not hex") from exc
        return encrypt(point, self.own.public_key)

    async def for_domain_from_pseudonym(
        self, pseudonym: str, domain: str, activity: str
    ) -> common_pb2.EncryptedPseudonym:
        """The subject behind a stored node pseudonym, converted for ``domain``."""
        moved = await self.for_domains_from_pseudonym(pseudonym, [domain], activity)
        return moved[domain]

    async def for_domains_from_pseudonym(
        self, pseudonym: str, domains: Sequence[str], activity: str
    ) -> dict[str, common_pb2.EncryptedPseudonym]:
        """The subject behind a stored node pseudonym for every domain in ``domains``.

        One call per transcryptor, however many domains: each gets its own
        fresh encryption, so no two recipients get related ciphertexts.
        """
        unique = list(dict.fromkeys(domains))
        items = [(self.reencrypt(pseudonym), d) for d in unique]
        moved = await self.chain.transcrypt(items, from_domain=self.own.domain, activity=activity)
        metrics.transcrypted("recipient", len(moved))
        return {d: ct.to_proto() for d, ct in zip(unique, moved, strict=True)}

    async def for_domain(
        self, subjects: Sequence[Ciphertext], domain: str, activity: str
    ) -> list[common_pb2.EncryptedPseudonym]:
        """Subjects under Y converted (and rerandomised) for ``domain``, in order."""
        self._from_global(subjects)
        moved = await self.chain.transcrypt(
            [(s, domain) for s in subjects], from_domain=None, activity=activity
        )
        metrics.transcrypted("recipient", len(moved))
        return [ct.to_proto() for ct in moved]
