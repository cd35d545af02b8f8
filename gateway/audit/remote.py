"""The officer's tools against a running node, over AuditService with the officer's certificate.

They need no database access and no node secret. The verification trusts
only the officer's pinned keys: it checks the node's latest checkpoint
against the log's vkey and the witnesses' vkeys, proves it consistent with
every checkpoint the officer saw before (a rolled-back or forked log fails),
and proves a sample of records included in it. The inzage encrypts the BSN
under the federation key Y in the officer's process; the node converts it
through its transcryptor chain, records the lookup on that person's record,
and answers with proofs the officer checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from schakel.v1 import audit_pb2, audit_pb2_grpc

from certs.ca_store import node_dns_name
from gateway.audit import inzage, merkle, notes
from gateway.audit.verify import Keys
from gateway.tls import channel_credentials
from policy.pseudonyms import Ciphertext


class RemoteError(Exception):
    """The node could not be asked, or refused; the message is one line."""


@dataclass(frozen=True)
class NodeTarget:
    """Where the node listens and how the officer proves who they are."""

    address: str
    """``host:port`` of the node's gRPC port."""
    server_name: str
    """The DNS name the node's certificate must carry."""
    credentials: grpc.ChannelCredentials

    @classmethod
    def from_files(
        cls,
        address: str,
        node_id: str,
        tls: tuple[str, str, str],
        server_name: str | None = None,
        passphrase_file: str | None = None,
    ) -> NodeTarget:
        """From the officer's CA, certificate and key files; the name defaults to the node's."""
        ca, cert, key = (Path(p) for p in tls)
        credentials = channel_credentials(
            ca, cert, key, Path(passphrase_file) if passphrase_file else None
        )
        return cls(address, server_name or node_dns_name(node_id), credentials)

    def channel(self) -> grpc.aio.Channel:
        """An mTLS channel that insists on the node's own certificate name."""
        return grpc.aio.secure_channel(
            self.address,
            self.credentials,
            options=[("grpc.ssl_target_name_override", self.server_name)],
        )


def failed(exc: grpc.aio.AioRpcError, target: NodeTarget) -> RemoteError:
    """A one-line error naming the node, the status and what it said."""
    return RemoteError(f"--node {target.address}: {exc.code().name}: {exc.details() or ''}")


@dataclass
class Verification:
    """What the remote verification found: every check in one line each."""

    checks: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    latest: bytes = b""
    """The node's latest checkpoint note, once its signature verified."""

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.findings


def cosignatures(parsed: notes.Note, keys: Keys) -> int:
    """How many of the pinned witnesses validly cosigned; NoteError on a bad cosignature."""
    witnesses = {(w.name, w.key_id): w for w in keys.witnesses}
    count = 0
    for sig in parsed.signatures:
        witness = witnesses.get((sig.name, sig.key_id))
        if witness is not None:
            notes.verify_cosignature(parsed.text, sig, witness)
            count += 1
    return count


async def verify(
    stub: audit_pb2_grpc.AuditServiceAsyncStub,
    keys: Keys,
    seen: Sequence[bytes] = (),
    sample: int = 20,
) -> Verification:
    """Check the node's log from outside with the pinned keys (see the module docstring).

    ``seen`` are checkpoint notes the officer holds from before (a state file,
    a witness); ``sample`` the number of the oldest records proven included.
    """
    found = Verification()
    latest = await stub.GetCheckpoint(audit_pb2.GetCheckpointRequest())
    try:
        checkpoint, parsed = notes.open_checkpoint(latest.note, keys.log)
        cosigned = cosignatures(parsed, keys)
    except notes.NoteError as exc:
        found.findings.append(f"the node's latest checkpoint does not verify: {exc}")
        return found
    found.latest = latest.note
    found.checks.append(
        f"latest checkpoint: size {checkpoint.size}, root {checkpoint.root.hex()}, "
        f"signed with the pinned log key, {cosigned} of {len(keys.witnesses)} witnesses cosigned"
    )
    if cosigned < keys.quorum:
        found.findings.append(f"the checkpoint has {cosigned} of {keys.quorum} cosignatures")
    for note in seen:
        await _consistent(stub, keys, note, checkpoint, found)
    await _included(stub, checkpoint, sample, found)
    own = await stub.VerifyLog(audit_pb2.VerifyLogRequest())
    line = f"the node's own check of every leaf: {'OK' if own.ok else 'FAILED'}: {own.message}"
    (found.checks if own.ok else found.findings).append(line)
    return found


async def _consistent(
    stub: audit_pb2_grpc.AuditServiceAsyncStub,
    keys: Keys,
    note: bytes,
    latest: notes.Checkpoint,
    found: Verification,
) -> None:
    try:
        old, _ = notes.open_checkpoint(note, keys.log)
    except notes.NoteError as exc:
        found.findings.append(f"a checkpoint seen before does not verify: {exc}")
        return
    if old.size > latest.size:
        found.findings.append(
            f"the node's latest checkpoint (size {latest.size}) is older than one seen before "
            f"(size {old.size}): the log was rolled back or forked"
        )
        return
    hashes: list[bytes] = []
    if 0 < old.size < latest.size:
        proof = await stub.GetConsistencyProof(
            audit_pb2.GetConsistencyProofRequest(old_size=old.size, new_size=latest.size)
        )
        hashes = list(proof.hashes)
    try:
        merkle.verify_consistency(old.size, latest.size, old.root, latest.root, hashes)
    except merkle.ProofError as exc:
        found.findings.append(f"not consistent with the checkpoint of size {old.size}: {exc}")
        return
    found.checks.append(f"consistent with the checkpoint of size {old.size} seen before")


async def _included(
    stub: audit_pb2_grpc.AuditServiceAsyncStub,
    latest: notes.Checkpoint,
    sample: int,
    found: Verification,
) -> None:
    if sample <= 0 or latest.size == 0:
        return
    proven = 0
    async for entry in stub.QueryRecords(audit_pb2.AuditQuery(limit=min(sample, latest.size))):
        if entry.index >= latest.size:
            break
        if not entry.erased and merkle.leaf_hash(entry.leaf_data) != entry.leaf_hash:
            found.findings.append(f"record {entry.index}: its bytes do not match its leaf hash")
            continue
        proof = await stub.GetInclusionProof(
            audit_pb2.GetInclusionProofRequest(index=entry.index, tree_size=latest.size)
        )
        try:
            merkle.verify_inclusion(
                entry.leaf_hash, entry.index, latest.size, list(proof.hashes), latest.root
            )
        except merkle.ProofError as exc:
            found.findings.append(f"record {entry.index}: {exc}")
            continue
        proven += 1
    found.checks.append(f"{proven} records proven included in the checkpoint")


async def federation_key(stub: audit_pb2_grpc.AuditServiceAsyncStub) -> bytes:
    """Y as the node holds it."""
    answer = await stub.GetFederationKey(audit_pb2.GetFederationKeyRequest())
    return answer.global_public_key


async def subject_report(
    stub: audit_pb2_grpc.AuditServiceAsyncStub, subject: Ciphertext, keys: Keys
) -> inzage.SubjectReport:
    """The node's inzage of ``subject`` (under Y), checked against the pinned keys.

    Raises :class:`~gateway.audit.inzage.InzageError` when a proof fails.
    """
    response = await stub.SubjectReport(audit_pb2.SubjectReportRequest(subject=subject.to_proto()))
    inzage.check_report(response, keys)
    return inzage.SubjectReport(response)
