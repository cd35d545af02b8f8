"""A running chain of two transcryptors for the tests, each with its own certificate and state."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.dev import chain
from gateway.dev.keys import DevKeys
from gateway.transcryptor.server import TranscryptorServer
from tests.support.pki import Federation
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
