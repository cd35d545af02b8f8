"""The walkthrough of ``make run``: one person's case through both nodes, step by step.

politie-hl refers the person at Haaglanden first; reclassering-rr refers them
at Rotterdam with the SDK; the procesregisseur moves the case into triage (a
decision before that is refused), runs hit/no-hit (politie-rr and the
Haaglanden node know the person), accepts at triage with participants at
both nodes (Haaglanden takes its case link first, and refuses a request
outside it), asks for facts without and then with GGZ consent, and closes the
case. Each simulated partner resolves what it receives to its own records. A
second person then moves, and their case is handed over to Haaglanden.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
from schakel.v1 import case_pb2, case_pb2_grpc, common_pb2, partner_pb2, partner_pb2_grpc

from adapters.sdk import decrypt_subject, encrypt_subject
from gateway.dev import chain
from gateway.dev.checks import peer_outside_link, referral
from gateway.dev.federation import (
    DEMO_BSN,
    HAAGLANDEN,
    PURPOSE,
    ROTTERDAM,
    Check,
    DevFederation,
)
from gateway.dev.partners import Delivery
from policy import vocabulary
from policy.vocabulary import PROCESREGISSEUR, Phase

HL_REFERRAL_KEY = "make-run-haaglanden-1"
ANTECEDENTEN = "justitie.antecedenten"
IN_ZORG = "zorg.in_zorg"
HUISVESTING = "sociaal.huisvesting"
SCHULDEN = "sociaal.inkomen_schulden"
PARTICIPANTS = [
    ("politie-rr", "politie", ROTTERDAM),
    ("ggz-rr", "ggz", ROTTERDAM),
    ("gemeente-rotterdam", "gemeente", ROTTERDAM),
    ("politie-hl", "politie", HAAGLANDEN),
]
"""The case's participants; politie-hl takes part through its own node, Haaglanden."""
OUTCOME = "doelen-bereikt"
"""The outcome code the walkthrough closes its case with."""
MOVER_BSN = "123456782"
"""A second (made-up, elfproef-valid) person, who moves from Rotterdam to Den Haag."""


def _regie(fed: DevFederation) -> grpc.aio.Channel:
    """A channel with the procesregisseur's officer certificate at RR."""
    return fed.channel(ROTTERDAM, f"{ROTTERDAM}-{PROCESREGISSEUR}")


async def _refer_at_haaglanden(fed: DevFederation) -> str:
    request = referral(fed)
    request.idempotency_key = HL_REFERRAL_KEY
    request.external_ref = "POL-HL-2026-0007"
    async with fed.channel(HAAGLANDEN, "politie-hl") as channel:
        made = await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(request, timeout=5)
    await fed.nodes[HAAGLANDEN].parts.tasks.settle()
    state = "opened" if made.created else "still active from an earlier run"
    return f"case {made.case_ref.case_id} at {made.case_ref.node_id} {state}"


async def _sdk_referral(
    fed: DevFederation, org_id: str, bsn: str, *, external_ref: str, key: str
) -> partner_pb2.SubmitReferralResponse:
    """A referral at RR of ``bsn`` by ``org_id`` through the SDK; waits for its round."""
    client = fed.partner_client(org_id)
    async with client:
        made = await client.submit_referral(
            purpose=PURPOSE.processing_activity_id,
            subject=encrypt_subject("bsn", bsn, fed.keys.global_public_key()),
            theme="complexe-casuistiek",
            external_ref=external_ref,
            criteria=["meervoudige-problematiek", "veiligheidsrisico"],
            reason_codes=["escalatie"],
            idempotency_key=key,
        )
    await fed.nodes[ROTTERDAM].parts.tasks.settle()
    return made


async def _refer_by_reclassering(fed: DevFederation) -> str:
    made = await _sdk_referral(
        fed,
        "reclassering-rr",
        DEMO_BSN,
        external_ref=f"RN-{fed.run_id}",
        key=f"make-run-{fed.run_id}",
    )
    if not made.created:
        raise AssertionError("the walkthrough referral did not open a new case")
    fed.case = made.case_ref
    return f"case {made.case_ref.case_id} opened at {made.case_ref.node_id} (aanmelding)"


