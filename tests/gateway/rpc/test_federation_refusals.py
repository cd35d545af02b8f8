"""FederationService refusals over real mTLS: a peer's malformed request is INVALID_ARGUMENT
with a short message, and every refused call that carried a subject is in that person's record.

RR (on SQLite, then PostgreSQL) is asked; HL's node certificate asks, about
a case of its own, with the subject transcrypted to RR's domain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from schakel.v1 import audit_pb2, common_pb2, federation_pb2, federation_pb2_grpc

from gateway.audit import query
from tests.support.flow import Flow, running_flow
from tests.support.pki import HL, RR

BSN = "123456782"
ACTIVITY = "zvh.complexe-casuistiek"
ANTECEDENTEN = "justitie.antecedenten"
BIG = "x" * 100_000
"""A 100 kB string field."""
CASE = common_pb2.CaseRef(node_id=HL, case_id="a" * 32)
METHODS = ("HitNoHit", "RequestFacts", "AskParticipant", "DeliverFacts", "TransferCase")


def sections(node_id: str) -> str:
    """RR's partners; HL needs none, it only asks."""
    if node_id != RR:
        return ""
    return "".join(
        f'\n[[partners]]\nid = "{org}"\norg_type = "{kind}"\n'
        for org, kind in (("politie-rr", "politie"), ("gemeente-rr", "gemeente"))
    )


@pytest.fixture
async def flow(tmp_path: Path, db_url: str) -> AsyncIterator[Flow]:
    """RR (on ``db_url``) with two partners, and HL."""
    async with running_flow(tmp_path, db_url, sections) as started:
        yield started


def subject(flow: Flow) -> common_pb2.EncryptedPseudonym:
    """The subject as HL sends it to RR: transcrypted to RR's domain."""
    return flow.subject_at(RR, BSN)


def pseudonym(flow: Flow) -> str:
    """The subject's node-domain pseudonym at RR, as RR's inzage looks it up."""
    return flow.pseudonym_at(RR, BSN)


def participant(org_id: str, org_type: str, node_id: str) -> common_pb2.Participant:
    return common_pb2.Participant(org_id=org_id, org_type=org_type, node_id=node_id)


def request(flow: Flow, method: str) -> Any:
    """A well-formed request of ``method``."""
    common: dict[str, Any] = {
        "purpose": common_pb2.Purpose(processing_activity_id=ACTIVITY),
        "case_ref": CASE,
        "subject": subject(flow),
    }
    if method == "HitNoHit":
        return federation_pb2.FederatedHitRequest(**common, phase=common_pb2.PHASE_AANMELDING)
    if method == "RequestFacts":
        return federation_pb2.FederatedFactsRequest(
            **common,
            phase=common_pb2.PHASE_CASUSOVERLEG,
            categories=[ANTECEDENTEN],
            recipient_org_type="gemeente",
        )
    if method == "AskParticipant":
        return federation_pb2.AskParticipantRequest(
            **common,
            provider=participant("politie-rr", "politie", RR),
            categories=[ANTECEDENTEN],
            recipient_org_types=["gemeente"],
            grounds=[federation_pb2.FederatedGround(category=ANTECEDENTEN, kind="consent")],
            deadline_ms=100,
        )
    if method == "DeliverFacts":
        return federation_pb2.DeliverFactsRequest(
            **common,
            phase=common_pb2.PHASE_CASUSOVERLEG,
            recipient=participant("gemeente-rr", "gemeente", RR),
            provider=participant("politie-hl", "politie", HL),
            facts=[common_pb2.Fact(category=ANTECEDENTEN)],
            grounds=[federation_pb2.FederatedGround(category=ANTECEDENTEN, kind="consent")],
        )
    assert method == "TransferCase"
    return federation_pb2.TransferCaseRequest(
        **common,
        theme="complexe-casuistiek",
        phase=common_pb2.PHASE_TRIAGE,
        bottlenecks=["huisvesting"],
        idempotency_key="overdracht-1",
    )


Change = Callable[[Any], None]


def setter(path: str, value: str) -> Change:
    """Set the string at ``path`` (``a.b``, or ``a[0]`` / ``a[0].b`` into a repeated field)."""

    def change(message: Any) -> None:
        *parents, leaf = path.split(".")
        for name in parents:
            message = _step(message, name)
        if leaf.endswith("[0]"):
            getattr(message, leaf[:-3])[0] = value
        else:
            setattr(message, leaf, value)

    return change


def _step(message: Any, name: str) -> Any:
    if name.endswith("[0]"):
        return getattr(message, name[:-3])[0]
    return getattr(message, name)


async def call(flow: Flow, method: str, message: Message) -> grpc.aio.AioRpcError:
    """Send ``message`` to RR as HL; the refusal it must get."""
    async with flow.pair.channel(RR, flow.pair.fed.node(HL, force=True)) as channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await getattr(stub, method)(message, timeout=10)
    return err.value


def refusals_on_record(flow: Flow, method: str) -> list[audit_pb2.AuditRecord]:
    """RR's records of refused ``method`` calls about the subject, found as inzage finds them."""
    where = query.Filter(data_subject_id=pseudonym(flow))
    entries = query.query(flow.pair.nodes[RR].parts.engine, where)
    return [
        e.record
        for e in entries
        if e.record.name == f"schakel.v1.FederationService/{method}"
        and e.record.status == audit_pb2.SPAN_STATUS_ERROR
    ]


