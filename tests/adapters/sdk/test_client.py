"""The partner SDK against a simulated node over real mTLS on loopback."""

from __future__ import annotations

import time

import grpc
import pytest
from schakel.v1 import common_pb2, partner_pb2

from adapters.sdk import (
    PartnerClient,
    PartnerRpcError,
    RetryPolicy,
    TraceContext,
    decrypt_subject,
    encrypt_subject,
)
from certs.authority import create_root_ca
from gateway.dev.fakedata import fake_bsns
from policy.pseudonyms import DomainKey
from tests.support.partners import Pki, RunningNode, partner_client, pem_cert
from tests.support.simnode import PURPOSE

BSNS = fake_bsns(3)


async def test_pseudonymise_gives_stable_domain_pseudonyms(
    client: PartnerClient, police_keys: DomainKey
) -> None:
    y = police_keys.global_public_key
    first = await client.pseudonymise([encrypt_subject("bsn", b, y) for b in BSNS], purpose=PURPOSE)
    again = await client.pseudonymise(
        [encrypt_subject("bsn", b, y) for b in reversed(BSNS)], purpose=PURPOSE
    )
    hexes = [decrypt_subject(m, police_keys.secret_key) for m in first]
    assert len(set(hexes)) == 3
    assert [decrypt_subject(m, police_keys.secret_key) for m in again] == hexes[::-1]
    # The node rerandomises: equal pseudonyms never travel as equal ciphertexts.
    assert first[0].SerializeToString() != again[2].SerializeToString()


async def test_pseudonymise_splits_large_batches(
    client: PartnerClient, sim: RunningNode, police_keys: DomainKey
) -> None:
    y = police_keys.global_public_key
    subjects = [encrypt_subject("test", f"r{i}", y) for i in range(1201)]
    out = await client.pseudonymise(subjects, purpose=PURPOSE)
    assert len(out) == 1201
    assert sim.node.recorded.calls["Pseudonymise"] == 2
    expected = await client.pseudonymise([encrypt_subject("test", "r1200", y)], purpose=PURPOSE)
    assert decrypt_subject(out[-1], police_keys.secret_key) == decrypt_subject(
        expected[0], police_keys.secret_key
    )


async def test_a_referral_whose_reply_was_lost_is_retried_once_and_not_duplicated(
    client: PartnerClient, sim: RunningNode, police_keys: DomainKey
) -> None:
    sim.node.lose_reply["SubmitReferral"] = 1
    response = await client.submit_referral(
        purpose=PURPOSE,
        subject=encrypt_subject("bsn", BSNS[0], police_keys.global_public_key),
        theme="complexe-casuistiek",
        external_ref="PR-2026-0001",
        criteria=["meervoudig"],
    )
    assert response.created is False
    assert len(sim.node.recorded.referrals) == 1
    assert sim.node.recorded.calls["SubmitReferral"] == 2
    headers = [
        TraceContext.parse(h) for m, h in sim.node.recorded.traceparents if m == "SubmitReferral"
    ]
    assert len({h.trace_id for h in headers}) == 1
    assert len({h.span_id for h in headers}) == 2


async def test_two_logical_referrals_get_two_keys(
    client: PartnerClient, sim: RunningNode, police_keys: DomainKey
) -> None:
    for ref in ("PR-1", "PR-2"):
        response = await client.submit_referral(
            purpose=PURPOSE,
            subject=encrypt_subject("bsn", BSNS[1], police_keys.global_public_key),
            theme="complexe-casuistiek",
            external_ref=ref,
        )
        assert response.created
    assert len(sim.node.recorded.referrals) == 2


async def test_transient_failures_are_retried_with_backoff(
    client: PartnerClient, sim: RunningNode, police_keys: DomainKey
) -> None:
    made = await client.submit_referral(
        purpose=PURPOSE,
        subject=encrypt_subject("bsn", BSNS[2], police_keys.global_public_key),
        theme="nazorg-ex-gedetineerden",
        external_ref="PR-3",
    )
    sim.node.fail_next["GetCaseStatus"].extend(
        [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED]
    )
    status = await client.get_case_status(purpose=PURPOSE, case_ref=made.case_ref)
    assert status.case_ref == made.case_ref
    assert sim.node.recorded.calls["GetCaseStatus"] == 3


async def test_retries_stop_after_max_attempts(pki: Pki, sim: RunningNode) -> None:
    sim.node.fail_next["GetCaseStatus"].extend([grpc.StatusCode.UNAVAILABLE] * 10)
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
    async with partner_client(pki, sim.target, retry=retry) as c:
        with pytest.raises(PartnerRpcError) as err:
            await c.get_case_status(
                purpose=PURPOSE, case_ref=common_pb2.CaseRef(node_id="n", case_id="c")
            )
    assert err.value.code is grpc.StatusCode.UNAVAILABLE
    assert err.value.attempts == 3
    assert "GetCaseStatus: UNAVAILABLE: simulated fault" in str(err.value)


async def test_a_refusal_is_not_retried(client: PartnerClient, sim: RunningNode) -> None:
    with pytest.raises(PartnerRpcError) as err:
        await client.get_case_status(
            purpose=PURPOSE, case_ref=common_pb2.CaseRef(node_id="zvh-rotterdam", case_id="nope")
        )
    assert err.value.code is grpc.StatusCode.NOT_FOUND
    assert err.value.attempts == 1
    assert sim.node.recorded.calls["GetCaseStatus"] == 1


