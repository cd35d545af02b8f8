"""AuditService: the officers' gRPC view of the audit log.

Access (officers of this node only) is enforced by the node's auth
interceptor before any method here runs. Database work runs in worker
threads so the event loop keeps serving. A refusal is raised as its
:class:`~gateway.errors.SchakelError` branch and answered by the interceptor.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from schakel.v1 import audit_pb2, audit_pb2_grpc

from gateway.audit import inzage, merkle, query, verify
from gateway.audit.checkpoint import Checkpoints
from gateway.audit.store import AuditLog
from gateway.errors import (
    InvalidInputError,
    NotConfiguredError,
    NotFoundError,
    OutOfRangeError,
)
from gateway.flows.inzage import subject_report
from gateway.rpc.auth import current_identity

Context = grpc.aio.ServicerContext[Any, Any]


class AuditService(audit_pb2_grpc.AuditServiceServicer):
    """Serves queries, verification, checkpoints, proofs and inzage reports.

    ``keys`` are the pinned keys VerifyLog checks with (the node's own
    checkpoint key and its witnesses'). ``resolver`` turns a subject
    ciphertext under Y into the node-domain pseudonym, and
    ``federation_key`` is Y; without them, SubjectReport and
    GetFederationKey answer FAILED_PRECONDITION.
    """

    def __init__(
        self,
        log: AuditLog,
        checkpointer: Checkpoints,
        keys: verify.Keys,
        resolver: inzage.SubjectResolver | None = None,
        federation_key: bytes | None = None,
    ) -> None:
        self.log = log
        self.checkpointer = checkpointer
        self.keys = keys
        self.resolver = resolver
        self.federation_key = federation_key

    async def QueryRecords(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.AuditQuery, context: Context
    ) -> AsyncIterator[audit_pb2.AuditEntry]:
        """Matching records, oldest first."""
        try:
            where = query.Filter.from_proto(request)
        except ValueError as exc:
            # The checks name the field; a timestamp beyond datetime's range lands here too.
            raise InvalidInputError(f"query: {exc}") from None
        for entry in await asyncio.to_thread(query.query, self.log.engine, where):
            yield entry

    async def VerifyLog(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.VerifyLogRequest, context: Context
    ) -> audit_pb2.VerifyLogResponse:
        """Verifies the whole log with the pinned keys."""
        report = await asyncio.to_thread(verify.verify_database, self.log.engine, self.keys)
        return report.to_proto()

    async def GetCheckpoint(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.GetCheckpointRequest, context: Context
    ) -> audit_pb2.SignedCheckpoint:
        """The newest checkpoint with its cosignatures."""
        latest = await asyncio.to_thread(self.checkpointer.latest)
        if latest is None:
            raise NotFoundError("no checkpoint has been signed yet")
        return self.checkpointer.to_proto(latest)

    async def GetInclusionProof(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.GetInclusionProofRequest, context: Context
    ) -> audit_pb2.InclusionProof:
        """The audit path of one leaf against a tree size."""
        hashes = await _proof(self.log.inclusion_proof, request.index, request.tree_size)
        return audit_pb2.InclusionProof(
            index=request.index, tree_size=request.tree_size, hashes=hashes
        )

    async def GetConsistencyProof(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.GetConsistencyProofRequest, context: Context
    ) -> audit_pb2.ConsistencyProof:
        """The consistency proof between two tree sizes."""
        hashes = await _proof(self.log.consistency_proof, request.old_size, request.new_size)
        return audit_pb2.ConsistencyProof(
            old_size=request.old_size, new_size=request.new_size, hashes=hashes
        )

    async def SubjectReport(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.SubjectReportRequest, context: Context
    ) -> audit_pb2.SubjectReportResponse:
        """Every record about the subject, with proofs against the latest cosigned checkpoint."""
        return await subject_report(
            self.log, self.checkpointer, self.resolver, current_identity(), request.subject
        )

    async def GetFederationKey(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.GetFederationKeyRequest, context: Context
    ) -> audit_pb2.FederationKey:
        """Y, which the officer's tool encrypts a BSN under for SubjectReport."""
        if self.federation_key is None:
            raise NotConfiguredError(
                "GetFederationKey needs the node's pseudonym keys (pseudonyms.domain_key), "
                "which are not configured"
            )
        return audit_pb2.FederationKey(global_public_key=self.federation_key)


async def _proof(make: Callable[[int, int], list[bytes]], first: int, second: int) -> list[bytes]:
    """A proof from the log; sizes or an index beyond the tree are OUT_OF_RANGE."""
    try:
        return await asyncio.to_thread(make, first, second)
    except merkle.ProofError as exc:
        raise OutOfRangeError(str(exc)) from None
