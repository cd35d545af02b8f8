"""Generate test_vectors.json: known answers for implementers in other languages.

Run ``python -m policy.pseudonyms.vectors`` to print them. The committed file
is the compatibility contract: tests/pseudonyms/test_vectors.py recomputes
every value, so a change that would alter stored pseudonyms fails there. All
inputs are derived from fixed labels so the file is reproducible.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from policy.pseudonyms.hazmat import group
from policy.pseudonyms.hazmat.conversion import Converter
from policy.pseudonyms.hazmat.elgamal import encrypt_with, rerandomise_with
from policy.pseudonyms.hazmat.factors import pseudonymisation_factor, rekey_factor
from policy.pseudonyms.identifiers import subject_point
from policy.pseudonyms.keys import FederationKeys

DOMAINS = ("politie-rotterdam", "ggz-delfland", "zvh-rijnmond", "gemeente-súdwest-fryslân")
SUBJECTS = (("bsn", "123456782"), ("bsn", "111222333"), ("vnummer", "1234567890"))


def fixed_scalar(label: str) -> bytes:
    """A scalar derived from a label: SHA-512, reduced modulo the group order."""
    return group.reduce_wide(hashlib.sha512(label.encode()).digest())


def fixed_keys() -> FederationKeys:
    """The federation keys of the vectors."""
    y = fixed_scalar("schakel/v1 test vector: global secret key")
    return FederationKeys(
        global_secret_key=y,
        global_public_key=group.mul_base(y, "global key"),
        pseudonymisation_secret=hashlib.sha256(b"schakel/v1 test vector: PS").digest(),
        rekey_secret=hashlib.sha256(b"schakel/v1 test vector: RS").digest(),
    )


def build_vectors() -> dict[str, Any]:
    """Compute the full vector document."""
    keys = fixed_keys()
    converter = Converter(keys.pseudonymisation_secret, keys.rekey_secret)
    domains = []
    for domain in DOMAINS:
        material = keys.domain_key_material(domain)
        domains.append(
            {
                "domain": domain,
                "pseudonymisation_factor": pseudonymisation_factor(
                    keys.pseudonymisation_secret, domain
                ).hex(),
                "rekey_factor": rekey_factor(keys.rekey_secret, domain).hex(),
                "domain_secret_key": material.secret_key.hex(),
                "domain_public_key": material.public_key.hex(),
            }
        )
    subjects = []
    for index, (id_type, value) in enumerate(SUBJECTS):
        point = subject_point(id_type, value)
        r = fixed_scalar(f"schakel/v1 test vector: encryption randomness {index}")
        r2 = fixed_scalar(f"schakel/v1 test vector: rerandomisation randomness {index}")
        ct = encrypt_with(point, keys.global_public_key, r)
        per_domain = []
        converted = {}
        for domain in DOMAINS:
            converted[domain] = converter.reshuffle_rekey(ct, domain, None)
            scaled = group.mul(
                pseudonymisation_factor(keys.pseudonymisation_secret, domain), point, ""
            )
            per_domain.append(
                {
                    "domain": domain,
                    "transcrypted": converted[domain].to_bytes().hex(),
                    "pseudonym": scaled.hex(),
                }
            )
        source, target = DOMAINS[index % len(DOMAINS)], DOMAINS[(index + 1) % len(DOMAINS)]
        subjects.append(
            {
                "id_type": id_type,
                "id_value": value,
                "subject_point": point.hex(),
                "encryption_randomness": r.hex(),
                "ciphertext": ct.to_bytes().hex(),
                "rerandomisation_randomness": r2.hex(),
                "rerandomised": rerandomise_with(ct, r2).to_bytes().hex(),
                "per_domain": per_domain,
                "domain_to_domain": {
                    "from": source,
                    "to": target,
                    "input": converted[source].to_bytes().hex(),
                    "output": converter.reshuffle_rekey(converted[source], target, source)
                    .to_bytes()
                    .hex(),
                },
            }
        )
    return {
        "scheme": "schakel/v1 polymorphic pseudonyms on ristretto255 (RFC 9496)",
        "note": (
            "Hex everywhere; scalars are 32-byte little-endian. 'transcrypted' and 'output' "
            "are reshuffle+rekey without the final rerandomisation, which uses fresh "
            "randomness; 'rerandomised' shows that step with fixed randomness."
        ),
        "pseudonymisation_secret": keys.pseudonymisation_secret.hex(),
        "rekey_secret": keys.rekey_secret.hex(),
        "global_secret_key": keys.global_secret_key.hex(),
        "global_public_key": keys.global_public_key.hex(),
        "domains": domains,
        "subjects": subjects,
    }


if __name__ == "__main__":
    json.dump(build_vectors(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
