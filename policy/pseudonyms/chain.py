"""Transcryption through a chain of transcryptors, all in this process.

In a federation each link runs as its own service (``schakel transcryptor``)
and the node calls them in order. This recipe composes the links locally,
for the published vectors, tests and a development federation whose shares
all lie in one place: each link reshuffles and rekeys with its own factors
and rerandomises, and the composition equals the single-transcryptor
result for ``(s_b / s_a, k_b / k_a)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from policy.pseudonyms.ciphertext import Ciphertext
from policy.pseudonyms.errors import PseudonymError
from policy.pseudonyms.hazmat import group
from policy.pseudonyms.hazmat.factors import pseudonymisation_factor
from policy.pseudonyms.keys import DomainKey
from policy.pseudonyms.shares import TranscryptorShare, assemble
from policy.pseudonyms.transcrypt import Transcryptor


def transcrypt_chain(
    ct: Ciphertext,
    links: Sequence[Transcryptor],
    to_domain: str,
    from_domain: str | None = None,
) -> Ciphertext:
    """``ct`` moved through every link in order; each link rerandomises its output."""
    if not links:
        raise PseudonymError("a chain needs at least one transcryptor")
    for link in links:
        ct = link.transcrypt(ct, to_domain, from_domain)
    return ct


@dataclass(frozen=True)
class LocalChain:
    """Every share of a (test or development) federation, and its key ``Y``."""

    shares: tuple[TranscryptorShare, ...]
    global_public_key: bytes
    _links: tuple[Transcryptor, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One Transcryptor per share, so the factor caches live as long as the chain.
        object.__setattr__(self, "_links", tuple(s.step() for s in self.shares))

    def transcrypt(
        self, ct: Ciphertext, to_domain: str, from_domain: str | None = None
    ) -> Ciphertext:
        """``ct`` moved to ``to_domain`` through every link."""
        return transcrypt_chain(ct, self._links, to_domain, from_domain)

    def pseudonymisation_factor(self, domain: str) -> bytes:
        """``s_d``: the product of every link's factor for ``domain``."""
        factors = [pseudonymisation_factor(x.pseudonymisation_secret, domain) for x in self.shares]
        product = factors[0]
        for factor in factors[1:]:
            product = group.scalar_mul(product, factor)
        return product

    def domain_key(self, domain: str) -> DomainKey:
        """``domain``'s key, assembled from every transcryptor's factor."""
        return assemble([s.domain_factor(domain, self.global_public_key) for s in self.shares])
