"""Generate test_vectors_chain.json: known answers for a chain of two transcryptors (n-PEP).

Run ``python -m policy.pseudonyms.vectors_chain`` to print them. As with
test_vectors.json, a test recomputes every value, and all inputs come from
fixed labels. Each subject is followed through both links: the link's
reshuffle and rekey alone (``converted``), then its rerandomisation with a
fixed scalar (``output``), which is the next link's input.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from policy.pseudonyms.ceremony import run_ceremony
from policy.pseudonyms.elgamal import decrypt
from policy.pseudonyms.hazmat.conversion import Converter
from policy.pseudonyms.hazmat.elgamal import encrypt_with, rerandomise_with
from policy.pseudonyms.hazmat.factors import pseudonymisation_factor, rekey_factor
from policy.pseudonyms.identifiers import subject_point
from policy.pseudonyms.shares import TranscryptorShare, assemble
from policy.pseudonyms.vectors import DOMAINS, SUBJECTS, fixed_scalar

TRANSCRYPTORS = ("tc-regio", "tc-landelijk")


def fixed_shares() -> tuple[TranscryptorShare, ...]:
    """The two transcryptors' shares of the vectors."""
    return tuple(
        TranscryptorShare(
            transcryptor=name,
            pseudonymisation_secret=hashlib.sha256(
                f"schakel/v1 chain vector: PS {name}".encode()
            ).digest(),
            rekey_secret=hashlib.sha256(f"schakel/v1 chain vector: RS {name}".encode()).digest(),
            key_share=fixed_scalar(f"schakel/v1 chain vector: key share {name}"),
        )
        for name in TRANSCRYPTORS
    )


def build_vectors() -> dict[str, Any]:
    """Compute the full vector document."""
    shares = fixed_shares()
    transcript = run_ceremony(shares)
    big_y = transcript.global_public_key
    converters = [Converter(s.pseudonymisation_secret, s.rekey_secret) for s in shares]
    domains: list[dict[str, Any]] = []
    keys: dict[str, bytes] = {}
    for domain in DOMAINS:
        key = assemble([s.domain_factor(domain, big_y) for s in shares])
        domains.append(
            {
                "domain": domain,
                "per_transcryptor": [
                    {
                        "transcryptor": s.transcryptor,
                        "pseudonymisation_factor": pseudonymisation_factor(
                            s.pseudonymisation_secret, domain
                        ).hex(),
                        "rekey_factor": rekey_factor(s.rekey_secret, domain).hex(),
                        "domain_factor": s.domain_factor(domain, big_y).factor.hex(),
                    }
                    for s in shares
                ],
                "domain_secret_key": key.secret_key.hex(),
                "domain_public_key": key.public_key.hex(),
            }
        )
        keys[domain] = key.secret_key
    subjects = []
    for index, (id_type, value) in enumerate(SUBJECTS):
        point = subject_point(id_type, value)
        r = fixed_scalar(f"schakel/v1 chain vector: encryption randomness {index}")
        ct = encrypt_with(point, big_y, r)
        per_domain = []
        for domain in DOMAINS:
            links, current = [], ct
            for link, (share, converter) in enumerate(zip(shares, converters, strict=True)):
                converted = converter.reshuffle_rekey(current, domain, None)
                r_link = fixed_scalar(
                    f"schakel/v1 chain vector: rerandomisation {index} {domain} {link}"
                )
                current = rerandomise_with(converted, r_link)
                links.append(
                    {
                        "transcryptor": share.transcryptor,
                        "converted": converted.to_bytes().hex(),
                        "rerandomisation_randomness": r_link.hex(),
                        "output": current.to_bytes().hex(),
                    }
                )
            pseudonym = decrypt(current, keys[domain])
            per_domain.append({"domain": domain, "links": links, "pseudonym": pseudonym.hex()})
        subjects.append(
            {
                "id_type": id_type,
                "id_value": value,
                "subject_point": point.hex(),
                "encryption_randomness": r.hex(),
                "ciphertext": ct.to_bytes().hex(),
                "per_domain": per_domain,
            }
        )
    return {
        "scheme": "schakel/v1 polymorphic pseudonyms, distributed over two transcryptors",
        "note": (
            "Hex everywhere; scalars are 32-byte little-endian. Each link's 'converted' is its "
            "reshuffle+rekey, 'output' that rerandomised with the given scalar and the next "
            "link's input. The pseudonyms equal s_d * M with s_d the product of the links' "
            "factors; the ceremony's proofs use deterministic nonces, so they are fixed too."
        ),
        "transcryptors": [
            {
                "transcryptor": s.transcryptor,
                "pseudonymisation_secret": s.pseudonymisation_secret.hex(),
                "rekey_secret": s.rekey_secret.hex(),
                "key_share": s.require_key_share().hex(),
            }
            for s in shares
        ],
        "ceremony": json.loads(transcript.to_json()),
        "global_public_key": big_y.hex(),
        "domains": domains,
        "subjects": subjects,
    }


if __name__ == "__main__":
    json.dump(build_vectors(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
