"""A transcryptor over mTLS: its link of the chain, its own policy, rate limit and audit log."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from schakel.v1 import audit_pb2, common_pb2, transcryptor_pb2, transcryptor_pb2_grpc

from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from gateway.dev.chain import allow_list
from gateway.dev.keys import DevKeys
from policy.pseudonyms import Ciphertext, decrypt, encrypt, subject_point
from policy.pseudonyms.hazmat.group import mul
from policy.pseudonyms.shares import DomainFactor, assemble
from tests.support.chain import Running, start_chain
from tests.support.pki import HL, RR, Federation

ACTIVITY = "zvh.complexe-casuistiek"


def batch(
    running: Running, targets: list[str], from_domain: str = ""
) -> transcryptor_pb2.TranscryptRequest:
    y = running.keys.global_public_key()
    point = subject_point("bsn", "111222333")
    return transcryptor_pb2.TranscryptRequest(
        from_domain=from_domain,
        purpose=common_pb2.Purpose(processing_activity_id=ACTIVITY),
        items=[
            transcryptor_pb2.TranscryptItem(subject=encrypt(point, y).to_proto(), to_domain=t)
            for t in targets
        ],
    )


def records(running: Running, index: int) -> list[audit_pb2.AuditRecord]:
    engine = running.chain.servers[index].parts.audit.engine
    with engine.connect() as conn:
        return [decode(data) for _, _, data in iter_leaves(conn) if data is not None]


async def call(running: Running, index: int, cred_of: str, request: object) -> object:
    transcryptor = running.chain.servers[index].parts.id
    cred = running.node(cred_of) if cred_of in (RR, HL) else running.partner(RR, cred_of)
    async with running.channel(transcryptor, cred) as channel:
        stub = transcryptor_pb2_grpc.TranscryptorServiceStub(channel)
        if isinstance(request, transcryptor_pb2.EnrolRequest):
            return await stub.Enrol(request, timeout=5)
        return await stub.Transcrypt(request, timeout=5)


async def test_the_links_in_order_give_the_domains_pseudonym_and_are_audited(
    running: Running,
) -> None:
    request = batch(running, ["politie-rr", HL, "politie-rr"])
    for index in range(2):
        reply = await call(running, index, RR, request)
        assert isinstance(reply, transcryptor_pb2.TranscryptResponse)
        request = transcryptor_pb2.TranscryptRequest(
            from_domain=request.from_domain,
            purpose=request.purpose,
            items=[
                transcryptor_pb2.TranscryptItem(subject=s, to_domain=i.to_domain)
                for s, i in zip(reply.subjects, request.items, strict=True)
            ],
        )
    chain = running.keys.chain()
    point = subject_point("bsn", "111222333")
    for item in request.items:
        key = running.keys.domain(item.to_domain).secret_key
        got = decrypt(Ciphertext.from_proto(item.subject), key)
        assert got == mul(chain.pseudonymisation_factor(item.to_domain), point, "")
    (first,), (second,) = records(running, 0), records(running, 1)
    for record, index in ((first, 0), (second, 1)):
        assert record.status == audit_pb2.SPAN_STATUS_OK
        assert record.requester == f"schakel://node/{RR}"
        assert record.purpose == ACTIVITY
        assert sorted(record.categories_asked) == ["Y>politie-rr:2", f"Y>{HL}:1"]
        assert record.decision.rule_ids == ["nodes-from-y-or-own-domain"]
        assert record.provider == f"schakel://transcryptor/{running.chain.servers[index].parts.id}"
        assert not record.data_subject_id


async def test_a_pair_outside_the_policy_is_refused_whole_and_audited(running: Running) -> None:
    """RR may not have subjects moved out of HL's domain: only from Y or its own."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(running, 1, RR, batch(running, ["politie-rr"], from_domain=HL))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert f"from '{HL}' to 'politie-rr'" in (refused.value.details() or "")
    (record,) = records(running, 1)
    assert record.status == audit_pb2.SPAN_STATUS_ERROR
    assert record.categories_asked == [f"{HL}>politie-rr:1"]


