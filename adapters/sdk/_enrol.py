"""Online enrolment of a partner's domain: every transcryptor's factor over mTLS, multiplied.

Each transcryptor of the federation's chain hands the caller's domain (the
organisation its certificate names) its factor ``k_{d,i} * y_i``
(``TranscryptorService.Enrol``, authenticated by the partner's own
certificate); the factors multiply into the domain key
``y_d = prod k_{d,i} * y_i``. Nobody but the partner ever holds ``y_d``.
With a :class:`PartnerClient` the key is checked before it is returned: a
fresh encryption under ``Y`` brought into the partner's domain by its node
(``Pseudonymise``) must come out under ``y_d * G``, so a factor that does
not belong to the chain's conversion is refused instead of returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
from schakel.v1 import transcryptor_pb2, transcryptor_pb2_grpc

from adapters.sdk._client import PartnerClient
from adapters.sdk._errors import PartnerRpcError
from adapters.sdk.tracecontext import TraceContext
from certs.identity import transcryptor_dns_name
from policy.pseudonyms import Ciphertext, DomainKey, KeyFileError, encrypt
from policy.pseudonyms.hazmat import group
from policy.pseudonyms.shares import DomainFactor, assemble_enrolment


@dataclass(frozen=True)
class TranscryptorAddress:
    """One transcryptor of the chain, as the federation publishes it."""

    id: str
    """Its id, as in its certificate ``schakel://transcryptor/<id>``; the channel is pinned
    to that certificate."""
    address: str
    """``host:port`` of its gRPC endpoint."""


async def _factor(
    transcryptor: TranscryptorAddress, credentials: grpc.ChannelCredentials, timeout: float
) -> DomainFactor:
    options = [("grpc.ssl_target_name_override", transcryptor_dns_name(transcryptor.id))]
    trace = TraceContext.new()
    async with grpc.aio.secure_channel(transcryptor.address, credentials, options) as channel:
        stub = transcryptor_pb2_grpc.TranscryptorServiceStub(channel)
        try:
            reply = await stub.Enrol(
                transcryptor_pb2.EnrolRequest(), timeout=timeout, metadata=trace.metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise PartnerRpcError(
                "Enrol",
                exc.code(),
                f"transcryptor {transcryptor.id}: {exc.details()}",
                attempts=1,
                trace_id=trace.trace_id,
            ) from None
    return DomainFactor(reply.transcryptor_id, reply.domain, reply.factor, reply.global_public_key)


async def enrol_domain(
    transcryptors: Sequence[TranscryptorAddress],
    *,
    cert_file: Path,
    key_file: Path,
    ca_file: Path,
    domain: str | None = None,
    check_with: PartnerClient | None = None,
    purpose: str = "",
    timeout: float = 10.0,
) -> DomainKey:
    """The partner's domain key, from one factor of every transcryptor of the chain.

    ``transcryptors`` are the whole chain (in its order), ``cert_file`` and
    ``key_file`` the partner's certificate and key, ``ca_file`` the
    federation CA. With ``domain`` the factors must be for that domain.
    With ``check_with`` (a client of the partner's node) and ``purpose`` (a
    processing activity it may pseudonymise for), the key is checked
    against a conversion by the chain before it is returned.

    Save it with ``key.save(path, passphrase_file=...)`` (0600, sealed with
    the passphrase). Raises :class:`PartnerRpcError` when a transcryptor
    refuses or cannot be reached, :class:`KeyFileError` when the factors do
    not make a key of the chain.
    """
    if not transcryptors:
        raise ValueError("enrolment needs every transcryptor of the chain; none were given")
    if check_with is not None and not purpose:
        raise ValueError("checking the key needs the purpose to pseudonymise for")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes(),
        private_key=key_file.read_bytes(),
        certificate_chain=cert_file.read_bytes(),
    )
    factors = [await _factor(t, credentials, timeout) for t in transcryptors]
    key = assemble_enrolment([t.id for t in transcryptors], factors, domain)
    if check_with is not None:
        probe = encrypt(group.mul_base(group.random_scalar(), "probe"), key.global_public_key)
        (moved,) = await check_with.pseudonymise([probe.to_proto()], purpose=purpose)
        if Ciphertext.from_proto(moved).public_key != key.public_key:
            raise KeyFileError(
                "the assembled key does not decrypt what the chain converts to this domain: "
                "the transcryptors' factors belong to another chain or ceremony"
            )
    return key
