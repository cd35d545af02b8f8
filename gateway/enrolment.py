"""A node's online enrolment: every transcryptor's factor over mTLS, multiplied into its key.

``schakel node enrol --config node.toml`` asks each transcryptor of
``[[transcryptors]]`` for the node's factor ``k_{d,i} * y_i`` (``Enrol``,
authenticated by the node's own certificate), assembles
``y_d = prod k_{d,i} * y_i``, and checks it before writing
``pseudonyms.domain_key``: a fresh encryption under ``Y`` sent through the
chain to the node's domain must come out under ``y_d * G``. So a factor that
does not belong to the chain's conversion (a wrong or missing transcryptor,
another ceremony) is refused instead of written.
"""

from __future__ import annotations

from gateway.chain import Link, TranscryptorChain
from gateway.config import NodeConfig
from gateway.tls import channel_credentials
from policy.pseudonyms import DomainKey, KeyFileError, encrypt
from policy.pseudonyms.hazmat import group
from policy.pseudonyms.shares import DomainFactor, assemble_enrolment

ENROL_ACTIVITY = "schakel.enrolment"
"""The activity the check conversion is made for, as the transcryptors log enrolments."""


async def enrol(config: NodeConfig) -> DomainKey:
    """The node's domain key from its transcryptors; KeyFileError when it does not check out."""
    tls = config.tls
    credentials = channel_credentials(
        tls.ca_file, tls.cert_file, tls.key_file, tls.key_passphrase_file
    )
    chain = TranscryptorChain([Link(t.id, t.address) for t in config.transcryptors], credentials)
    try:
        replies = await chain.enrol()
        key = assemble_enrolment(
            [link.id for link in chain.links],
            [
                DomainFactor(r.transcryptor_id, r.domain, r.factor, r.global_public_key)
                for r in replies
            ],
            config.node.id,
        )
        probe = encrypt(group.mul_base(group.random_scalar(), "probe"), key.global_public_key)
        (moved,) = await chain.transcrypt(
            [(probe, key.domain)], from_domain=None, activity=ENROL_ACTIVITY
        )
    finally:
        await chain.close()
    if moved.public_key != key.public_key:
        raise KeyFileError(
            "the assembled key does not decrypt what the chain converts to this domain: "
            "the transcryptors' factors belong to another chain or ceremony"
        )
    return key
