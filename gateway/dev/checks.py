"""The checks of ``make run`` around the walkthrough: the nodes serve, refuse, and prove.

:data:`SERVING` shows over mTLS that both nodes answer health checks, that a
partner is refused by another ZVH's node and from a case it is not in, that a
retried referral returns the first case and that pseudonyms are stable;
:func:`peer_outside_link` (a walkthrough step) shows a peer node refused
outside its case link;
:data:`AUDIT` shows that the peer witnesses the log, that the FG verifies it
and gets an inzage report proven against a cosigned checkpoint.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schakel.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    federation_pb2,
    federation_pb2_grpc,
    partner_pb2,
    partner_pb2_grpc,
)

from adapters.sdk import decrypt_subject, encrypt_subject
from gateway.audit import merkle
from gateway.dev.federation import (
    DEMO_BSN,
    HAAGLANDEN,
    PURPOSE,
    ROTTERDAM,
    Check,
    DevFederation,
)


async def _health(fed: DevFederation, node_id: str, who: str) -> str:
    async with fed.channel(node_id, who) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    status = str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise AssertionError(f"health is {status}")
    return status


async def _refused(call: Awaitable[object], code: grpc.StatusCode) -> str:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        if err.code() is not code:
            raise AssertionError(
                f"expected {code.name}, got {err.code().name}: {err.details()}"
            ) from err
        return f"{code.name}: {err.details()}"
    raise AssertionError(f"expected {code.name}, but the call succeeded")


async def _partner_elsewhere(fed: DevFederation) -> str:
    async with fed.channel(HAAGLANDEN, "politie-rr") as channel:
        call = partner_pb2_grpc.PartnerServiceStub(channel).GetCaseStatus(
            partner_pb2.GetCaseStatusRequest(), timeout=5
        )
        return await _refused(call, grpc.StatusCode.PERMISSION_DENIED)


async def _collector_signals(fed: DevFederation) -> str:
    now = dt.datetime.now(dt.UTC)
    request = federation_pb2.SignalsRequest(
        purpose=common_pb2.Purpose(processing_activity_id="zvh.signalering")
    )
    request.period_start.FromDatetime(now - dt.timedelta(days=30))
    request.period_end.FromDatetime(now + dt.timedelta(days=1))
    async with fed.channel(ROTTERDAM, "collector-stuurgroep") as channel:
        reply = await federation_pb2_grpc.FederationServiceStub(channel).GetSignals(
            request, timeout=5
        )
    hidden = sum(1 for cell in reply.cells if cell.suppressed)
    return f"{len(reply.cells)} cells from {reply.node_id}, {hidden} suppressed below k={reply.k}"


def referral(fed: DevFederation) -> partner_pb2.SubmitReferralRequest:
    """politie-rr's referral of the demo person (the same idempotency key on every run)."""
    return partner_pb2.SubmitReferralRequest(
        idempotency_key="make-run-demo-1",
        purpose=PURPOSE,
        subject=encrypt_subject("bsn", DEMO_BSN, fed.keys.global_public_key()),
        theme="complexe-casuistiek",
        criteria=["meervoudige-problematiek", "veiligheidsrisico"],
        reason_codes=["escalatie"],
        external_ref="POL-RR-2026-0042",
    )


async def _refer(fed: DevFederation) -> str:
    async with fed.channel(ROTTERDAM, "politie-rr") as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        first = await stub.SubmitReferral(referral(fed), timeout=5)
        retry = await stub.SubmitReferral(referral(fed), timeout=5)
    if retry.case_ref != first.case_ref or retry.created:
        raise AssertionError("a retried referral did not return the first case")
    state = "opened" if first.created else "was already open from an earlier run"
    return f"case {first.case_ref.case_id} {state}; the retry returned the same case"


async def _pseudonymise(fed: DevFederation) -> str:
    key = fed.keys.domain("politie-rr").secret_key
    subject = encrypt_subject("bsn", DEMO_BSN, fed.keys.global_public_key())
    async with fed.channel(ROTTERDAM, "politie-rr") as channel:
        reply = await partner_pb2_grpc.PartnerServiceStub(channel).Pseudonymise(
            partner_pb2.PseudonymiseRequest(purpose=PURPOSE, subjects=[subject, subject]),
            timeout=5,
        )
    seen = {decrypt_subject(s, key) for s in reply.subjects}
    if len(seen) != 1 or reply.subjects[0] == reply.subjects[1]:
        raise AssertionError("pseudonyms were not stable, or ciphertexts not rerandomised")
    return f"politie-rr's own pseudonym {seen.pop()[:16]}... (stable; ciphertexts differ)"


async def _outsider(fed: DevFederation) -> str:
    async with fed.channel(ROTTERDAM, "politie-rr") as channel:
        made = await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(
            referral(fed), timeout=5
        )
    async with fed.channel(ROTTERDAM, "ggz-rr") as channel:
        call = partner_pb2_grpc.PartnerServiceStub(channel).GetCaseStatus(
            partner_pb2.GetCaseStatusRequest(purpose=PURPOSE, case_ref=made.case_ref),
            timeout=5,
        )
        return await _refused(call, grpc.StatusCode.NOT_FOUND)