async def _start_triage(fed: DevFederation) -> str:
    ref = fed.walked_case()
    early = case_pb2.TriageRequest(
        purpose=PURPOSE, case_ref=ref, accept=False, reason_code="buiten-doelgroep"
    )
    async with _regie(fed) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        try:
            await stub.Triage(early, timeout=10)
        except grpc.aio.AioRpcError as err:
            if err.code() is not grpc.StatusCode.FAILED_PRECONDITION:
                raise AssertionError(f"a decision in aanmelding got {err.code().name}") from err
        else:
            raise AssertionError("a triage decision was taken while the case was in aanmelding")
        status = await stub.StartTriage(
            case_pb2.StartTriageRequest(purpose=PURPOSE, case_ref=ref), timeout=10
        )
    if status.phase != common_pb2.PHASE_TRIAGE:
        raise AssertionError(f"phase is {common_pb2.Phase.Name(status.phase)} after StartTriage")
    return "a decision while the case was in aanmelding was refused; the case is now in triage"


async def _hit_no_hit(fed: DevFederation) -> str:
    ref = fed.walked_case()
    async with _regie(fed) as channel:
        result = await case_pb2_grpc.CaseServiceStub(channel).RunHitNoHit(
            case_pb2.RunHitNoHitRequest(purpose=PURPOSE, case_ref=ref, deadline_ms=3000),
            timeout=10,
        )
    local = sorted(h.org_id for h in result.hits if h.org_id)
    peers = sorted(h.node_id for h in result.hits if not h.org_id)
    if "politie-rr" not in local:
        raise AssertionError(f"no hit at politie-rr; local hits {local}")
    if HAAGLANDEN not in peers:
        raise AssertionError(f"no hit at node {HAAGLANDEN}; peer hits {peers}")
    contacts = ", ".join(f"{h.org_id or h.node_id} -> {h.contact_handle}" for h in result.hits)
    return (
        f"hits: {contacts}; no hit: {sorted(result.no_hit)}; "
        f"unanswered: {sorted(result.unanswered)}"
    )


async def _triage(fed: DevFederation) -> str:
    request = case_pb2.TriageRequest(
        purpose=PURPOSE,
        case_ref=fed.walked_case(),
        accept=True,
        reason_code="ontvankelijk",
        participants=[
            common_pb2.Participant(org_id=org, org_type=kind, node_id=node_id)
            for org, kind, node_id in PARTICIPANTS
        ],
    )
    async with _regie(fed) as channel:
        status = await case_pb2_grpc.CaseServiceStub(channel).Triage(request, timeout=10)
    if status.phase != common_pb2.PHASE_CASUSOVERLEG:
        raise AssertionError(f"phase is {common_pb2.Phase.Name(status.phase)} after triage")
    names = ", ".join(p.org_id for p in status.participants)
    link = fed.nodes[HAAGLANDEN].parts.links.get(ROTTERDAM, fed.walked_case().case_id)
    if link is None or not link.is_open:
        raise AssertionError(f"{HAAGLANDEN} holds no open link for the case")
    there = ", ".join(f"{p.org_id} ({p.org_type})" for p in link.participants)
    return (
        f"accepted; phase casusoverleg with participants {names}; {HAAGLANDEN} took its case "
        f"link first: {link.activity} in {link.phase.value}, with {there} taking part there"
    )


async def _uitvraag(fed: DevFederation, categories: Sequence[str]) -> case_pb2.UitvraagResult:
    request = case_pb2.StartUitvraagRequest(
        purpose=PURPOSE, case_ref=fed.walked_case(), categories=categories, deadline_ms=5000
    )
    async with _regie(fed) as channel:
        result: case_pb2.UitvraagResult = await case_pb2_grpc.CaseServiceStub(
            channel
        ).StartUitvraag(request, timeout=15)
    return result


async def _delivered(
    fed: DevFederation, org_id: str, category: str, timeout: float = 5.0, count: int = 1
) -> list[Delivery]:
    """This run's deliveries to ``org_id`` carrying ``category``, waiting for ``count``."""
    found: list[Delivery] = []
    for _ in range(int(timeout / 0.02)):
        found = [
            d
            for d in fed.partners[org_id].adapter.deliveries
            if any(f.category == category for f in d.task.facts)
        ]
        if len(found) >= count:
            break
        await asyncio.sleep(0.02)
    return found


def _received(fed: DevFederation, category: str) -> list[str]:
    return sorted(
        org_id
        for org_id, sim in fed.partners.items()
        if any(f.category == category for d in sim.adapter.deliveries for f in d.task.facts)
    )


