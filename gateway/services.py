"""The node's servicers until the issues that implement them land.

Each RPC answers UNIMPLEMENTED with a message naming what is missing and
which issue delivers it. Later issues replace a servicer by passing their
own in :class:`gateway.server.Servicers`.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from schakel.v1 import audit_pb2_grpc, case_pb2_grpc, federation_pb2_grpc, partner_pb2_grpc

PSEUDONYMS = "#3 (polymorphic pseudonyms)"
POLICY = "#4 (policy)"
AUDIT = "#5 (audit log)"
CASE_FLOW = "#6 (case flow)"
SIGNALS = "#7 (signalen)"


def _unimplemented(what: str, issue: str) -> Any:
    """A servicer method refusing with UNIMPLEMENTED.

    Typed Any because one handler stands in for methods whose generated
    signatures all differ.
    """

    async def handler(
        _self: Any, _request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> NoReturn:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"{what} is not implemented yet; issue {issue}"
        )
        raise AssertionError("abort returned")  # abort always raises

    return handler


class UnimplementedPartnerService(partner_pb2_grpc.PartnerServiceServicer):
    """PartnerService before #3 and #6."""

    SubmitReferral = _unimplemented("referral intake (aanmelding)", CASE_FLOW)
    GetCaseStatus = _unimplemented("case status", CASE_FLOW)
    ReceiveTasks = _unimplemented("the partner task stream", CASE_FLOW)
    AnswerHit = _unimplemented("hit/no-hit answers", CASE_FLOW)
    AnswerFacts = _unimplemented("uitvraag answers", CASE_FLOW)
    Pseudonymise = _unimplemented("transcryption to the partner's domain", PSEUDONYMS)


class UnimplementedCaseService(case_pb2_grpc.CaseServiceServicer):
    """CaseService before #6 and #7."""

    Triage = _unimplemented("triage", CASE_FLOW)
    AddParticipant = _unimplemented("naming participants", CASE_FLOW)
    RecordGround = _unimplemented("recording a legal ground", CASE_FLOW)
    RunHitNoHit = _unimplemented("the hit/no-hit round", CASE_FLOW)
    StartUitvraag = _unimplemented("uitvraag", CASE_FLOW)
    SetBottlenecks = _unimplemented("bottleneck tags", SIGNALS)
    CloseCase = _unimplemented("afschaling", CASE_FLOW)


class UnimplementedFederationService(federation_pb2_grpc.FederationServiceServicer):
    """FederationService before #5, #6 and #7."""

    HitNoHit = _unimplemented("federated hit/no-hit", CASE_FLOW)
    RequestFacts = _unimplemented("federated uitvraag", CASE_FLOW)
    TransferCase = _unimplemented("case transfer (overdracht)", CASE_FLOW)
    GetSignals = _unimplemented("aggregate signals", SIGNALS)
    AddCheckpoint = _unimplemented("checkpoint cosigning", AUDIT)


class UnimplementedAuditService(audit_pb2_grpc.AuditServiceServicer):
    """AuditService before #5."""

    QueryRecords = _unimplemented("audit queries", AUDIT)
    VerifyLog = _unimplemented("log verification", AUDIT)
    SubjectReport = _unimplemented("subject reports", AUDIT)
    GetCheckpoint = _unimplemented("checkpoints", AUDIT)
    GetInclusionProof = _unimplemented("inclusion proofs", AUDIT)
    GetConsistencyProof = _unimplemented("consistency proofs", AUDIT)
