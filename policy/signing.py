"""Ed25519 detached signatures over policy bundle files.

A bundle ``bundle.yaml`` is signed by ``bundle.yaml.sig``: one line holding
the base64 of the 64-byte Ed25519 signature over the file's exact bytes. The
private policy key is a PKCS#8 PEM file (mode 0600) and is never committed;
its public key sits beside it as ``<key>.pub`` (SubjectPublicKeyInfo PEM),
which is what nodes pin.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policy.model import PolicyError

SIGNATURE_SUFFIX = ".sig"
PUBLIC_SUFFIX = ".pub"


class SignatureError(PolicyError):
    """A bundle is unsigned, its signature is malformed, or it does not verify."""


def signature_path(bundle_path: str | Path) -> Path:
    """Where the detached signature of ``bundle_path`` lives."""
    path = Path(bundle_path)
    return path.with_name(path.name + SIGNATURE_SUFFIX)


def public_key_path(key_path: str | Path) -> Path:
    """Where :func:`generate_key` writes the public half of ``key_path``."""
    path = Path(key_path)
    return path.with_name(path.name + PUBLIC_SUFFIX)


def generate_key(path: str | Path) -> Path:
    """Write a new private policy key to ``path`` (0600) and its public key; return the latter.

    Refuses to overwrite an existing key: replacing a policy key silently
    would make every node refuse the next bundle.
    """
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise PolicyError(f"{path} exists; refusing to overwrite a policy key") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    pub = public_key_path(path)
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pub


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Read a private policy key written by :func:`generate_key`."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PolicyError(f"{path}: not a readable unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise PolicyError(f"{path}: the policy key must be Ed25519")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """Read a pinned public policy key (PEM)."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{path}: not a readable PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise PolicyError(f"{path}: the policy key must be Ed25519")
    return key


def sign_bytes(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """The signature file contents for ``data``."""
    return base64.b64encode(key.sign(data)) + b"\n"


def sign_bundle(bundle_path: str | Path, key_path: str | Path) -> Path:
    """Sign the bundle file with the private key; write and return the ``.sig`` path."""
    key = load_private_key(key_path)
    data = Path(bundle_path).read_bytes()
    sig = signature_path(bundle_path)
    tmp = sig.with_name(sig.name + ".tmp")
    tmp.write_bytes(sign_bytes(data, key))
    # rename is atomic, so a polling node never reads half a signature.
    tmp.replace(sig)
    return sig


def verify_bytes(data: bytes, signature_file: bytes, key: Ed25519PublicKey) -> None:
    """Check a signature file's contents against ``data``; raise :class:`SignatureError`."""
    try:
        raw = base64.b64decode(signature_file.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("the signature file is not base64") from exc
    if len(raw) != 64:
        raise SignatureError(f"the signature is {len(raw)} bytes; Ed25519 signatures are 64")
    try:
        key.verify(raw, data)
    except InvalidSignature as exc:
        raise SignatureError(
            "the signature does not match the bundle (tampered, or signed by another key)"
        ) from exc


def read_signed(bundle_path: str | Path, key: Ed25519PublicKey) -> bytes:
    """The bundle's bytes, after checking its detached signature; raise if unsigned or bad."""
    bundle_path = Path(bundle_path)
    try:
        data = bundle_path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{bundle_path}: cannot read ({exc.strerror})") from exc
    sig = signature_path(bundle_path)
    try:
        signature = sig.read_bytes()
    except FileNotFoundError as exc:
        raise SignatureError(f"{bundle_path} is unsigned: {sig.name} is missing") from exc
    except OSError as exc:
        raise SignatureError(f"{sig}: cannot read ({exc.strerror})") from exc
    verify_bytes(data, signature, key)
    return data
