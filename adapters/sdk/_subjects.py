"""Subject helpers for partner systems: identifiers in, pseudonyms out.

A partner encrypts an identifier under the federation key before it leaves
the partner's system, and decrypts what the node sends back to the
partner's own domain pseudonym. No group elements to handle by hand.
"""

from __future__ import annotations

from schakel.v1 import common_pb2

from policy.pseudonyms import Ciphertext, decrypt, encrypt, pseudonym_hex, subject_point


def encrypt_subject(
    id_type: str, value: str, federation_public_key: bytes
) -> common_pb2.EncryptedPseudonym:
    """Encrypt an identifier (e.g. ``"bsn"``, ``"123456782"``) under the federation key ``Y``.

    Raises :class:`policy.pseudonyms.PseudonymError` for an invalid identifier
    (a BSN must pass the elfproef) or key; the message never holds the value.
    """
    return encrypt(subject_point(id_type, value), federation_public_key).to_proto()


def decrypt_subject(msg: common_pb2.EncryptedPseudonym, domain_key: bytes) -> str:
    """Decrypt a subject the node sent to this domain: the domain pseudonym, lowercase hex."""
    return pseudonym_hex(decrypt(Ciphertext.from_proto(msg), domain_key))
