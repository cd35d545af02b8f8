"""The secret per-domain factors, derived from the transcryptor secrets.

``Hs(secret, label) = scalar_reduce(HMAC-SHA512(secret, label))``;
``s_d = Hs(PS, b"schakel/v1/pseudonymise|" + d)`` and
``k_d = Hs(RS, b"schakel/v1/rekey|" + d)``, ``d`` the domain id in UTF-8.
A factor is as secret as the secret it comes from: ``s_d`` turns any subject
point into domain ``d``'s pseudonym, so it must never leave the transcryptor.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

from policy.pseudonyms.errors import PseudonymError
from policy.pseudonyms.hazmat import group

PSEUDONYMISE_LABEL = b"schakel/v1/pseudonymise|"
REKEY_LABEL = b"schakel/v1/rekey|"
MIN_SECRET_BYTES = 32


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
    return group.check_scalar(group.reduce_wide(mac.finalize()), "derived factor")


def pseudonymisation_factor(pseudonymisation_secret: bytes, domain: str) -> bytes:
    """``s_d``: the factor that turns the subject point into the domain's pseudonym."""
    return hash_to_scalar(pseudonymisation_secret, PSEUDONYMISE_LABEL + domain.encode("utf-8"))


def rekey_factor(rekey_secret: bytes, domain: str) -> bytes:
    """``k_d``: the factor that turns the global key into the domain's key."""
    return hash_to_scalar(rekey_secret, REKEY_LABEL + domain.encode("utf-8"))
