"""``schakel node enrol``: the node's key from its transcryptors' factors, checked by the chain."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.cli import main
from policy.pseudonyms import DomainKey
from tests.support.chain import Running
from tests.support.pki import RR


def node_config(running: Running, domain_key: Path) -> Path:
    sections = running.keys.node_sections(RR, transcryptors=running.chain.endpoints)
    sections = sections.replace(
        f'domain_key = "{running.keys.domain_file(RR).resolve()}"', f'domain_key = "{domain_key}"'
    )
    return running.fed.write_config(running.node(RR), extra=sections)


async def test_a_node_enrols_online_and_gets_the_key_the_factors_make(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "rr-domain.json"
    config = node_config(running, target)
    assert await asyncio.to_thread(main, ["node", "enrol", "--config", str(config)]) == 0
    assert target.stat().st_mode & 0o777 == 0o600
    assert DomainKey.load(target) == running.keys.domain(RR)
    assert "domain key of zvh-rotterdam-rijnmond from tc-regio, tc-landelijk" in (
        capsys.readouterr().out
    )
    # An existing key is not replaced without --force.
    assert await asyncio.to_thread(main, ["node", "enrol", "--config", str(config)]) == 1
    assert "already exists" in capsys.readouterr().err


async def test_a_factor_of_another_ceremony_is_refused(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tc-landelijk answers with a new key share; its factor no longer fits the conversion."""
    server = running.chain.servers[1]
    share = server.parts.share
    server.parts.share = type(share).generate(share.transcryptor)
    target = tmp_path / "rr-domain.json"
    config = node_config(running, target)
    assert await asyncio.to_thread(main, ["node", "enrol", "--config", str(config)]) == 1
    assert "does not decrypt what the chain converts" in capsys.readouterr().err
    assert not target.exists()
