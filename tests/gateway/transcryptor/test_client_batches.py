"""The node's chain client splits a large conversion into batches and keeps their order."""

from __future__ import annotations

import itertools

import sqlalchemy as sa

from gateway.audit import tables
from gateway.chain import Link, TranscryptorChain
from gateway.tls import channel_credentials
from policy.pseudonyms import decrypt, encrypt, subject_point
from policy.pseudonyms.hazmat.group import mul
from policy.pseudonyms.identifiers import is_valid_bsn
from tests.support.chain import Running
from tests.support.pki import RR


async def test_batches_go_a_few_at_a_time_and_come_back_in_order(running: Running) -> None:
    node = running.node(RR)
    client = TranscryptorChain(
        [Link(*endpoint) for endpoint in running.chain.endpoints],
        channel_credentials(running.fed.ca_file, node.cert_file, node.key_file),
        batch_size=3,
        in_flight=2,
    )
    y = running.keys.global_public_key()
    bsns = list(
        itertools.islice((f"{n:09d}" for n in itertools.count(1) if is_valid_bsn(f"{n:09d}")), 11)
    )
    targets = ["politie-rr" if n % 2 else RR for n in range(11)]
    sent = [encrypt(subject_point("bsn", bsn), y) for bsn in bsns]
    try:
        got = await client.transcrypt(
            list(zip(sent, targets, strict=True)), from_domain=None, activity="zvh.test"
        )
    finally:
        await client.close()
    chain = running.keys.chain()
    for ct, bsn, target in zip(got, bsns, targets, strict=True):
        expected = mul(chain.pseudonymisation_factor(target), subject_point("bsn", bsn), "")
        assert decrypt(ct, running.keys.domain(target).secret_key) == expected
    # 11 subjects in batches of 3: four calls at each transcryptor, each logged.
    logged = []
    for server in running.chain.servers:
        with server.parts.audit.engine.connect() as conn:
            logged.append(
                conn.execute(sa.select(sa.func.count()).select_from(tables.leaf)).scalar_one()
            )
    assert logged == [4, 4]
