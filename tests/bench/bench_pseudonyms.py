"""Pseudonym throughput on one core: encrypt, transcrypt (cached and not), decrypt; and
through a chain of two transcryptor processes (:mod:`tests.bench.chain`).

HMAC-SHA256 of a BSN-sized message is the same-run baseline: it is what a
plain keyed-hash pseudonym would cost, so the ratios show the price of
unlinkable, convertible pseudonyms. The primitive rows show where a
transcryption's time goes.
"""

from __future__ import annotations

import hmac
import itertools
import os
import statistics
import time
from collections.abc import Callable

import pysodium

from policy.pseudonyms import FederationKeys, decrypt, encrypt, subject_point
from policy.pseudonyms.elgamal import rerandomise
from policy.pseudonyms.hazmat.conversion import Converter
from tests.bench import chain
from tests.bench.harness import Result, median_rate

AREA = "pseudonyms"
OPS = 300
REPEATS = 9
BASE = "hmac_sha256"


def cpu_rate(fn: Callable[[], object], ops: int, repeats: int = REPEATS) -> float:
    """Median operations per CPU-second of this process (all its threads).

    The benchmark machine is shared; CPU time is far less disturbed by other
    processes than wall time, so it is reported beside the harness's rate.
    """
    fn()
    rates = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        rates.append(ops / max(time.process_time() - start, 1e-9))
    return statistics.median(rates)


def run() -> list[Result]:
    """Measure every operation; each rate is the median of REPEATS runs of OPS operations."""
    keys = FederationKeys.generate()
    transcryptor = keys.transcryptor_keys().transcryptor()
    converter = Converter(
        keys.pseudonymisation_secret, keys.rekey_secret, global_public_key=keys.global_public_key
    )
    point = subject_point("bsn", "123456782")
    ct = encrypt(point, keys.global_public_key)
    in_domain = transcryptor.transcrypt(ct, "politie-rotterdam")
    domain_key = keys.domain_key("politie-rotterdam")
    hmac_key = os.urandom(32)
    fresh_domains = (f"gemeente-{n}" for n in itertools.count())
    scalar = pysodium.crypto_core_ristretto255_scalar_random()

    def repeat(op: Callable[[], object]) -> Callable[[], object]:
        return lambda: [op() for _ in range(OPS)]

    cases: list[tuple[str, Callable[[], object], str]] = [
        (BASE, lambda: hmac.digest(hmac_key, b"bsn\x00123456782", "sha256"), ""),
        ("encrypt", lambda: encrypt(point, keys.global_public_key), "subject point given"),
        (
            "encrypt_from_bsn",
            lambda: encrypt(subject_point("bsn", "123456782"), keys.global_public_key),
            "elfproef + hash-to-group + encrypt",
        ),
        (
            "transcrypt_cached",
            lambda: transcryptor.transcrypt(ct, "politie-rotterdam"),
            "from Y, warm factor cache, rerandomised",
        ),
        (
            "transcrypt_domain_to_domain_cached",
            lambda: transcryptor.transcrypt(in_domain, "ggz-delfland", "politie-rotterdam"),
            "warm cache, rerandomised",
        ),
        (
            "transcrypt_uncached",
            lambda: transcryptor.transcrypt(ct, next(fresh_domains)),
            "new domain each time: factors derived, rerandomised",
        ),
        (
            "reshuffle_rekey_only",
            lambda: converter.reshuffle_rekey(ct, "politie-rotterdam", None),
            "transcrypt without the final rerandomisation (not for use)",
        ),
        ("rerandomise", lambda: rerandomise(in_domain), ""),
        ("decrypt", lambda: decrypt(in_domain, domain_key), "key check cached"),
        (
            "prim_scalarmult",
            lambda: pysodium.crypto_scalarmult_ristretto255(scalar, point),
            "libsodium variable-base, incl. decode/encode",
        ),
        (
            "prim_scalarmult_base",
            lambda: pysodium.crypto_scalarmult_ristretto255_base(scalar),
            "libsodium fixed-base",
        ),
        (
            "prim_add",
            lambda: pysodium.crypto_core_ristretto255_add(point, point),
            "libsodium, two decodes + one encode",
        ),
    ]

    results = []
    for name, op, notes in cases:
        rate = median_rate(repeat(op), OPS, REPEATS)
        result = Result(
            AREA, name, rate, "ops/s", baseline="" if name == BASE else BASE, notes=notes
        )
        result.extra["ops_per_cpu_second"] = cpu_rate(repeat(op), OPS)
        results.append(result)
    return results + chain.run()
