"""The node's side of the pseudonym scheme: subjects in, subjects out.

A subject arrives as a ciphertext under the federation key Y. The node
transcrypts it to a recipient's domain (rerandomised) before it leaves, and
to its own domain to index its case registry and audit log. It never holds
a plaintext identifier.
"""

from __future__ import annotations

from dataclasses import dataclass

from schakel.v1 import common_pb2

from gateway.observability import metrics
from policy.pseudonyms import (
    Ciphertext,
    DomainKey,
    PseudonymError,
    Transcryptor,
    TranscryptorKeys,
    decrypt,
    encrypt,
    pseudonym_hex,
)


@dataclass(frozen=True)
class NodeSubjects:
    """Transcryption for the node, plus its own domain key for indexing."""

    transcryptor: Transcryptor
    own: DomainKey

    @classmethod
    def load(cls, transcryptor_keys: TranscryptorKeys, own: DomainKey) -> NodeSubjects:
        """Combine the node's key files; the domain key must be for the same federation key."""
        if own.global_public_key != transcryptor_keys.global_public_key:
            raise ValueError(
                "pseudonyms.domain_key belongs to another federation key than "
                "pseudonyms.transcryptor_keys"
            )
        return cls(transcryptor_keys.transcryptor(), own)

    def parse(self, message: common_pb2.EncryptedPseudonym) -> Ciphertext:
        """Validate a subject from the wire (PseudonymError says what is wrong)."""
        return Ciphertext.from_proto(message)

    def node_pseudonym(self, subject: Ciphertext, from_domain: str | None = None) -> str:
        """The subject's pseudonym in the node's own domain, lowercase hex."""
        own = self.transcryptor.transcrypt(subject, self.own.domain, from_domain)
        metrics.transcrypted("own")
        return pseudonym_hex(decrypt(own, self.own.secret_key))

    def reencrypt(self, pseudonym: str) -> Ciphertext:
        """A fresh ciphertext in the node's own domain of a stored node pseudonym (hex).

        The registry keeps only the node-domain pseudonym ``s_node * M``; a
        ciphertext in the node's domain decrypts to exactly that, so this is
        what later requests transcrypt onwards (``from_domain`` = node id).
        """
        try:
            point = bytes.fromhex(pseudonym)
        except ValueError as exc:
            raise PseudonymError("a stored pseudonym is not hex") from exc
        return encrypt(point, self.own.public_key)

    def for_domain_from_pseudonym(
        self, pseudonym: str, domain: str
    ) -> common_pb2.EncryptedPseudonym:
        """The subject behind a stored node pseudonym, transcrypted for ``domain``."""
        return self.for_domain(self.reencrypt(pseudonym), domain, self.own.domain)

    def for_domain(
        self, subject: Ciphertext, domain: str, from_domain: str | None = None
    ) -> common_pb2.EncryptedPseudonym:
        """The subject transcrypted (and rerandomised) for ``domain``, ready to send."""
        moved = self.transcryptor.transcrypt(subject, domain, from_domain)
        metrics.transcrypted("recipient")
        return moved.to_proto()
