"""The key ceremony: each step proves its share, and a bad step is named."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from policy.pseudonyms import FederationKeys, KeyFileError, PseudonymError
from policy.pseudonyms.ceremony import Transcript, run_ceremony, taken_over
from policy.pseudonyms.hazmat import dleq, group
from policy.pseudonyms.shares import DomainFactor, TranscryptorShare, assemble


@pytest.fixture(scope="module")
def shares() -> tuple[TranscryptorShare, ...]:
    return tuple(TranscryptorShare.generate(f"tc-{i}") for i in range(3))


def test_y_is_the_product_of_the_shares(shares: tuple[TranscryptorShare, ...]) -> None:
    transcript = run_ceremony(shares)
    y = bytes([1]) + bytes(31)
    for share in shares:
        y = group.scalar_mul(y, share.require_key_share())
    assert transcript.global_public_key == group.mul_base(y, "")
    assert transcript.check() == transcript.global_public_key


def test_a_transcript_round_trips_and_is_checked_on_load(
    shares: tuple[TranscryptorShare, ...], tmp_path: Path
) -> None:
    transcript = run_ceremony(shares)
    path = tmp_path / "ceremony.json"
    transcript.save(path)
    assert Transcript.load(path) == transcript
    doc = json.loads(path.read_text())
    doc["steps"][1]["result"] = doc["steps"][2]["result"]
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="tc-1"):
        Transcript.load(path)


def test_a_step_whose_share_is_not_behind_its_result_fails(
    shares: tuple[TranscryptorShare, ...],
) -> None:
    transcript = run_ceremony(shares[:2])
    other = TranscryptorShare.generate("tc-other")
    forged = replace(transcript.steps[1], share=other.public_share)
    with pytest.raises(PseudonymError, match="does not verify"):
        Transcript((transcript.steps[0], forged)).check()
    skipped = Transcript((transcript.steps[1],))
    with pytest.raises(PseudonymError, match="does not start"):
        skipped.check()


def test_a_transcryptor_takes_one_step_only(shares: tuple[TranscryptorShare, ...]) -> None:
    with pytest.raises(PseudonymError, match="already took"):
        run_ceremony(shares[:1]).extend(shares[0])


def test_the_proof_binds_the_previous_key(shares: tuple[TranscryptorShare, ...]) -> None:
    u, result, c, z = dleq.prove(shares[0].require_key_share(), group.GENERATOR)
    dleq.verify(group.GENERATOR, u, result, c, z)
    other = group.mul_base(group.random_scalar(), "")
    with pytest.raises(PseudonymError):
        dleq.verify(other, u, result, c, z)


def test_a_share_from_a_nodes_transcryptor_file_cannot_enrol(keys: FederationKeys) -> None:
    share = TranscryptorShare.from_single("tc-enige", keys.transcryptor_keys())
    with pytest.raises(PseudonymError, match="no key share"):
        share.domain_factor("politie-rr", keys.global_public_key)
    assert taken_over(keys.global_public_key).global_public_key == keys.global_public_key
    with pytest.raises(PseudonymError, match="taken over"):
        taken_over(keys.global_public_key).extend(TranscryptorShare.generate("tc-2"))


def test_files_round_trip_with_mode_0600(
    shares: tuple[TranscryptorShare, ...], tmp_path: Path
) -> None:
    y = run_ceremony(shares).global_public_key
    path = tmp_path / "share.json"
    shares[0].save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert TranscryptorShare.load(path) == shares[0]
    factors = []
    for i, share in enumerate(shares):
        f = tmp_path / f"factor-{i}.json"
        share.domain_factor("politie-rr", y).save(f)
        factors.append(DomainFactor.load(f))
    key = assemble(factors)
    assert key.domain == "politie-rr" and key.global_public_key == y
    with pytest.raises(KeyFileError, match="two factors"):
        assemble([factors[0], factors[0]])
    with pytest.raises(KeyFileError, match="domain"):
        assemble([factors[0], shares[1].domain_factor("ggz", y)])
