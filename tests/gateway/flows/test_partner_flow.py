"""The partner service of a whole node: pseudonyms, referral under policy, audit before release."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import sqlalchemy as sa
from schakel.v1 import audit_pb2, audit_pb2_grpc, common_pb2, partner_pb2, partner_pb2_grpc

from adapters.sdk import decrypt_subject, encrypt_subject
from gateway.audit import merkle
from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from policy import signing
from tests.support.pair import Pair
from tests.support.partnerflow import (
    BSN,
    PURPOSE,
    audit_size,
    call_error,
    expected_pseudonym,
    referral,
)
from tests.support.pki import HL, RR


async def test_pseudonymise_gives_the_partner_its_own_stable_pseudonym(pair: Pair) -> None:
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    domain_key = pair.keys.domain("politie-rr").secret_key
    y = pair.keys.global_public_key()
    before = audit_size(pair)
    async with pair.channel(RR, politie) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        first = await stub.Pseudonymise(
            partner_pb2.PseudonymiseRequest(
                purpose=PURPOSE, subjects=[encrypt_subject("bsn", BSN, y)] * 2
            )
        )
    assert first.subjects[0] != first.subjects[1]  # rerandomised, so unlinkable on the wire
    seen = {decrypt_subject(s, domain_key) for s in first.subjects}
    assert seen == {expected_pseudonym(pair, "politie-rr")}
    assert expected_pseudonym(pair, "politie-rr") != expected_pseudonym(pair, RR)
    assert audit_size(pair) == before + 1


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        (
            {"purpose": common_pb2.Purpose()},
            "INVALID_ARGUMENT",
            "processing_activity_id is required",
        ),
        (
            {"purpose": common_pb2.Purpose(processing_activity_id="zvh.onbekend")},
            "PERMISSION_DENIED",
            "unknown-activity",
        ),
        (
            {"purpose": common_pb2.Purpose(processing_activity_id="zvh.signalering")},
            "PERMISSION_DENIED",
            "unknown-activity",
        ),
        (
            {"subjects": [common_pb2.EncryptedPseudonym(b=b"\x01" * 32, c=b"", public_key=b"")]},
            "INVALID_ARGUMENT",
            "subjects[0]",
        ),
        ({"subjects": []}, "INVALID_ARGUMENT", "between 1 and 1000"),
    ],
)
async def test_pseudonymise_refuses_bad_requests_and_changes_nothing(
    pair: Pair, change: dict[str, object], code: str, message: str
) -> None:
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    y = pair.keys.global_public_key()
    fields: dict[str, object] = {"purpose": PURPOSE, "subjects": [encrypt_subject("bsn", BSN, y)]}
    fields.update(change)
    before = audit_size(pair)
    async with pair.channel(RR, politie) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        error = await call_error(stub.Pseudonymise(partner_pb2.PseudonymiseRequest(**fields)))  # type: ignore[arg-type]
    assert error.code().name == code
    assert message in (error.details() or "")
    assert audit_size(pair) == before


async def test_referral_opens_one_case_indexed_by_the_node_pseudonym(pair: Pair) -> None:
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    parts = pair.nodes[RR].parts
    async with pair.channel(RR, politie) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        first = await stub.SubmitReferral(referral(pair))
        retry = await stub.SubmitReferral(referral(pair))
        conflict = await call_error(stub.SubmitReferral(referral(pair, theme="huiselijk-geweld")))
        status = await stub.GetCaseStatus(
            partner_pb2.GetCaseStatusRequest(purpose=PURPOSE, case_ref=first.case_ref)
        )
    assert first.created and not retry.created
    assert retry.case_ref == first.case_ref
    assert first.case_ref.node_id == RR
    assert len(first.trace.trace_id) == 32
    assert conflict.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "theme" in (conflict.details() or "")
    assert status.phase == common_pb2.PHASE_AANMELDING
    assert status.external_ref == "POL-2026-0001"
    case = parts.registry.get(first.case_ref.case_id)
    assert case.subject == expected_pseudonym(pair, RR)
    assert case.activity == "zvh.complexe-casuistiek"
    with parts.engine.connect() as conn:
        cases = conn.execute(sa.text("select count(*) from cases")).scalar_one()
    assert cases == 1


async def test_every_referral_crossing_is_in_the_audit_log_with_its_decision(pair: Pair) -> None:
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    fg = pair.fed.officer(RR, "fg")
    async with pair.channel(RR, politie) as channel:
        await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(referral(pair))
    async with pair.channel(RR, fg) as channel:
        entries = [
            e
            async for e in audit_pb2_grpc.AuditServiceStub(channel).QueryRecords(
                audit_pb2.AuditQuery(data_subject_id=expected_pseudonym(pair, RR))
            )
        ]
    # The hit/no-hit round the referral starts has its own record.
    (entry,) = [e for e in entries if e.record.name.startswith("schakel.v1.PartnerService/")]
    record = entry.record
    assert record.name == "schakel.v1.PartnerService/SubmitReferral"
    assert record.purpose == "zvh.complexe-casuistiek"
    assert record.processing_activity_id.startswith("urn:nl:zvh:verwerkingsregister:")
    assert record.requester == f"schakel://partner/{RR}/politie-rr"
    assert record.decision.outcome == common_pb2.DECISION_OUTCOME_ALLOW
    assert list(record.decision.released) == ["aanmelding"]
    assert list(record.decision.rule_ids) == ["aanmelding-verwijzing"]
    assert len(record.decision.bundle_hash) == 64
    assert record.case_ref.case_id
    assert BSN.encode() not in entry.leaf_data


async def test_an_unknown_theme_is_refused_and_recorded_as_refused(pair: Pair) -> None:
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    parts = pair.nodes[RR].parts
    before = audit_size(pair)
    async with pair.channel(RR, politie) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        error = await call_error(stub.SubmitReferral(referral(pair, theme="not-a-theme")))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "theme 'not-a-theme' is not one of" in (error.details() or "")
    assert audit_size(pair) == before + 1
    with parts.engine.connect() as conn:
        ((_, _, data),) = list(iter_leaves(conn, start=before))
        assert conn.execute(sa.text("select count(*) from cases")).scalar_one() == 0
    assert data is not None
    refused = decode(data)
    assert refused.status == audit_pb2.SPAN_STATUS_ERROR
    assert refused.data_subject_id == expected_pseudonym(pair, RR)


async def test_a_policy_denial_is_refused_and_audited_after_a_hot_reload(pair: Pair) -> None:
    """A newly signed bundle stops housing corporations referring; the node follows it live."""
    corporatie = pair.fed.partner(RR, "woonstad", "woningcorporatie")
    parts = pair.nodes[RR].parts
    assert parts.policy is not None
    old_hash = parts.policy.bundle_hash
    bundle = pair.keys.bundle
    text = bundle.read_text()
    narrowed = text.replace(
        "phases: [aanmelding]\n    providers: *all_partners",
        "phases: [aanmelding]\n    providers: [politie, ggz]",
    )
    assert narrowed != text
    bundle.write_text(narrowed)
    signing.sign_bundle(bundle, pair.keys.policy_key)
    assert parts.policy.check()
    assert parts.policy.bundle_hash != old_hash
    before = audit_size(pair)
    async with pair.channel(RR, corporatie) as channel:
        error = await call_error(
            partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(referral(pair))
        )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "aanmelding: no-rule" in (error.details() or "")
    assert audit_size(pair) == before + 1
    with parts.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from cases")).scalar_one() == 0
    with parts.engine.connect() as conn:
        ((_, _, data),) = list(iter_leaves(conn, start=before))
    assert data is not None
    denied = decode(data)
    assert denied.status == audit_pb2.SPAN_STATUS_ERROR
    assert denied.decision.outcome == common_pb2.DECISION_OUTCOME_DENY
    assert denied.decision.bundle_hash == parts.policy.bundle_hash
    assert denied.requester == f"schakel://partner/{RR}/woonstad"


async def test_a_partner_sees_only_cases_it_takes_part_in(pair: Pair) -> None:
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    ggz = pair.fed.partner(RR, "ggz-rr", "ggz")
    async with pair.channel(RR, politie) as channel:
        made = await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(referral(pair))
    async with pair.channel(RR, ggz) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        hidden = await call_error(
            stub.GetCaseStatus(
                partner_pb2.GetCaseStatusRequest(purpose=PURPOSE, case_ref=made.case_ref)
            )
        )
        missing = await call_error(
            stub.GetCaseStatus(
                partner_pb2.GetCaseStatusRequest(
                    purpose=PURPOSE, case_ref=common_pb2.CaseRef(node_id=RR, case_id="0" * 32)
                )
            )
        )
    assert hidden.code() is grpc.StatusCode.NOT_FOUND
    assert missing.code() is grpc.StatusCode.NOT_FOUND
    assert (hidden.details() or "").replace(made.case_ref.case_id, "X") == (
        missing.details() or ""
    ).replace("0" * 32, "X")


async def test_no_audit_record_means_no_case_and_no_answer(pair: Pair) -> None:
    """Log before release: with the audit writer gone the referral fails and leaves nothing."""
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    parts = pair.nodes[RR].parts
    parts.audit.close()
    async with pair.channel(RR, politie) as channel:
        error = await call_error(
            partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(referral(pair))
        )
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert "nothing was released" in (error.details() or "")
    with parts.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from cases")).scalar_one() == 0


async def test_checkpoints_are_cosigned_by_the_peer_and_inzage_proves_each_record(
    pair: Pair,
) -> None:
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    fg = pair.fed.officer(RR, "fg")
    y = pair.keys.global_public_key()
    async with pair.channel(RR, politie) as channel:
        await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(referral(pair))
    checkpointer = pair.nodes[RR].parts.checkpointer
    for _ in range(100):
        final = checkpointer.latest_final()
        if final is not None and final.size >= 1:
            break
        await asyncio.sleep(0.1)
    assert final is not None, "no checkpoint was cosigned by the peer within 10 s"
    async with pair.channel(RR, fg) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        verified = await stub.VerifyLog(audit_pb2.VerifyLogRequest())
        report = await stub.SubjectReport(
            audit_pb2.SubjectReportRequest(subject=encrypt_subject("bsn", BSN, y))
        )
    assert verified.ok, verified.message
    assert report.data_subject_id == expected_pseudonym(pair, RR)
    assert report.checkpoint.final and report.checkpoint.cosignatures == 1
    assert report.entries
    for proven in report.entries:
        merkle.verify_inclusion(
            merkle.leaf_hash(proven.entry.leaf_data),
            proven.entry.index,
            report.checkpoint.size,
            list(proven.proof.hashes),
            report.checkpoint.root,
        )
    assert HL in report.checkpoint.note.decode()
    async with pair.channel(RR, fg) as channel:
        names = [
            e.record.name
            async for e in audit_pb2_grpc.AuditServiceStub(channel).QueryRecords(
                audit_pb2.AuditQuery(data_subject_id=report.data_subject_id)
            )
        ]
    # The officer's look-up is itself logged as processing about the person.
    assert names[-1] == "schakel.v1.AuditService/SubjectReport"


async def test_a_stored_node_pseudonym_can_be_sent_on_to_any_domain(pair: Pair) -> None:
    """What the node keeps (its own pseudonym) is enough to reach a recipient's pseudonym."""
    subjects = pair.nodes[RR].parts.subjects
    assert subjects is not None
    stored = expected_pseudonym(pair, RR)
    moved = await subjects.for_domains_from_pseudonym(
        stored, ["politie-hl", HL], PURPOSE.processing_activity_id
    )
    for domain, sent in moved.items():
        got = decrypt_subject(sent, pair.keys.domain(domain).secret_key)
        assert got == expected_pseudonym(pair, domain)


async def test_a_log_that_lost_a_cosignature_catches_up_with_its_witness(pair: Pair) -> None:
    """The witness answers a stale old_size with its own size; the log proves from there."""
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    parts = pair.nodes[RR].parts
    checkpointer = parts.checkpointer

    async def cosigned_at_least(size: int) -> int:
        for _ in range(100):
            final = checkpointer.latest_final()
            if final is not None and final.size >= size:
                return final.size
            await asyncio.sleep(0.1)
        raise AssertionError(f"no checkpoint of size >= {size} was cosigned within 10 s")

    async with pair.channel(RR, politie) as channel:
        await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(referral(pair))
    first = await cosigned_at_least(1)
    # Forget every cosignature, as if the witness's replies had been lost: the
    # log now asks from size 0, while the witness holds `first`.
    with parts.engine.begin() as conn:
        conn.execute(sa.text("delete from audit_cosignature"))
    held = pair.nodes[HL].parts.witness.state(RR)[0]
    assert held == first
    async with pair.channel(RR, politie) as channel:
        await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(
            referral(pair, key="ref-2", external_ref="POL-2026-0002")
        )
    assert await cosigned_at_least(first + 1) > first
