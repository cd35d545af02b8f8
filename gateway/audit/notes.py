"""C2SP signed notes, tlog checkpoints and tlog cosignatures with Ed25519.

- signed-note: a note is a UTF-8 text ending in a newline, a blank line, then
  signature lines ``— <key name> base64(key id || signature)``. The key id
  is ``SHA-256(name || 0x0A || type || public key)[:4]``; type 0x01 is a
  plain Ed25519 note signature.
- tlog-checkpoint: the text is ``<origin>\\n<size>\\n<base64 root>\\n``.
- tlog-cosignature: type 0x04; the signature is ``u64 timestamp || Ed25519
  signature`` over ``cosignature/v1\\ntime <t>\\n`` + the checkpoint text.
- verifier keys (vkeys) are ``<name>+<hex key id>+<base64(type || public key)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = 0x01
"""Signature type of a plain Ed25519 note signature (the log's checkpoint signature)."""
COSIGNATURE_V1 = 0x04
"""Signature type of a timestamped Ed25519 cosignature/v1."""
_DASH = "\u2014 "
_NAME = re.compile(r"^[^\s+]+$")
_MAX_NOTE = 1 << 20


class NoteError(ValueError):
    """A note, checkpoint, signature or key is malformed or does not verify."""


class KeyMismatchError(NoteError):
    """The note is signed, but not by the pinned key: most likely the wrong key was pinned."""


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """The 4-byte signed-note key id."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_name(name: str) -> str:
    if not name or not _NAME.match(name):
        raise NoteError("a key name must be non-empty, without spaces or '+'")
    return name


@dataclass(frozen=True)
class Verifier:
    """A pinned public key: name, signature type and Ed25519 key."""

    name: str
    sig_type: int
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        """The signed-note key id of this key."""
        return key_id(self.name, self.sig_type, _raw(self.public_key))

    def vkey(self) -> str:
        """The C2SP vkey text of this key."""
        material = base64.b64encode(bytes([self.sig_type]) + _raw(self.public_key)).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def from_vkey(cls, text: str) -> Verifier:
        """Parse a vkey; raise :class:`NoteError` saying what is wrong."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("a vkey is <name>+<hex key id>+<base64 key>")
        name, hex_id, material = parts
        _check_name(name)
        try:
            raw = base64.b64decode(material, validate=True)
            wanted_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise NoteError("vkey key id or key material is not valid hex/base64") from exc
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError("vkey is not an Ed25519 (0x01) or cosignature/v1 (0x04) key")
        verifier = cls(name, raw[0], Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_id != wanted_id:
            raise NoteError(f"vkey for {name}: key id does not match the key")
        return verifier


@dataclass(frozen=True)
class Signer:
    """A private signing key with its note name and signature type."""

    name: str
    sig_type: int
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str, sig_type: int = ED25519) -> Signer:
        """A fresh key."""
        return cls(_check_name(name), sig_type, Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path, name: str, sig_type: int = ED25519) -> Signer:
        """Load a PKCS#8 PEM Ed25519 key."""
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise NoteError(f"{path}: not an Ed25519 private key")
        return cls(_check_name(name), sig_type, key)

    def pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (write it with mode 0600)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def verifier(self) -> Verifier:
        """The matching public key."""
        return Verifier(self.name, self.sig_type, self.private_key.public_key())


@dataclass(frozen=True)
class Signature:
    """One parsed signature line of a note."""

    name: str
    key_id: bytes
    signature: bytes
    line: bytes


@dataclass(frozen=True)
class Note:
    """A parsed signed note."""

    text: bytes
    signatures: tuple[Signature, ...]


def _line(name: str, payload: bytes) -> bytes:
    return f"{_DASH}{name} {base64.b64encode(payload).decode()}\n".encode()


def parse_note(note: bytes) -> Note:
    """Split a signed note into text and signatures; raise :class:`NoteError` if malformed."""
    if len(note) > _MAX_NOTE:
        raise NoteError("note is larger than 1 MiB")
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError("note is not UTF-8") from exc
    split = decoded.rfind("\n\n")
    if split < 0 or not decoded.endswith("\n"):
        raise NoteError("note has no blank line before its signatures, or no final newline")
    text, sig_block = decoded[: split + 1], decoded[split + 2 :]
    signatures = []
    for raw_line in sig_block.splitlines(keepends=True):
        if not raw_line.startswith(_DASH) or not raw_line.endswith("\n"):
            raise NoteError("signature line does not start with an em dash and a space")
        fields = raw_line[len(_DASH) : -1].split(" ")
        if len(fields) != 2:
            raise NoteError("signature line is not '— <name> <base64>'")
        name, b64 = fields
        try:
            payload = base64.b64decode(b64, validate=True)
        except binascii.Error as exc:
            raise NoteError(f"signature by {name} is not base64") from exc
        if len(payload) < 5:
            raise NoteError(f"signature by {name} is too short")
        signatures.append(Signature(name, payload[:4], payload[4:], raw_line.encode()))
    if not signatures:
        raise NoteError("note carries no signature")
    return Note(text.encode(), tuple(signatures))


def sign_note(text: bytes, signer: Signer) -> bytes:
    """A signature line of ``signer`` (type 0x01) over note text ``text``."""
    return _line(signer.name, signer.verifier().key_id + signer.private_key.sign(text))


def verify_note(note: Note, verifier: Verifier) -> None:
    """Check that ``note`` carries a valid type-0x01 signature by ``verifier``."""
    found = False
    for sig in note.signatures:
        if sig.name == verifier.name and sig.key_id == verifier.key_id:
            found = True
            try:
                verifier.public_key.verify(sig.signature, note.text)
            except InvalidSignature:
                continue
            return
    if found:
        raise NoteError(f"the signature by {verifier.name} does not verify")
    # Other keys of the same name: a rotated or copied key (witnesses' cosignatures aside).
    same_name = sorted({s.key_id.hex() for s in note.signatures if s.name == verifier.name})
    by = f", only by {', '.join(f'{verifier.name}+{k}' for k in same_name)}" if same_name else ""
    raise KeyMismatchError(
        f"the note carries no signature by the pinned key "
        f"{verifier.name}+{verifier.key_id.hex()}{by}"
    )


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint: origin, tree size and root hash."""

    origin: str
    size: int
    root: bytes

    def text(self) -> bytes:
        """The checkpoint note text."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n".encode()

    @classmethod
    def parse(cls, text: bytes) -> Checkpoint:
        """Parse checkpoint text; raise :class:`NoteError` when malformed."""
        lines = text.decode("utf-8", errors="strict").split("\n")
        if len(lines) != 4 or lines[3] != "":
            raise NoteError("checkpoint text must be exactly origin, size and root lines")
        origin, size_text, root_text = lines[:3]
        if not origin:
            raise NoteError("checkpoint origin is empty")
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise NoteError("checkpoint size is not a decimal without leading zeros")
        try:
            root = base64.b64decode(root_text, validate=True)
        except binascii.Error as exc:
            raise NoteError("checkpoint root is not base64") from exc
        if len(root) != 32:
            raise NoteError("checkpoint root is not 32 bytes")
        return cls(origin, int(size_text), root)


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> bytes:
    """The signed note of ``checkpoint``."""
    if signer.name != checkpoint.origin:
        raise NoteError("a checkpoint is signed with the key named after its origin")
    text = checkpoint.text()
    return text + b"\n" + sign_note(text, signer)


def open_checkpoint(note: bytes, verifier: Verifier) -> tuple[Checkpoint, Note]:
    """Parse a signed checkpoint and check the log's signature with the pinned key."""
    parsed = parse_note(note)
    checkpoint = Checkpoint.parse(parsed.text)
    if checkpoint.origin != verifier.name:
        raise KeyMismatchError(
            f"checkpoint origin {checkpoint.origin!r} is not {verifier.name!r}, "
            "the name of the pinned key"
        )
    verify_note(parsed, verifier)
    return checkpoint, parsed


def _cosigned_message(text: bytes, timestamp: int) -> bytes:
    return b"cosignature/v1\ntime %d\n" % timestamp + text


def cosign(text: bytes, signer: Signer, timestamp: int) -> bytes:
    """A cosignature/v1 line by ``signer`` over checkpoint text ``text`` at ``timestamp``."""
    if signer.sig_type != COSIGNATURE_V1:
        raise NoteError("cosignatures need a cosignature/v1 (0x04) key")
    if not 0 <= timestamp < 1 << 63:
        raise NoteError("cosignature timestamp out of range")
    sig = signer.private_key.sign(_cosigned_message(text, timestamp))
    return _line(signer.name, signer.verifier().key_id + struct.pack(">Q", timestamp) + sig)


def verify_cosignature(text: bytes, signature: Signature, verifier: Verifier) -> int:
    """Check one cosignature/v1 over ``text``; returns its timestamp."""
    if verifier.sig_type != COSIGNATURE_V1:
        raise NoteError(f"{verifier.name} is not a cosignature/v1 key")
    if signature.name != verifier.name or signature.key_id != verifier.key_id:
        raise NoteError(f"signature is not by the pinned witness key {verifier.name}")
    if len(signature.signature) != 8 + 64:
        raise NoteError(f"cosignature by {verifier.name} has the wrong length")
    (timestamp,) = struct.unpack(">Q", signature.signature[:8])
    try:
        verifier.public_key.verify(signature.signature[8:], _cosigned_message(text, timestamp))
    except InvalidSignature as exc:
        raise NoteError(f"cosignature by {verifier.name} does not verify") from exc
    return int(timestamp)


def parse_signature_line(line: bytes) -> Signature:
    """Parse one ``— <name> <base64>`` line (e.g. a witness's AddCheckpoint answer)."""
    signatures = parse_note(b"x\n\n" + line).signatures
    if len(signatures) != 1:
        raise NoteError("expected exactly one signature line")
    return signatures[0]
