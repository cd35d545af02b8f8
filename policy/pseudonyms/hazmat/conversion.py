"""Converting a ciphertext between domains without the final rerandomisation (reshuffle + rekey).

From domain ``a`` to ``b``: ``s = s_b * s_a^-1``, ``k = k_b * k_a^-1``;
from the global key: ``s = s_b``, ``k = k_b``. Then
``(B, C, P) -> ((s * k^-1) * B, s * C, k * P)``. The result is a function of
the input, so whoever sees both can link them: the transcryption recipe
(:class:`policy.pseudonyms.Transcryptor`) always rerandomises it. The
published test vectors show it bare, because rerandomisation is random.
"""

from __future__ import annotations

import functools

from policy.pseudonyms.ciphertext import Ciphertext
from policy.pseudonyms.domains import check_domain
from policy.pseudonyms.errors import PseudonymError
from policy.pseudonyms.hazmat import group
from policy.pseudonyms.hazmat.factors import check_secret, pseudonymisation_factor, rekey_factor

CACHE_SIZE = 4096
"""Bound on each factor cache: far above the number of domains in a federation."""


class Converter:
    """Reshuffles and rekeys ciphertexts between domains; holds PS and RS, never a decryption key.

    Derived factors, their inverses and rekeyed public keys are cached per
    instance (bounded LRU), so a warm conversion costs three variable-base
    scalar multiplications. Thread-safe: the caches are functools.lru_cache,
    and libsodium calls release the GIL, so threads sharing one instance use
    every core.
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
        ps = check_secret(pseudonymisation_secret, "the pseudonymisation secret")
        rs = check_secret(rekey_secret, "the rekey secret")
        if global_public_key is not None:
            group.check_point(global_public_key, "the global public key")
        self._global_public_key = global_public_key

        @functools.lru_cache(maxsize=CACHE_SIZE)
        def factors(domain: str) -> tuple[bytes, bytes]:
            check_domain(domain)
            return pseudonymisation_factor(ps, domain), rekey_factor(rs, domain)

        @functools.lru_cache(maxsize=CACHE_SIZE)
        def inverses(domain: str) -> tuple[bytes, bytes]:
            s, k = factors(domain)
            return group.scalar_invert(s, "factor"), group.scalar_invert(k, "factor")

        @functools.lru_cache(maxsize=CACHE_SIZE)
        def conversion(to_domain: str, from_domain: str | None) -> tuple[bytes, bytes, bytes]:
            s, k = factors(to_domain)
            if from_domain is not None:
                s_inv, k_inv = inverses(from_domain)
                s, k = group.scalar_mul(s, s_inv), group.scalar_mul(k, k_inv)
            b_factor = group.scalar_mul(s, group.scalar_invert(k, "rekey factor"))
            return s, k, b_factor

        @functools.lru_cache(maxsize=CACHE_SIZE)
        def rekeyed(k: bytes, public_key: bytes) -> bytes:
            return group.mul(k, public_key, "rekeying the public key")

        self._factors = factors
        self._conversion = conversion
        self._rekeyed = rekeyed

    def domain_public_key(self, domain: str, global_public_key: bytes) -> bytes:
        """``k_d * Y``: the public key of ``domain``, which equals ``y_d * G``."""
        group.check_point(global_public_key, "the global public key")
        return self._rekeyed(self._factors(check_domain(domain))[1], global_public_key)

    def _source_key(self, from_domain: str | None) -> bytes | None:
        if self._global_public_key is None or from_domain is None:
            return self._global_public_key
        return self._rekeyed(self._factors(from_domain)[1], self._global_public_key)

    def reshuffle_rekey(
        self, ct: Ciphertext, to_domain: str, from_domain: str | None = None
    ) -> Ciphertext:
        """Move ``ct`` from ``from_domain`` (None: the global key Y) to ``to_domain``, linkably.

        The plaintext becomes ``to_domain``'s pseudonym and the key
        ``to_domain``'s key; the randomness is not refreshed.
        """
        if not isinstance(ct, Ciphertext):
            raise PseudonymError(f"expected a Ciphertext, not {type(ct).__name__}")
        # The caches validate domains on a miss; a non-string would fail as unhashable first.
        if not isinstance(to_domain, str):
            check_domain(to_domain)
        if from_domain is not None and not isinstance(from_domain, str):
            check_domain(from_domain)
        expected = self._source_key(from_domain)
        if expected is not None and ct.public_key != expected:
            source = "the global key" if from_domain is None else f"the key of {from_domain!r}"
            raise PseudonymError(f"the ciphertext is not encrypted under {source}")
        s, k, b_factor = self._conversion(to_domain, from_domain)
        return Ciphertext._trusted(
            group.mul(b_factor, ct.b, "transcryption"),
            group.mul(s, ct.c, "transcryption"),
            self._rekeyed(k, ct.public_key),
        )
