"""Polymorphic pseudonyms: ElGamal on ristretto255 with domain transcryption.

A partner encrypts a subject under the federation key ``Y``; a chain of
transcryptors, each with its own secrets, converts the ciphertext to a
recipient's domain; the recipient decrypts it to its own stable pseudonym. No party but
the original holder ever sees the identifier. See README.md beside this file
for the byte-exact scheme and test_vectors.json for known answers
(``python -m policy.pseudonyms.vectors`` computes them).

The names here are the recipes, safe to call as they are: every operation
that needs randomness draws it fresh. The primitives under them (group
arithmetic, encryption with a given scalar, the domain factors, conversion
without rerandomisation) are in :mod:`policy.pseudonyms.hazmat`.
"""

from policy.pseudonyms.ceremony import Transcript, run_ceremony
from policy.pseudonyms.chain import LocalChain, transcrypt_chain
from policy.pseudonyms.ciphertext import CIPHERTEXT_BYTES, Ciphertext
from policy.pseudonyms.domains import check_domain
from policy.pseudonyms.elgamal import decrypt, encrypt, pseudonym_hex, rerandomise
from policy.pseudonyms.errors import KeyFileError, PseudonymError
from policy.pseudonyms.identifiers import BSN, check_identifier, is_valid_bsn, subject_point
from policy.pseudonyms.keys import (
    DomainKey,
    FederationKeys,
    TranscryptorKeys,
)
from policy.pseudonyms.shares import DomainFactor, TranscryptorShare, assemble
from policy.pseudonyms.transcrypt import Transcryptor

__all__ = [
    "BSN",
    "CIPHERTEXT_BYTES",
    "Ciphertext",
    "DomainFactor",
    "DomainKey",
    "FederationKeys",
    "KeyFileError",
    "LocalChain",
    "PseudonymError",
    "Transcript",
    "Transcryptor",
    "TranscryptorKeys",
    "TranscryptorShare",
    "assemble",
    "check_domain",
    "check_identifier",
    "decrypt",
    "encrypt",
    "is_valid_bsn",
    "pseudonym_hex",
    "rerandomise",
    "run_ceremony",
    "subject_point",
    "transcrypt_chain",
]
