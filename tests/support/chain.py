"""A running chain of two transcryptors for the tests, each with its own certificate and state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from certs.identity import transcryptor_dns_name
from gateway.dev import chain
from gateway.dev.keys import DevKeys
from gateway.tls import channel_credentials
from gateway.transcryptor.server import TranscryptorServer
from tests.support.pki import Credential, Federation
from tests.support.ports import free_port


@dataclass
class Chain:
    """The transcryptors, in chain order."""

    servers: list[TranscryptorServer]

    @property
    def endpoints(self) -> list[tuple[str, str]]:
        """(id, address) of every transcryptor, for a node's ``[[transcryptors]]``."""
        return [(s.parts.id, s.address) for s in self.servers]

    async def stop(self) -> None:
        """Stop every transcryptor."""
        await chain.stop_in_process(self.servers)


async def start_chain(
    fed: Federation, keys: DevKeys, allow: dict[str, str] | None = None, **options: int
) -> Chain:
    """Start ``keys``' transcryptors with certificates of ``fed``'s CA.

    ``allow`` replaces a transcryptor's allow-list (by id); ``options`` go to
    :func:`gateway.dev.chain.write_config` (rate, workers).
    """
    configs = []
    for transcryptor in keys.transcryptors:
        cred = fed.transcryptor(transcryptor)
        tls = chain.TlsFiles(fed.ca_file, cred.cert_file, cred.key_file, fed.crl_file)
        configs.append(
            chain.write_config(
                keys,
                transcryptor,
                tls,
                listen=f"127.0.0.1:{free_port()}",
                allow=(allow or {}).get(transcryptor),
                **options,
            )
        )
    return Chain(await chain.start_in_process(configs))


@dataclass
class Running:
    """A CA, the dev keys and their chain, running."""

    fed: Federation
    keys: DevKeys
    chain: Chain
    issued: dict[str, Credential] = field(default_factory=dict)

    def node(self, node_id: str) -> Credential:
        """The node's certificate, issued once."""
        if node_id not in self.issued:
            self.issued[node_id] = self.fed.node(node_id)
        return self.issued[node_id]

    def partner(self, node_id: str, org_id: str) -> Credential:
        """A police partner's certificate, issued once."""
        if org_id not in self.issued:
            self.issued[org_id] = self.fed.partner(node_id, org_id, "politie")
        return self.issued[org_id]

    def channel(self, transcryptor: str, cred: Credential) -> grpc.aio.Channel:
        """An mTLS channel to ``transcryptor`` presenting ``cred``."""
        creds = channel_credentials(self.fed.ca_file, cred.cert_file, cred.key_file)
        address = dict(self.chain.endpoints)[transcryptor]
        return grpc.aio.secure_channel(
            address,
            creds,
            options=[("grpc.ssl_target_name_override", transcryptor_dns_name(transcryptor))],
        )


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """tc-regio and tc-landelijk with the dev allow-list, each with its own state."""
    fed = Federation(tmp_path / "pki")
    keys = DevKeys(tmp_path / "keys")
    chain = await start_chain(fed, keys, subjects_per_second=10, burst=300)
    try:
        yield Running(fed, keys, chain)
    finally:
        await chain.stop()
