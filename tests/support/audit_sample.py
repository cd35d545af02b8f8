"""Sample records and an independent RFC 6962 root; light enough for writer processes."""

from __future__ import annotations

import hashlib
import secrets

from schakel.v1 import audit_pb2, common_pb2

ORIGIN = "zvh-haaglanden"


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written out recursively and independently of gateway.audit.merkle."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(
        b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])
    ).digest()


def record(
    subject: str | None = None,
    *,
    activity: str = "zvh.complexe-casuistiek",
    peer: str = "schakel://partner/zvh-haaglanden/politie-haaglanden",
    outcome: int = common_pb2.DECISION_OUTCOME_ALLOW,
    start_seconds: int = 1_780_000_000,
) -> audit_pb2.AuditRecord:
    """A valid LDV-shaped record with fresh trace and span ids."""
    r = audit_pb2.AuditRecord(
        trace_id=secrets.token_hex(16),
        span_id=secrets.token_hex(8),
        name="schakel.v1.PartnerService/RequestFacts",
        status=audit_pb2.SPAN_STATUS_OK,
        processing_activity_id=activity,
        data_subject_id=subject if subject is not None else secrets.token_hex(32),
        data_subject_id_type="schakel-pseudonym/v1",
        foreign_operation_processor=peer,
        purpose=activity,
        phase=common_pb2.PHASE_CASUSOVERLEG,
        requester="schakel://partner/zvh-haaglanden/gemeente-den-haag",
        provider=peer,
        categories_asked=["justitie.toezicht", "zorg.in_zorg"],
        case_ref=common_pb2.CaseRef(node_id=ORIGIN, case_id="c-" + secrets.token_hex(6)),
    )
    r.start_time.seconds = start_seconds
    r.end_time.seconds = start_seconds + 1
    r.decision.outcome = outcome  # type: ignore[assignment]
    r.decision.released.append("justitie.toezicht")
    r.decision.withheld.add(category="zorg.in_zorg", reason="art9-no-consent")
    r.decision.bundle_hash = hashlib.sha256(b"bundle").hexdigest()
    r.decision.rule_ids.append("r-toezicht-casusoverleg")
    r.decision.legal_basis.code = "WGS"
    return r
