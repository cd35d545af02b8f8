"""A node that has worked through the chain holds no transcryptor secret, in any file."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from schakel.v1 import partner_pb2_grpc

from gateway.config import NodeConfig
from policy.pseudonyms.hazmat import group
from tests.support.pair import Pair
from tests.support.partnerflow import referral
from tests.support.pki import RR


def secrets_of(pair: Pair) -> dict[str, bytes]:
    """PS_i, RS_i and y_i of every transcryptor, and y, which no party holds."""
    chain = pair.keys.chain()
    found: dict[str, bytes] = {}
    y = bytes([1]) + bytes(31)
    for share in chain.shares:
        key_share = share.require_key_share()
        found[f"PS of {share.transcryptor}"] = share.pseudonymisation_secret
        found[f"RS of {share.transcryptor}"] = share.rekey_secret
        found[f"y of {share.transcryptor}"] = key_share
        y = group.scalar_mul(y, key_share)
    found["y"] = y
    return found


def node_files(config: NodeConfig) -> list[Path]:
    """The node's config, every file it names and everything in its state directory."""
    named = [
        config.tls.ca_file,
        config.tls.cert_file,
        config.tls.key_file,
        config.pseudonyms.domain_key,
        config.policy.bundle,
        config.policy.public_key,
        config.audit.signing_key,
        config.audit.witness_key,
    ]
    files = [Path(config.source), *(p for p in named if p is not None)]
    files += [p for p in config.node.state_dir.rglob("*") if p.is_file()]
    return files


def database_bytes(engine: sa.Engine) -> bytes:
    """Every value of every table of the node's database (SQLite or PostgreSQL)."""
    meta = sa.MetaData()
    meta.reflect(engine)
    out = bytearray()
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for value in row:
                    out += value if isinstance(value, bytes) else str(value).encode()
                    out += b"\x00"
    return bytes(out)


async def test_a_nodes_config_and_state_hold_no_transcryptor_secret(pair: Pair) -> None:
    # Work through the chain first, so the database holds what a working node keeps.
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    async with pair.channel(RR, politie) as channel:
        await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(
            referral(pair), timeout=10
        )
    secrets = secrets_of(pair)
    for node_id, node in pair.nodes.items():
        config = node.parts.config
        assert "transcryptor_keys" not in Path(config.source).read_text()
        places = {str(path): path.read_bytes() for path in node_files(config)}
        places[config.database_url] = database_bytes(node.parts.engine)
        assert places[config.database_url], "the node's database holds its work"
        for place, data in places.items():
            for what, secret in secrets.items():
                for form in (secret, secret.hex().encode(), secret.hex().upper().encode()):
                    assert form not in data, f"{what} is in {place} of {node_id}"


def test_the_scan_finds_a_secret_where_there_is_one(pair: Pair) -> None:
    """The scan can fail: the transcryptors' own state holds their shares."""
    secrets = secrets_of(pair)
    share_file = pair.keys.transcryptor_dir("tc-regio") / "share.json"
    data = share_file.read_bytes()
    assert secrets["PS of tc-regio"].hex().encode() in data
    assert secrets["y"].hex().encode() not in data
