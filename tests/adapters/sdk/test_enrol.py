"""``adapters.sdk.enrol_domain``: a partner's key from real transcryptors over mTLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from adapters.sdk import (
    DomainKey,
    KeyFileError,
    PartnerClient,
    PartnerRpcError,
    RetryPolicy,
    TranscryptorAddress,
    enrol_domain,
)
from certs.ca_store import node_dns_name
from gateway.dev.chain import allow_list
from gateway.dev.keys import DevKeys
from tests.support.chain import start_chain
from tests.support.pair import Pair, start_pair, stop_pair
from tests.support.pki import RR, Federation

POLITIE = "politie-rr"
PURPOSE = "zvh.complexe-casuistiek"


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    started = await start_pair(tmp_path, f"sqlite:///{tmp_path / 'rr.db'}")
    try:
        yield started
    finally:
        await stop_pair(started)


def addresses(endpoints: list[tuple[str, str]]) -> list[TranscryptorAddress]:
    return [TranscryptorAddress(i, a) for i, a in endpoints]


async def test_a_partner_enrols_online_and_its_key_is_checked_by_the_chain(
    pair: Pair, tmp_path: Path
) -> None:
    assert pair.chain is not None
    cred = pair.fed.partner(RR, POLITIE, "politie")
    files = {"cert_file": cred.cert_file, "key_file": cred.key_file, "ca_file": pair.fed.ca_file}
    client = PartnerClient.from_files(
        pair.nodes[RR].address,
        **files,
        server_name=node_dns_name(RR),
        timeout=10.0,
        retry=RetryPolicy(max_attempts=1),
    )
    async with client:
        key = await enrol_domain(
            addresses(pair.chain.endpoints),
            **files,
            domain=POLITIE,
            check_with=client,
            purpose=PURPOSE,
        )
        assert key == pair.keys.domain(POLITIE)
        passphrase = tmp_path / "pep.pass"
        passphrase.write_text("the partner's own passphrase\n")
        key.save(tmp_path / "politie.json", passphrase_file=passphrase)
        assert DomainKey.load(tmp_path / "politie.json", passphrase) == key

        with pytest.raises(KeyFileError, match=f"enrolled {POLITIE!r}, not 'politie-hl'"):
            await enrol_domain(addresses(pair.chain.endpoints), **files, domain="politie-hl")

        # tc-landelijk answers with a new key share: its factor no longer fits the conversion.
        server = pair.chain.servers[1]
        share = server.parts.share
        server.parts.share = type(share).generate(share.transcryptor)
        with pytest.raises(KeyFileError, match="does not decrypt what the chain converts"):
            await enrol_domain(
                addresses(pair.chain.endpoints), **files, check_with=client, purpose=PURPOSE
            )


async def test_a_transcryptor_that_does_not_admit_the_partner_refuses_it(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "pki")
    keys = DevKeys(tmp_path / "keys")
    nodes_only = allow_list().replace(', "schakel://partner/*/*"', "")
    chain = await start_chain(fed, keys, {"tc-landelijk": nodes_only})
    try:
        cred = fed.partner(RR, POLITIE, "politie")
        with pytest.raises(PartnerRpcError) as refused:
            await enrol_domain(
                addresses(chain.endpoints),
                cert_file=cred.cert_file,
                key_file=cred.key_file,
                ca_file=fed.ca_file,
            )
        assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
        assert refused.value.method == "Enrol"
        assert "transcryptor tc-landelijk" in refused.value.details
        # The first transcryptor admits it alone, which makes no key of the chain: the
        # caller must name the whole chain, and an empty one is refused outright.
        with pytest.raises(ValueError, match="every transcryptor of the chain"):
            await enrol_domain(
                [], cert_file=cred.cert_file, key_file=cred.key_file, ca_file=fed.ca_file
            )
    finally:
        await chain.stop()
