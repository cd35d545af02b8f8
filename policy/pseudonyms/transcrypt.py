"""Domain factors and transcryption (reshuffle + rekey + rerandomise) between domains.

``Hs(secret, label) = scalar_reduce(HMAC-SHA512(secret, label))``;
``s_d = Hs(PS, b"schakel/v1/pseudonymise|" + d)`` and
``k_d = Hs(RS, b"schakel/v1/rekey|" + d)``, ``d`` the domain id in UTF-8.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import hashes, hmac

from policy.pseudonyms import _group
from policy.pseudonyms.elgamal import Ciphertext, _rerandomise
from policy.pseudonyms.errors import PseudonymError

PSEUDONYMISE_LABEL = b"schakel/v1/pseudonymise|"
REKEY_LABEL = b"schakel/v1/rekey|"
MIN_SECRET_BYTES = 32
MAX_DOMAIN_BYTES = 255
CACHE_SIZE = 4096
"""Bound on each factor cache: far above the number of domains in a federation."""


def check_domain(domain: object) -> str:
    """Return ``domain`` if it is a usable domain (organisation or node) id."""
    if not isinstance(domain, str):
        raise PseudonymError(f"a domain id must be a string, not {type(domain).__name__}")
    if not domain or not domain.isprintable() or any(ch.isspace() for ch in domain):
        raise PseudonymError(
            f"a domain id must be non-empty printable text without whitespace, got {domain!r}"
        )
    if len(domain.encode("utf-8")) > MAX_DOMAIN_BYTES:
        raise PseudonymError(f"a domain id must be at most {MAX_DOMAIN_BYTES} bytes of UTF-8")
    return domain


def check_secret(secret: object, what: str) -> bytes:
    """Return ``secret`` if it is bytes of at least :data:`MIN_SECRET_BYTES`."""
    if not isinstance(secret, bytes):
        raise PseudonymError(f"{what} must be bytes, not {type(secret).__name__}")
    if len(secret) < MIN_SECRET_BYTES:
        raise PseudonymError(f"{what} must be at least {MIN_SECRET_BYTES} bytes, got {len(secret)}")
    return secret


def hash_to_scalar(secret: bytes, label: bytes) -> bytes:
    """``Hs``: HMAC-SHA512 of ``label`` under ``secret``, reduced to a scalar; never zero."""
    mac = hmac.HMAC(secret, hashes.SHA512())
    mac.update(label)
    return _group.check_scalar(_group.reduce_wide(mac.finalize()), "derived factor")


def pseudonymisation_factor(pseudonymisation_secret: bytes, domain: str) -> bytes:
    """``s_d``: the factor that turns the subject point into the domain's pseudonym."""
    return hash_to_scalar(pseudonymisation_secret, PSEUDONYMISE_LABEL + domain.encode("utf-8"))


def rekey_factor(rekey_secret: bytes, domain: str) -> bytes:
    """``k_d``: the factor that turns the global key into the domain's key."""
    return hash_to_scalar(rekey_secret, REKEY_LABEL + domain.encode("utf-8"))


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
        ps = check_secret(pseudonymisation_secret, "the pseudonymisation secret")
        rs = check_secret(rekey_secret, "the rekey secret")
        if global_public_key is not None:
            _group.check_point(global_public_key, "the global public key")
        self._global_public_key = global_public_key

        @functools.lru_cache(maxsize=CACHE_SIZE)
        def factors(domain: str) -> tuple[bytes, bytes]:
            check_domain(domain)
            return pseudonymisation_factor(ps, domain), rekey_factor(rs, domain)

        @functools.lru_cache(maxsize=CACHE_SIZE)
        def inverses(domain: str) -> tuple[bytes, bytes]:
            s, k = factors(domain)
            return _group.scalar_invert(s, "factor"), _group.scalar_invert(k, "factor")

        @functools.lru_cache(maxsize=CACHE_SIZE)
        def conversion(to_domain: str, from_domain: str | None) -> tuple[bytes, bytes, bytes]:
            s, k = factors(to_domain)
            if from_domain is not None:
                s_inv, k_inv = inverses(from_domain)
                s, k = _group.scalar_mul(s, s_inv), _group.scalar_mul(k, k_inv)
            b_factor = _group.scalar_mul(s, _group.scalar_invert(k, "rekey factor"))
            return s, k, b_factor

        @functools.lru_cache(maxsize=CACHE_SIZE)
        def rekeyed(k: bytes, public_key: bytes) -> bytes:
            return _group.mul(k, public_key, "rekeying the public key")

        self._factors = factors
        self._conversion = conversion
        self._rekeyed = rekeyed

    def domain_public_key(self, domain: str, global_public_key: bytes) -> bytes:
        """``k_d * Y``: the public key of ``domain``, which equals ``y_d * G``."""
        _group.check_point(global_public_key, "the global public key")
        return self._rekeyed(self._factors(check_domain(domain))[1], global_public_key)

    def _source_key(self, from_domain: str | None) -> bytes | None:
        if self._global_public_key is None or from_domain is None:
            return self._global_public_key
        return self._rekeyed(self._factors(from_domain)[1], self._global_public_key)

    def transcrypt(
        self, ct: Ciphertext, to_domain: str, from_domain: str | None = None
    ) -> Ciphertext:
        """Move ``ct`` from ``from_domain`` (None: the global key Y) to ``to_domain``.

        Reshuffles the plaintext to ``to_domain``'s pseudonym, rekeys it to
        ``to_domain``'s key and rerandomises, so the result cannot be linked
        to ``ct`` without the secrets.
        """
        return _rerandomise(
            self._reshuffle_rekey(ct, to_domain, from_domain), _group.random_scalar()
        )

    def _reshuffle_rekey(
        self, ct: Ciphertext, to_domain: str, from_domain: str | None
    ) -> Ciphertext:
        # Deterministic, hence linkable: only transcrypt() and the test vectors call it.
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
            _group.mul(b_factor, ct.b, "transcryption"),
            _group.mul(s, ct.c, "transcryption"),
            self._rekeyed(k, ct.public_key),
        )