async def _uitvraag_without_consent(fed: DevFederation) -> str:
    result = await _uitvraag(fed, [ANTECEDENTEN, IN_ZORG, HUISVESTING, SCHULDEN])
    answered = {p.provider.org_id: p.answered for p in result.providers}
    if not all(answered.get(org) for org in ("politie-rr", "gemeente-rotterdam", "politie-hl")):
        raise AssertionError(
            f"politie-rr, gemeente-rotterdam and politie-hl did not all answer: {answered}"
        )
    undelivered = [r.org_id for p in result.providers for r in p.undelivered]
    if undelivered:
        raise AssertionError(f"facts did not reach {undelivered}")
    if answered.get("ggz-rr"):
        raise AssertionError("ggz-rr was asked for care data without a ground")
    (ggz,) = [p for p in result.providers if p.provider.org_id == "ggz-rr"]
    withheld = {w.category: w.reason for w in ggz.decision.withheld}
    if IN_ZORG not in withheld:
        raise AssertionError(f"ggz-rr's {IN_ZORG} was not withheld: {withheld}")
    if not await _delivered(fed, "ggz-rr", ANTECEDENTEN):
        raise AssertionError("ggz-rr got no police facts")
    if not await _delivered(fed, "ggz-rr", HUISVESTING):
        raise AssertionError("ggz-rr got no housing facts")
    from_hl = await _delivered(fed, "politie-hl", ANTECEDENTEN)
    if not from_hl:
        raise AssertionError("politie-hl (at zvh-haaglanden) got no police facts from politie-rr")
    # One police summary from politie-rr, one from politie-hl through its node.
    if len(await _delivered(fed, "ggz-rr", ANTECEDENTEN, count=2)) < 2:
        raise AssertionError("ggz-rr did not get police facts from both politie-rr and politie-hl")
    if _received(fed, IN_ZORG):
        raise AssertionError(f"care data reached {_received(fed, IN_ZORG)} without consent")
    return (
        f"politie-rr, gemeente-rotterdam and politie-hl (asked through {HAAGLANDEN}) answered; "
        f"politie-hl got politie-rr's summary through {HAAGLANDEN}; ggz-rr's {IN_ZORG} withheld "
        f"({withheld[IN_ZORG]}), so ggz-rr was not even asked; "
        f"{ANTECEDENTEN} reached {_received(fed, ANTECEDENTEN)}, "
        f"{HUISVESTING} reached {_received(fed, HUISVESTING)}, "
        f"{SCHULDEN} reached {_received(fed, SCHULDEN)}"
    )


async def _consent(fed: DevFederation) -> str:
    request = case_pb2.RecordGroundRequest(
        purpose=PURPOSE,
        case_ref=fed.walked_case(),
        kind=case_pb2.GROUND_KIND_CONSENT,
        category=IN_ZORG,
        provider_org_id="ggz-rr",
        evidence_ref=f"TOESTEMMING-{fed.run_id}",
    )
    async with _regie(fed) as channel:
        await case_pb2_grpc.CaseServiceStub(channel).RecordGround(request, timeout=10)
    return f"consent recorded for {IN_ZORG} from ggz-rr"


async def _uitvraag_with_consent(fed: DevFederation) -> str:
    result = await _uitvraag(fed, [IN_ZORG])
    (ggz,) = [p for p in result.providers if p.provider.org_id == "ggz-rr"]
    if not ggz.answered or IN_ZORG not in ggz.decision.released:
        raise AssertionError(f"ggz-rr's {IN_ZORG} was not released after consent")
    deliveries = await _delivered(fed, "gemeente-rotterdam", IN_ZORG)
    if not deliveries:
        raise AssertionError(f"gemeente-rotterdam got no {IN_ZORG}")
    delivery = deliveries[-1]
    gemeente = fed.partners["gemeente-rotterdam"]
    # The recipient's own view of the person: its pseudonym of the demo BSN, made
    # by the node's Pseudonymise and decrypted with its own domain key.
    (own,) = await gemeente.client.pseudonymise(
        [encrypt_subject("bsn", DEMO_BSN, fed.keys.global_public_key())],
        purpose=PURPOSE.processing_activity_id,
    )
    mine = decrypt_subject(own, gemeente.keys.secret_key)
    if delivery.pseudonym != mine:
        raise AssertionError("the delivered subject is not the recipient's own pseudonym")
    if not delivery.local_keys or gemeente.adapter.index.lookup(mine) != delivery.local_keys:
        raise AssertionError("the recipient's index does not resolve the delivered subject")
    (fact,) = [f for f in delivery.task.facts if f.category == IN_ZORG]
    sinds = fact.fields["sinds"].date
    if sinds.month or sinds.day:
        raise AssertionError("the care start date was not coarsened to the year")
    return (
        f"released to {_received(fed, IN_ZORG)} under {list(delivery.task.decision.rule_ids)}, "
        f"fields {sorted(fact.fields)} with sinds coarsened to {sinds.year}; "
        f"gemeente-rotterdam got it as its own pseudonym "
        f"{mine[:16]}..., which its index resolves to its record(s) {list(delivery.local_keys)}"
    )


