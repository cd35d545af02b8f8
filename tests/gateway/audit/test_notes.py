"""C2SP signed notes, checkpoints and cosignatures, checked byte for byte against the specs."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.audit import notes


def _raw(signer: notes.Signer) -> bytes:
    return signer.private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def test_key_id_and_vkey_follow_signed_note() -> None:
    signer = notes.Signer.generate("zvh-haaglanden")
    expected = hashlib.sha256(b"zvh-haaglanden\n\x01" + _raw(signer)).digest()[:4]
    verifier = signer.verifier()
    assert verifier.key_id == expected
    vkey = verifier.vkey()
    name, hex_id, material = vkey.split("+", 2)
    assert (name, hex_id) == ("zvh-haaglanden", expected.hex())
    assert base64.b64decode(material) == b"\x01" + _raw(signer)
    assert notes.Verifier.from_vkey(vkey) == verifier


def test_bad_vkeys_are_refused_with_the_reason() -> None:
    vkey = notes.Signer.generate("n1").verifier().vkey()
    name, hex_id, material = vkey.split("+", 2)
    with pytest.raises(notes.NoteError, match="key id does not match"):
        notes.Verifier.from_vkey(f"{name}+00000000+{material}")
    with pytest.raises(notes.NoteError, match=r"<name>\+<hex key id>\+<base64 key>"):
        notes.Verifier.from_vkey("just-a-name")
    with pytest.raises(notes.NoteError, match="not an Ed25519"):
        notes.Verifier.from_vkey(f"{name}+{hex_id}+{base64.b64encode(b'x' * 33).decode()}")


def test_checkpoint_note_format_and_verification() -> None:
    signer = notes.Signer.generate("zvh-haaglanden")
    root = hashlib.sha256(b"root").digest()
    note = notes.sign_checkpoint(notes.Checkpoint("zvh-haaglanden", 42, root), signer)
    text, _, sig_line = note.partition(b"\n\n")
    assert text + b"\n" == b"zvh-haaglanden\n42\n" + base64.b64encode(root) + b"\n"
    assert sig_line.startswith("\u2014 zvh-haaglanden ".encode())
    payload = base64.b64decode(sig_line.split(b" ")[2])
    assert payload[:4] == signer.verifier().key_id and len(payload) == 68
    checkpoint, _ = notes.open_checkpoint(note, signer.verifier())
    assert (checkpoint.size, checkpoint.root) == (42, root)


def test_forged_or_foreign_checkpoints_are_refused() -> None:
    signer, other = notes.Signer.generate("zvh-a"), notes.Signer.generate("zvh-a")
    note = notes.sign_checkpoint(notes.Checkpoint("zvh-a", 5, bytes(32)), signer)
    forged = note.replace(b"\n5\n", b"\n6\n")
    with pytest.raises(notes.NoteError, match="does not verify"):
        notes.open_checkpoint(forged, signer.verifier())
    with pytest.raises(notes.NoteError, match="no signature by the pinned key"):
        notes.open_checkpoint(note, other.verifier())
    with pytest.raises(notes.NoteError, match="origin 'zvh-a' is not 'zvh-b'"):
        notes.open_checkpoint(note, notes.Signer.generate("zvh-b").verifier())
    with pytest.raises(notes.NoteError, match="blank line"):
        notes.parse_note(b"zvh-a\n5\n")
    with pytest.raises(notes.NoteError, match="leading zeros"):
        notes.Checkpoint.parse(b"zvh-a\n05\n" + base64.b64encode(bytes(32)) + b"\n")
    with pytest.raises(notes.NoteError, match="exactly origin, size and root"):
        notes.Checkpoint.parse(b"zvh-a\n5\n" + base64.b64encode(bytes(32)) + b"\nextra\n")


def test_cosignature_v1_format() -> None:
    witness = notes.Signer.generate("zvh-rotterdam", notes.COSIGNATURE_V1)
    text = b"zvh-haaglanden\n42\n" + base64.b64encode(bytes(32)) + b"\n"
    line = notes.cosign(text, witness, 1_679_315_147)
    sig = notes.parse_signature_line(line)
    raw = _raw(witness)
    assert sig.name == "zvh-rotterdam"
    assert sig.key_id == hashlib.sha256(b"zvh-rotterdam\n\x04" + raw).digest()[:4]
    assert struct.unpack(">Q", sig.signature[:8]) == (1_679_315_147,)
    message = b"cosignature/v1\ntime 1679315147\n" + text
    witness.private_key.public_key().verify(sig.signature[8:], message)
    assert notes.verify_cosignature(text, sig, witness.verifier()) == 1_679_315_147
    with pytest.raises(notes.NoteError, match="does not verify"):
        notes.verify_cosignature(text.replace(b"42", b"43"), sig, witness.verifier())
    with pytest.raises(notes.NoteError, match=r"cosignature/v1 \(0x04\) key"):
        notes.cosign(text, notes.Signer.generate("x"), 1)
