"""AuditService: the officers' gRPC view of the audit log.

Access (officers of this node only) is enforced by the node's auth
interceptor before any method here runs. Database work runs in worker
threads so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from schakel.v1 import audit_pb2, audit_pb2_grpc

from gateway.audit import inzage, merkle, query, verify
from gateway.audit.checkpoint import Checkpoints
from gateway.audit.store import AuditLog
from gateway.flows.crossing import Crossing, commit
from gateway.rpc.auth import current_identity
from policy.pseudonyms import Ciphertext, PseudonymError

Context = grpc.aio.ServicerContext[Any, Any]

INZAGE_ACTIVITY = "schakel.inzage"
"""The processing activity under which officers' subject reports are logged (AVG art. 15)."""


class AuditService(audit_pb2_grpc.AuditServiceServicer):
    """Serves queries, verification, checkpoints, proofs and inzage reports.

    ``keys`` are the pinned keys VerifyLog checks with (the node's own
    checkpoint key and its witnesses'). ``resolver`` turns a subject
    ciphertext under Y into the node-domain pseudonym; without one,
    SubjectReport answers UNIMPLEMENTED.
    """

    def __init__(
        self,
        log: AuditLog,
        checkpointer: Checkpoints,
        keys: verify.Keys,
        resolver: inzage.SubjectResolver | None = None,
    ) -> None:
        self.log = log
        self.checkpointer = checkpointer
        self.keys = keys
        self.resolver = resolver

    async def QueryRecords(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.AuditQuery, context: Context
    ) -> AsyncIterator[audit_pb2.AuditEntry]:
        """Matching records, oldest first."""
        try:
            where = query.Filter.from_proto(request)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
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
            await context.abort(grpc.StatusCode.NOT_FOUND, "no checkpoint has been signed yet")
        return self.checkpointer.to_proto(latest)

    async def GetInclusionProof(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.GetInclusionProofRequest, context: Context
    ) -> audit_pb2.InclusionProof:
        """The audit path of one leaf against a tree size."""
        try:
            hashes = await asyncio.to_thread(
                self.log.inclusion_proof, request.index, request.tree_size
            )
        except merkle.ProofError as exc:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, str(exc))
        return audit_pb2.InclusionProof(
            index=request.index, tree_size=request.tree_size, hashes=hashes
        )

    async def GetConsistencyProof(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.GetConsistencyProofRequest, context: Context
    ) -> audit_pb2.ConsistencyProof:
        """The consistency proof between two tree sizes."""
        try:
            hashes = await asyncio.to_thread(
                self.log.consistency_proof, request.old_size, request.new_size
            )
        except merkle.ProofError as exc:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, str(exc))
        return audit_pb2.ConsistencyProof(
            old_size=request.old_size, new_size=request.new_size, hashes=hashes
        )

    async def SubjectReport(  # noqa: N802 - gRPC method name
        self, request: audit_pb2.SubjectReportRequest, context: Context
    ) -> audit_pb2.SubjectReportResponse:
        """Every record about the subject, with proofs against the latest cosigned checkpoint."""
        if self.resolver is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "SubjectReport needs the node's pseudonym keys "
                "(pseudonyms.transcryptor_keys, pseudonyms.domain_key), which are not configured",
            )
        resolver = self.resolver
        assert resolver is not None
        try:
            pseudonym = resolver(Ciphertext.from_proto(request.subject))
        except PseudonymError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"subject: {exc}")
        try:
            report = await asyncio.to_thread(inzage.build_report, self.checkpointer, pseudonym)
        except inzage.InzageError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        # Looking a person up is itself processing about that person: the
        # access is logged (after the report, so it does not list itself).
        await commit(
            self.log,
            Crossing(
                name="schakel.v1.AuditService/SubjectReport",
                caller=current_identity(),
                activity=INZAGE_ACTIVITY,
                subject=pseudonym,
            ),
            context,
        )
        return report.response