async def test_a_peer_call_without_a_purpose_is_invalid_argument_and_on_the_persons_record(
    flow: Flow,
) -> None:
    for method in METHODS:
        message = request(flow, method)
        message.ClearField("purpose")
        err = await call(flow, method, message)
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, (method, err.details())
        assert "purpose.processing_activity_id is required" in (err.details() or ""), method
        (refused,) = refusals_on_record(flow, method)
        assert refused.processing_activity_id == "onbekend"
        assert refused.requester == f"schakel://node/{HL}"


REFUSALS: dict[str, tuple[Change, grpc.StatusCode, str]] = {
    "HitNoHit": (
        setter("case_ref.node_id", RR),
        grpc.StatusCode.INVALID_ARGUMENT,
        "case_ref must name a case of the calling node",
    ),
    "RequestFacts": (
        setter("recipient_org_type", "buurman"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "recipient_org_type must be one of",
    ),
    "AskParticipant": (
        setter("provider.org_id", "woonstad"),
        grpc.StatusCode.NOT_FOUND,
        "'woonstad' is not a partner organisation",
    ),
    "DeliverFacts": (
        setter("recipient.org_type", "politie"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "is of type 'gemeente' here, not 'politie'",
    ),
    "TransferCase": (
        setter("bottlenecks[0]", "geldzorgen"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not in the policy bundle: 'geldzorgen'",
    ),
}


async def test_a_refused_peer_call_with_a_subject_is_on_the_persons_record(flow: Flow) -> None:
    for method, (change, code, words) in REFUSALS.items():
        message = request(flow, method)
        change(message)
        err = await call(flow, method, message)
        assert err.code() is code, (method, err.details())
        assert words in (err.details() or ""), method
        (refused,) = refusals_on_record(flow, method)
        assert refused.purpose == ACTIVITY, method
    registry = flow.pair.nodes[RR].parts.registry
    hit = registry.active_hit(pseudonym(flow), contact_handle="regie@example")
    assert not hit.hit, "no refused transfer opened a case"


BIG_FIELDS: dict[str, list[str]] = {
    "HitNoHit": ["purpose.processing_activity_id", "case_ref.node_id", "case_ref.case_id"],
    "RequestFacts": ["purpose.processing_activity_id", "categories[0]", "recipient_org_type"],
    "AskParticipant": [
        "purpose.processing_activity_id",
        "provider.org_id",
        "provider.node_id",
        "provider.org_type",
        "categories[0]",
        "recipient_org_types[0]",
        "grounds[0].kind",
        "grounds[0].category",
    ],
    "DeliverFacts": [
        "purpose.processing_activity_id",
        "recipient.org_id",
        "recipient.node_id",
        "recipient.org_type",
        "provider.org_id",
        "provider.node_id",
        "provider.org_type",
        "facts[0].category",
        "grounds[0].kind",
        "grounds[0].category",
    ],
    "TransferCase": [
        "purpose.processing_activity_id",
        "theme",
        "bottlenecks[0]",
        "idempotency_key",
    ],
}


@pytest.mark.parametrize("method", METHODS)
async def test_a_100_kb_field_gets_a_short_invalid_argument(flow: Flow, method: str) -> None:
    answers = {}
    for path in BIG_FIELDS[method]:
        message = request(flow, method)
        setter(path, BIG)(message)
        err = await call(flow, method, message)
        details = err.details() or ""
        answers[path] = (err.code(), len(details.encode()) < 1024, "x" * 65 not in details)
    assert answers == {p: (grpc.StatusCode.INVALID_ARGUMENT, True, True) for p in answers}


BSN_SHAPED: list[tuple[str, str]] = [
    ("HitNoHit", "purpose.processing_activity_id"),
    ("RequestFacts", "categories[0]"),
    ("AskParticipant", "categories[0]"),
    ("DeliverFacts", "facts[0].category"),
    ("DeliverFacts", "provider.org_id"),
    ("TransferCase", "bottlenecks[0]"),
]


async def test_a_value_that_looks_like_a_bsn_is_refused_as_input_and_never_repeated(
    flow: Flow,
) -> None:
    """Such a value would fail the audit write (the log refuses BSNs): not UNAVAILABLE."""
    answers = {}
    for method, path in BSN_SHAPED:
        message = request(flow, method)
        # A letter first where an activity id needs one; the nine digits stay a BSN's.
        setter(path, "x" + BSN if path.startswith("purpose") else BSN)(message)
        err = await call(flow, method, message)
        answers[(method, path)] = (err.code(), BSN in (err.details() or ""))
        assert refusals_on_record(flow, method), (method, path)
    assert answers == {k: (grpc.StatusCode.INVALID_ARGUMENT, False) for k in answers}


@pytest.mark.parametrize(
    ("field", "seconds", "nanos"),
    [
        ("period_start", 10**12, 0),
        ("period_start", -(10**12), 0),
        ("period_end", 1_780_000_000, -1),
        ("period_end", 1_780_000_000, 10**9),
    ],
)
async def test_get_signals_with_an_out_of_range_timestamp_is_invalid_argument(
    flow: Flow, field: str, seconds: int, nanos: int
) -> None:
    message = federation_pb2.SignalsRequest(
        purpose=common_pb2.Purpose(processing_activity_id="zvh.signalering")
    )
    message.period_start.seconds = 1_770_000_000
    message.period_end.seconds = 1_780_000_000
    stamp = getattr(message, field)
    stamp.seconds, stamp.nanos = seconds, nanos
    async with flow.pair.channel(RR, flow.pair.fed.collector()) as channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetSignals(message, timeout=10)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field} must be a valid timestamp" in (err.value.details() or "")
