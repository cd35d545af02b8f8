"""Distributed transcryption (n-PEP): one transcryptor's share, and a domain's key from the shares.

Transcryptor ``i`` holds its own secrets ``PS_i`` and ``RS_i`` and a key share
``y_i``; nobody holds ``PS``, ``RS`` or ``y`` of the whole federation. Its
factors are derived from its own secrets as in the single scheme
(``s_{d,i}``, ``k_{d,i}``), and the federation's factors are their products:
``s_d = prod s_{d,i}``, ``k_d = prod k_{d,i}``, ``y = prod y_i``.

Two JSON files, each with a ``format`` tag and lowercase-hex values:

- ``schakel-pep-transcryptor-share/v1``, the transcryptor's own file:
  its id, ``PS_i``, ``RS_i`` and ``y_i`` (absent in a share taken over from a
  node's single ``transcryptor.json``, which never held ``y``);
- ``schakel-pep-domain-factor/v1``, what transcryptor ``i`` hands domain
  ``d`` at enrolment: ``k_{d,i} * y_i`` and ``Y``.

:func:`assemble` multiplies a domain's factors, one from every transcryptor,
into its key ``y_d = prod (k_{d,i} * y_i) = k_d * y``;
:func:`assemble_enrolment` does it for the answers of online enrolment
(a node's ``schakel node enrol``, a partner's ``adapters.sdk.enrol_domain``).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from policy.pseudonyms.domains import check_domain
from policy.pseudonyms.errors import KeyFileError, PseudonymError
from policy.pseudonyms.hazmat import group
from policy.pseudonyms.hazmat.factors import MIN_SECRET_BYTES, check_secret, rekey_factor
from policy.pseudonyms.keys import (
    DomainKey,
    FederationKeys,
    TranscryptorKeys,
    field_bytes,
    in_file,
    read_key_file,
    write_key_file,
)
from policy.pseudonyms.transcrypt import Transcryptor

SHARE_FORMAT = "schakel-pep-transcryptor-share/v1"
FACTOR_FORMAT = "schakel-pep-domain-factor/v1"


@dataclass(frozen=True)
class TranscryptorShare:
    """One transcryptor's secrets: ``PS_i``, ``RS_i`` and its key share ``y_i``."""

    transcryptor: str
    """The transcryptor's id, as in its certificate ``schakel://transcryptor/<id>``."""
    pseudonymisation_secret: bytes = field(repr=False)
    rekey_secret: bytes = field(repr=False)
    key_share: bytes | None = field(repr=False)
    """``y_i``; None for a share taken over from a node's ``transcryptor.json``."""

    @classmethod
    def generate(cls, transcryptor: str) -> TranscryptorShare:
        """Fresh secrets from the OS's and libsodium's CSPRNG."""
        return cls(
            check_domain(transcryptor),
            secrets.token_bytes(MIN_SECRET_BYTES),
            secrets.token_bytes(MIN_SECRET_BYTES),
            group.random_scalar(),
        )

    @classmethod
    def from_single(
        cls, transcryptor: str, keys: FederationKeys | TranscryptorKeys
    ) -> TranscryptorShare:
        """The share of a chain of one that answers byte for byte as the single scheme.

        From the key authority's file the share takes ``y`` too, so it can
        enrol domains; from a node's ``transcryptor.json`` only PS and RS.
        """
        y = keys.global_secret_key if isinstance(keys, FederationKeys) else None
        return cls(check_domain(transcryptor), keys.pseudonymisation_secret, keys.rekey_secret, y)

    @property
    def public_share(self) -> bytes:
        """``U_i = y_i * G``, shown in the key ceremony."""
        return group.mul_base(self.require_key_share(), "key share")

    def require_key_share(self) -> bytes:
        """``y_i``; PseudonymError naming why when this share has none."""
        if self.key_share is None:
            raise PseudonymError(
                f"transcryptor {self.transcryptor!r} has no key share (it was taken over from "
                "a node's transcryptor.json), so it can neither enrol domains nor join a ceremony"
            )
        return self.key_share

    def step(self) -> Transcryptor:
        """This transcryptor's link of the chain: its own reshuffle, rekey and rerandomisation.

        It does not check the input's key: only the first link could, and the
        caller (the node) checks that before the chain starts.
        """
        return Transcryptor(self.pseudonymisation_secret, self.rekey_secret)

    def domain_factor(self, domain: str, global_public_key: bytes) -> DomainFactor:
        """``k_{d,i} * y_i``: what this transcryptor hands domain ``domain`` at enrolment."""
        k = rekey_factor(self.rekey_secret, check_domain(domain))
        factor = group.scalar_mul(k, self.require_key_share())
        group.check_point(global_public_key, "the global public key")
        return DomainFactor(self.transcryptor, domain, factor, global_public_key)

    def save(self, path: Path, *, force: bool = False, passphrase_file: Path | None = None) -> None:
        """Write the ``schakel-pep-transcryptor-share/v1`` file (mode 0600), sealed with a
        passphrase file."""
        document = {
            "format": SHARE_FORMAT,
            "transcryptor": self.transcryptor,
            "pseudonymisation_secret": self.pseudonymisation_secret.hex(),
            "rekey_secret": self.rekey_secret.hex(),
        }
        if self.key_share is not None:
            document["key_share"] = self.key_share.hex()
        write_key_file(path, document, force=force, passphrase_file=passphrase_file)

    @classmethod
    def load(cls, path: Path, passphrase_file: Path | None = None) -> TranscryptorShare:
        """Read and check a ``schakel-pep-transcryptor-share/v1`` file, sealed or not."""
        doc = read_key_file(path, SHARE_FORMAT, passphrase_file)
        with in_file(path):
            transcryptor = check_domain(doc.get("transcryptor"))
            ps = check_secret(field_bytes(doc, "pseudonymisation_secret", path), "the PS secret")
            rs = check_secret(field_bytes(doc, "rekey_secret", path), "the RS secret")
            y = None
            if "key_share" in doc:
                y = group.check_scalar(field_bytes(doc, "key_share", path), "key_share")
        return cls(transcryptor, ps, rs, y)


