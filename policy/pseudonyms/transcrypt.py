"""Transcryption: a ciphertext moved to another domain and rerandomised.

A node holds only the transcryptor secrets PS and RS. :class:`Transcryptor`
reshuffles the plaintext to the recipient domain's pseudonym, rekeys it to
that domain's key (:mod:`policy.pseudonyms.hazmat.conversion`) and always
rerandomises the result, so it cannot be linked to its input.
"""

from __future__ import annotations

from policy.pseudonyms.ciphertext import Ciphertext
from policy.pseudonyms.hazmat import group
from policy.pseudonyms.hazmat.conversion import Converter
from policy.pseudonyms.hazmat.elgamal import rerandomise_with


class Transcryptor:
    """Converts ciphertexts between domains; holds PS and RS, never a decryption key.

    Derived factors, their inverses and rekeyed public keys are cached per
    instance (bounded LRU), so a warm transcryption costs three variable-base
    scalar multiplications, one fixed-base multiplication and two additions.
    Thread-safe: the caches are functools.lru_cache, and libsodium calls
    release the GIL, so threads sharing one instance use every core.
    """

    def __init__(
        self,
        pseudonymisation_secret: bytes,
        rekey_secret: bytes,
        *,
        global_public_key: bytes | None = None,
    ) -> None:
        """Hold the transcryptor secrets.

        With ``global_public_key`` (Y) every input ciphertext is checked to be
        encrypted under the key of its source domain, so a partner that
        encrypted under the wrong key gets an error instead of a pseudonym
        nobody can match.
        """
        self._converter = Converter(
            pseudonymisation_secret, rekey_secret, global_public_key=global_public_key
        )

    def domain_public_key(self, domain: str, global_public_key: bytes) -> bytes:
        """``k_d * Y``: the public key of ``domain``, which equals ``y_d * G``."""
        return self._converter.domain_public_key(domain, global_public_key)

    def transcrypt(
        self, ct: Ciphertext, to_domain: str, from_domain: str | None = None
    ) -> Ciphertext:
        """Move ``ct`` from ``from_domain`` (None: the global key Y) to ``to_domain``.

        Reshuffles the plaintext to ``to_domain``'s pseudonym, rekeys it to
        ``to_domain``'s key and rerandomises, so the result cannot be linked
        to ``ct`` without the secrets.
        """
        converted = self._converter.reshuffle_rekey(ct, to_domain, from_domain)
        return rerandomise_with(converted, group.random_scalar())
