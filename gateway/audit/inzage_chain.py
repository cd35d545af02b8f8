"""The officer's inzage through the node's transcryptor chain: a BSN to the node pseudonym.

Outside the node process, with the node's config: the BSN is encrypted under
Y, converted to the node's domain by every transcryptor (each logs the call
under the inzage activity), and decrypted with the node's domain key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.audit.inzage import INZAGE_ACTIVITY, encrypt_bsn
from gateway.chain import Link, TranscryptorChain
from gateway.config import load_config
from gateway.tls import channel_credentials
from policy.pseudonyms import DomainKey, decrypt, pseudonym_hex


def chain_pseudonym(config_path: Path, bsn: str) -> str:
    """The node-domain pseudonym (hex) of ``bsn``; ValueError when the config has no chain."""
    config = load_config(config_path)
    if config.pseudonyms.domain_key is None:
        raise ValueError(f"{config_path}: no [pseudonyms] domain_key and [[transcryptors]]")
    own = DomainKey.load(config.pseudonyms.domain_key, config.pseudonyms.domain_key_passphrase_file)
    subject = encrypt_bsn(bsn, own.global_public_key)
    tls = config.tls
    credentials = channel_credentials(
        tls.ca_file, tls.cert_file, tls.key_file, tls.key_passphrase_file
    )

    async def convert() -> str:
        chain = TranscryptorChain(
            [Link(t.id, t.address) for t in config.transcryptors], credentials
        )
        try:
            (moved,) = await chain.transcrypt(
                [(subject, own.domain)], from_domain=None, activity=INZAGE_ACTIVITY
            )
        finally:
            await chain.close()
        return pseudonym_hex(decrypt(moved, own.secret_key))

    return asyncio.run(convert())