async def _close(fed: DevFederation) -> str:
    request = case_pb2.CloseCaseRequest(
        purpose=PURPOSE, case_ref=fed.walked_case(), outcome=OUTCOME
    )
    async with _regie(fed) as channel:
        status = await case_pb2_grpc.CaseServiceStub(channel).CloseCase(request, timeout=10)
    if status.phase != common_pb2.PHASE_AFSCHALING or status.outcome != OUTCOME:
        raise AssertionError(
            f"phase {common_pb2.Phase.Name(status.phase)}, outcome {status.outcome}"
        )
    told = [org for org, _, _ in PARTICIPANTS if await _delivered(fed, org, vocabulary.OUTCOME)]
    if len(told) != len(PARTICIPANTS):
        raise AssertionError(f"only {told} were told the outcome")
    return f"afschaling with outcome {OUTCOME}; {', '.join(told)} got only the outcome code"


async def _hand_over(fed: DevFederation) -> str:
    made = await _sdk_referral(
        fed,
        "politie-rr",
        MOVER_BSN,
        external_ref=f"POL-RR-{fed.run_id}",
        key=f"make-run-mover-{fed.run_id}",
    )
    request = case_pb2.HandOverCaseRequest(
        purpose=PURPOSE,
        case_ref=made.case_ref,
        target_node_id=HAAGLANDEN,
        idempotency_key="verhuizing-1",
        reason_code="betrokkene-verhuisd",
    )
    async with _regie(fed) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        first = await stub.HandOverCase(request, timeout=10)
        retry = await stub.HandOverCase(request, timeout=10)
    if not first.created or retry.created or retry.remote_case_ref != first.remote_case_ref:
        raise AssertionError("the retried hand-over did not return the first remote case")
    if first.status.phase != common_pb2.PHASE_AFSCHALING:
        raise AssertionError("the handed-over case is still open at zvh-rotterdam-rijnmond")
    remote = fed.nodes[HAAGLANDEN].parts.registry.get(first.remote_case_ref.case_id)
    if remote.phase is not Phase.AANMELDING:
        raise AssertionError(f"the case at {HAAGLANDEN} is in {remote.phase.value}")
    return (
        f"case {made.case_ref.case_id} handed over to {HAAGLANDEN} as case "
        f"{first.remote_case_ref.case_id} (aanmelding, for its own triage); closed here as "
        f"{first.status.outcome}; the retry returned the same case"
    )


STEPS: list[Check] = [
    ("walkthrough: politie-hl refers the person at zvh-haaglanden first", _refer_at_haaglanden),
    ("walkthrough: reclassering-rr refers the person with the SDK", _refer_by_reclassering),
    ("walkthrough: the procesregisseur moves the case into triage", _start_triage),
    ("walkthrough: the procesregisseur runs hit/no-hit", _hit_no_hit),
    (
        "walkthrough: tc-landelijk refuses a pair its own policy does not allow",
        chain.refused_by_one,
    ),
    ("walkthrough: the procesregisseur accepts at triage", _triage),
    (
        "walkthrough: zvh-rotterdam-rijnmond asks zvh-haaglanden outside the case link",
        peer_outside_link,
    ),
    ("walkthrough: uitvraag without consent", _uitvraag_without_consent),
    ("walkthrough: the procesregisseur records GGZ consent", _consent),
    ("walkthrough: uitvraag with consent", _uitvraag_with_consent),
    ("walkthrough: the procesregisseur closes the case", _close),
    ("overdracht: a second person moves; the case goes to zvh-haaglanden", _hand_over),
]
"""One case from aanmelding to afschaling, then an overdracht, in order."""