async def test_the_deadline_bounds_all_retries(pki: Pki, sim: RunningNode) -> None:
    sim.node.fail_next["GetCaseStatus"].extend([grpc.StatusCode.UNAVAILABLE] * 1000)
    retry = RetryPolicy(max_attempts=1000, initial_backoff=0.05, max_backoff=0.05)
    async with partner_client(pki, sim.target, retry=retry) as c:
        start = time.monotonic()
        with pytest.raises(PartnerRpcError):
            await c.get_case_status(
                purpose=PURPOSE,
                case_ref=common_pb2.CaseRef(node_id="n", case_id="c"),
                timeout=0.4,
            )
    assert time.monotonic() - start < 1.0


async def test_a_partner_of_another_node_is_refused(pki: Pki, sim: RunningNode) -> None:
    async with partner_client(pki, sim.target, foreign=True) as c:
        with pytest.raises(PartnerRpcError) as err:
            await c.pseudonymise(
                [common_pb2.EncryptedPseudonym(b=b"x", c=b"y", public_key=b"z")], purpose=PURPOSE
            )
    assert err.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert err.value.attempts == 1


async def test_a_client_without_a_federation_certificate_cannot_connect(
    pki: Pki, sim: RunningNode
) -> None:
    _, other_ca = create_root_ca("someone else's CA")
    async with PartnerClient.connect(
        sim.target,
        certificate_chain=pki.partner_cert,
        private_key=pki.partner_key,
        root_certificates=pem_cert(other_ca),
        server_name="localhost",
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.01),
        timeout=2.0,
    ) as c:
        with pytest.raises(PartnerRpcError) as err:
            await c.get_case_status(
                purpose=PURPOSE, case_ref=common_pb2.CaseRef(node_id="n", case_id="c")
            )
    assert err.value.code is grpc.StatusCode.UNAVAILABLE
    assert sim.node.recorded.calls["GetCaseStatus"] == 0


def _task(kind: partner_pb2.TaskKind.ValueType, **fields: object) -> partner_pb2.PartnerTask:
    return partner_pb2.PartnerTask(task_id="t1", kind=kind, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda c: c.answer_hit(_task(partner_pb2.TASK_KIND_HIT_QUERY), known=True),
            "needs a contact handle",
        ),
        (
            lambda c: c.answer_hit(
                _task(partner_pb2.TASK_KIND_HIT_QUERY), known=False, contact_handle="a@b.nl"
            ),
            "must not get a contact handle",
        ),
        (
            lambda c: c.answer_hit(_task(partner_pb2.TASK_KIND_FACT_QUERY), known=False),
            "HIT_QUERY task only",
        ),
        (
            lambda c: c.answer_facts(
                _task(partner_pb2.TASK_KIND_FACT_QUERY, categories=["detentie"]),
                [common_pb2.Fact(category="zorg.in_zorg")],
            ),
            "not asked for: ['zorg.in_zorg']",
        ),
        (
            lambda c: c.submit_referral(
                purpose=PURPOSE,
                subject=common_pb2.EncryptedPseudonym(),
                theme="t",
                external_ref="r",
                idempotency_key="k" * 129,
            ),
            "idempotency_key must be 1-128",
        ),
        (
            lambda c: c.submit_referral(
                purpose="", subject=common_pb2.EncryptedPseudonym(), theme="t", external_ref="r"
            ),
            "purpose",
        ),
        (lambda c: c.acknowledge_task(""), "task_id is required"),
    ],
)
async def test_bad_input_is_refused_before_any_call(
    client: PartnerClient, sim: RunningNode, call: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        await call(client)  # type: ignore[operator]
    assert sum(sim.node.recorded.calls.values()) == 0


async def test_answers_carry_the_task_trace(
    client: PartnerClient, sim: RunningNode, police_keys: DomainKey
) -> None:
    task_id = sim.node.queue_task(
        "politie-rotterdam", partner_pb2.TASK_KIND_HIT_QUERY, id_value=BSNS[0]
    )
    stream = client.receive_tasks()
    task = await anext(stream)
    await stream.aclose()
    assert task.task_id == task_id
    decrypt_subject(task.subject, police_keys.secret_key)
    await client.answer_hit(task, known=True, contact_handle="zvh@politie.example")
    assert sim.node.recorded.hits[task_id].contact_handle == "zvh@politie.example"
    header = next(h for m, h in sim.node.recorded.traceparents if m == "AnswerHit")
    assert TraceContext.parse(header).trace_id == task.trace.trace_id


async def test_acknowledge_task_is_retried_and_continues_the_task_trace(
    client: PartnerClient, sim: RunningNode
) -> None:
    task_id = sim.node.queue_task(
        "politie-rotterdam", partner_pb2.TASK_KIND_FACT_DELIVERY, id_value=BSNS[1]
    )
    stream = client.receive_tasks()
    task = await anext(stream)
    await stream.aclose()
    sim.node.fail_next["AcknowledgeTask"].append(grpc.StatusCode.UNAVAILABLE)
    ack = await client.acknowledge_task(task.task_id, trace=TraceContext.from_proto(task.trace))
    assert ack.task_id == task_id
    assert sim.node.recorded.calls["AcknowledgeTask"] == 2
    assert sim.node.recorded.acks[task_id] == 1
    headers = [
        TraceContext.parse(h) for m, h in sim.node.recorded.traceparents if m == "AcknowledgeTask"
    ]
    assert {h.trace_id for h in headers} == {task.trace.trace_id}
    with pytest.raises(PartnerRpcError) as err:
        await client.acknowledge_task("unknown")
    assert err.value.code is grpc.StatusCode.NOT_FOUND