async def peer_outside_link(fed: DevFederation) -> str:
    """Rotterdam's node asks Haaglanden about the walked case under another purpose.

    Haaglanden holds Rotterdam's link for the case (activity, phase and
    participants), so it refuses the claim and audits the refusal with the
    person's pseudonym.
    """
    subjects = fed.nodes[ROTTERDAM].parts.subjects
    assert subjects is not None
    sent = encrypt_subject("bsn", DEMO_BSN, fed.keys.global_public_key())
    request = federation_pb2.AskParticipantRequest(
        purpose=common_pb2.Purpose(processing_activity_id="zvh.huiselijk-geweld"),
        case_ref=fed.walked_case(),
        subject=(
            await subjects.for_domain([subjects.parse(sent)], HAAGLANDEN, "zvh.huiselijk-geweld")
        )[0],
        provider=common_pb2.Participant(
            org_id="politie-hl", org_type="politie", node_id=HAAGLANDEN
        ),
        categories=["justitie.antecedenten"],
        recipient_org_types=["zvh"],
    )
    async with fed.channel(HAAGLANDEN, ROTTERDAM) as channel:
        call = federation_pb2_grpc.FederationServiceStub(channel).AskParticipant(request, timeout=5)
        return await _refused(call, grpc.StatusCode.PERMISSION_DENIED)


async def _witnessed(fed: DevFederation) -> str:
    parts = fed.nodes[ROTTERDAM].parts
    # Wait for a cosigned checkpoint over everything so far, so the inzage report
    # below proves the walkthrough's own records.
    target = (await asyncio.to_thread(parts.audit.head)).size
    for _ in range(150):
        final = await asyncio.to_thread(parts.checkpointer.latest_final)
        if final is not None and final.size >= target:
            return f"checkpoint of size {final.size} cosigned by {HAAGLANDEN}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"no checkpoint of size {target} or more was cosigned within 15 s")


async def _verify(fed: DevFederation) -> str:
    async with fed.channel(ROTTERDAM, f"{ROTTERDAM}-fg") as channel:
        reply = await audit_pb2_grpc.AuditServiceStub(channel).VerifyLog(
            audit_pb2.VerifyLogRequest(), timeout=30
        )
    if not reply.ok:
        raise AssertionError(reply.message)
    return reply.message


async def _inzage(fed: DevFederation) -> str:
    subject = encrypt_subject("bsn", DEMO_BSN, fed.keys.global_public_key())
    async with fed.channel(ROTTERDAM, f"{ROTTERDAM}-fg") as channel:
        report = await audit_pb2_grpc.AuditServiceStub(channel).SubjectReport(
            audit_pb2.SubjectReportRequest(subject=subject), timeout=30
        )
    if not report.entries:
        raise AssertionError("the report holds no record about the person")
    for proven in report.entries:
        merkle.verify_inclusion(
            merkle.leaf_hash(proven.entry.leaf_data),
            proven.entry.index,
            report.checkpoint.size,
            list(proven.proof.hashes),
            report.checkpoint.root,
        )
    return (
        f"{len(report.entries)} records about the person, each proven against the "
        f"cosigned checkpoint of size {report.checkpoint.size}"
    )


SERVING: list[Check] = [
    (
        "politie-rr asks zvh-rotterdam-rijnmond for its health",
        lambda fed: _health(fed, ROTTERDAM, "politie-rr"),
    ),
    (
        "politie-hl asks zvh-haaglanden for its health",
        lambda fed: _health(fed, HAAGLANDEN, "politie-hl"),
    ),
    (
        "node zvh-rotterdam-rijnmond asks node zvh-haaglanden (node to node)",
        lambda fed: _health(fed, HAAGLANDEN, ROTTERDAM),
    ),
    (
        "node zvh-haaglanden asks node zvh-rotterdam-rijnmond (node to node)",
        lambda fed: _health(fed, ROTTERDAM, HAAGLANDEN),
    ),
    ("politie-rr is refused by zvh-haaglanden's partner service", _partner_elsewhere),
    ("politie-rr refers a person to zvh-rotterdam-rijnmond, then retries", _refer),
    ("politie-rr pseudonymises the same BSN twice", _pseudonymise),
    ("ggz-rr, not in the case, asks for its status", _outsider),
    ("the national collector gets suppressed aggregates", _collector_signals),
]
"""The nodes serve, and refuse what they should: run before the walkthrough."""

AUDIT: list[Check] = [
    ("zvh-haaglanden witnesses zvh-rotterdam-rijnmond's audit log", _witnessed),
    ("the FG verifies zvh-rotterdam-rijnmond's audit log", _verify),
    ("the FG makes an inzage report for the referred person", _inzage),
]
"""The audit log's proofs over everything before: run last."""