@dataclass(frozen=True)
class DomainFactor:
    """Transcryptor ``i``'s part of domain ``d``'s key: ``k_{d,i} * y_i``, and ``Y``."""

    transcryptor: str
    domain: str
    factor: bytes = field(repr=False)
    global_public_key: bytes

    def save(self, path: Path, *, force: bool = False, passphrase_file: Path | None = None) -> None:
        """Write the ``schakel-pep-domain-factor/v1`` file (mode 0600), sealed with a
        passphrase file."""
        write_key_file(
            path,
            {
                "format": FACTOR_FORMAT,
                "transcryptor": self.transcryptor,
                "domain": self.domain,
                "factor": self.factor.hex(),
                "global_public_key": self.global_public_key.hex(),
            },
            force=force,
            passphrase_file=passphrase_file,
        )

    @classmethod
    def load(cls, path: Path, passphrase_file: Path | None = None) -> DomainFactor:
        """Read and check a ``schakel-pep-domain-factor/v1`` file, sealed or not."""
        doc = read_key_file(path, FACTOR_FORMAT, passphrase_file)
        with in_file(path):
            transcryptor = check_domain(doc.get("transcryptor"))
            domain = check_domain(doc.get("domain"))
            factor = group.check_scalar(field_bytes(doc, "factor", path), "factor")
            big_y = group.check_point(
                field_bytes(doc, "global_public_key", path), "global_public_key"
            )
        return cls(transcryptor, domain, factor, big_y)


def assemble(factors: Sequence[DomainFactor]) -> DomainKey:
    """A domain's key from one factor of every transcryptor: ``y_d = prod (k_{d,i} * y_i)``.

    The factors must be for one domain and one federation key, from distinct
    transcryptors. Whether every transcryptor of the chain is there cannot
    be seen from the factors: a key missing one decrypts nothing the chain
    makes, which the node's start-up check shows.
    """
    if not factors:
        raise KeyFileError("no domain factors given: one from every transcryptor is needed")
    first = factors[0]
    seen: set[str] = set()
    secret = first.factor
    for i, f in enumerate(factors):
        if f.domain != first.domain:
            raise KeyFileError(f"factor {i} is for domain {f.domain!r}, not {first.domain!r}")
        if f.global_public_key != first.global_public_key:
            raise KeyFileError(f"factor {i} is for another federation key than factor 0")
        if f.transcryptor in seen:
            raise KeyFileError(f"two factors come from transcryptor {f.transcryptor!r}")
        seen.add(f.transcryptor)
        if i:
            secret = group.scalar_mul(secret, f.factor)
    return DomainKey(
        domain=first.domain,
        secret_key=secret,
        public_key=group.mul_base(secret, "domain key"),
        global_public_key=first.global_public_key,
    )


def assemble_enrolment(
    transcryptors: Sequence[str], factors: Sequence[DomainFactor], domain: str | None = None
) -> DomainKey:
    """A domain's key from the factors the chain's transcryptors answered at online enrolment.

    ``transcryptors`` are the ids asked, in chain order; the factors must
    come from exactly those, one each, and, when ``domain`` is given, be
    for that domain (the one the caller's certificate names).
    """
    answered = [f.transcryptor for f in factors]
    if answered != list(transcryptors):
        raise KeyFileError(
            f"the factors come from {answered}, not from the transcryptors asked, "
            f"{list(transcryptors)}"
        )
    key = assemble(factors)
    if domain is not None and key.domain != domain:
        raise KeyFileError(f"the transcryptors enrolled {key.domain!r}, not {domain!r}")
    return key