async def test_only_nodes_may_transcrypt(running: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(running, 0, "politie-rr", batch(running, ["politie-rr"]))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "only federation nodes may call this" in (refused.value.details() or "")


async def test_the_rate_of_a_caller_runs_out_and_the_refusal_is_audited(running: Running) -> None:
    """The fixture's bucket holds 300 subjects and refills 10 a second: a bulk conversion
    is stopped at once."""
    ok = await call(running, 0, RR, batch(running, ["politie-rr"] * 250))
    assert isinstance(ok, transcryptor_pb2.TranscryptResponse)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(running, 0, RR, batch(running, ["politie-rr"] * 100))
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "rate limit" in (refused.value.details() or "")
    # Another caller has a bucket of its own.
    assert await call(running, 0, HL, batch(running, ["politie-hl"] * 100))
    refusal = records(running, 0)[1]
    assert refusal.status == audit_pb2.SPAN_STATUS_ERROR
    assert "rate-limit" in refusal.decision.rule_ids


async def test_a_malformed_item_is_named(running: Running) -> None:
    request = batch(running, ["politie-rr", "politie-rr"])
    request.items[1].subject.c = b"\x00" * 31
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(running, 0, RR, request)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "items[1].subject" in (refused.value.details() or "")
    request = batch(running, ["politie-rr"])
    request.items[0].subject.b = bytes(32)  # the identity point
    with pytest.raises(grpc.aio.AioRpcError) as identity:
        await call(running, 0, RR, request)
    assert identity.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "items[0].subject" in (identity.value.details() or "")
    # Each distinct domain is checked once, and still the first item that names a bad one is named.
    spaced = batch(running, ["politie-rr", "politie rr", "politie-rr", "politie rr"])
    with pytest.raises(grpc.aio.AioRpcError) as domain:
        await call(running, 0, RR, spaced)
    assert domain.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "items[1].to_domain" in (domain.value.details() or "")
    empty = transcryptor_pb2.TranscryptRequest(purpose=request.purpose)
    with pytest.raises(grpc.aio.AioRpcError) as none:
        await call(running, 0, RR, empty)
    assert none.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_enrolment_hands_each_domain_its_factors(running: Running) -> None:
    factors = []
    for index in range(2):
        reply = await call(running, index, RR, transcryptor_pb2.EnrolRequest())
        assert isinstance(reply, transcryptor_pb2.EnrolResponse)
        assert reply.domain == RR
        assert reply.global_public_key == running.keys.global_public_key()
        factors.append(
            DomainFactor(reply.transcryptor_id, reply.domain, reply.factor, reply.global_public_key)
        )
    assert assemble(factors) == running.keys.domain(RR)
    partner = await call(running, 0, "politie-rr", transcryptor_pb2.EnrolRequest())
    assert isinstance(partner, transcryptor_pb2.EnrolResponse)
    assert partner.domain == "politie-rr"
    (record, _) = records(running, 0)
    assert record.name.endswith("/Enrol") and record.categories_asked == [f"Y>{RR}:1"]


async def test_each_transcryptor_decides_by_its_own_policy(tmp_path: Path) -> None:
    """tc-landelijk converts only to police domains and enrols no partners; tc-regio does."""
    fed, keys = Federation(tmp_path / "pki"), DevKeys(tmp_path / "keys")
    narrow = allow_list(["politie-*"]).replace(', "schakel://partner/*/*"', "")
    chain = await start_chain(fed, keys, allow={"tc-landelijk": narrow})
    try:
        running = Running(fed, keys, chain)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(running, 1, "politie-rr", transcryptor_pb2.EnrolRequest())
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as narrowed:
            await call(running, 1, RR, batch(running, [HL]))
        assert narrowed.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert await call(running, 0, RR, batch(running, [HL]))
        assert await call(running, 1, RR, batch(running, ["politie-hl"]))
    finally:
        await chain.stop()
