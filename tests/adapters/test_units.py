"""Typed fact fields, W3C trace context and the pseudonym index's own checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import timestamp_pb2
from schakel.v1 import common_pb2, partner_pb2

from adapters.fields import FieldType, FieldValueError, to_fact_value
from adapters.index import PseudonymIndex, PseudonymIndexError
from adapters.sdk import (
    PartnerClient,
    PartnerRpcError,
    RetryPolicy,
    SubjectRow,
    TraceContext,
    TraceContextError,
)
from gateway.dev.fakedata import fake_bsns
from policy.pseudonyms import DomainKey, FederationKeys
from tests.support.partners import POLICE, RunningNode, local_pseudonymiser, pseudonym_of


@pytest.mark.parametrize(
    ("ftype", "raw", "expected"),
    [
        (FieldType.NUMBER, 7, common_pb2.FactValue(number=7)),
        (FieldType.NUMBER, " 12 ", common_pb2.FactValue(number=12)),
        (FieldType.NUMBER, Decimal("3"), common_pb2.FactValue(number=3)),
        (FieldType.NUMBER, 4.0, common_pb2.FactValue(number=4)),
        (FieldType.BOOL, "Ja", common_pb2.FactValue(flag=True)),
        (FieldType.BOOL, 0, common_pb2.FactValue(flag=False)),
        (FieldType.BOOL, "false", common_pb2.FactValue(flag=False)),
        (
            FieldType.DATE,
            dt.date(2025, 3, 9),
            common_pb2.FactValue(date=common_pb2.Date(year=2025, month=3, day=9)),
        ),
        (
            FieldType.DATE,
            dt.datetime(2025, 3, 9, 14, 0),
            common_pb2.FactValue(date=common_pb2.Date(year=2025, month=3, day=9)),
        ),
        (
            FieldType.DATE,
            "2024-06",
            common_pb2.FactValue(date=common_pb2.Date(year=2024, month=6, day=0)),
        ),
        (FieldType.CODE, " dakloos ", common_pb2.FactValue(text="dakloos")),
        (FieldType.CONTACT, "+31 10 123 4567", common_pb2.FactValue(text="+31 10 123 4567")),
        (
            FieldType.CONTACT,
            "zvh@gemeente.example",
            common_pb2.FactValue(text="zvh@gemeente.example"),
        ),
    ],
)
def test_raw_values_become_typed_fact_values(
    ftype: FieldType, raw: object, expected: common_pb2.FactValue
) -> None:
    assert to_fact_value(ftype, raw, "f") == expected


@pytest.mark.parametrize(
    ("ftype", "raw", "message"),
    [
        (FieldType.NUMBER, True, "not a yes/no"),
        (FieldType.NUMBER, 2.5, "whole number"),
        (FieldType.NUMBER, "twaalf", "whole number"),
        (FieldType.BOOL, 2, "yes/no"),
        (FieldType.BOOL, "misschien", "yes/no"),
        (FieldType.DATE, "2025-02-30", "real calendar date"),
        (FieldType.DATE, "9 maart", "YYYY-MM-DD"),
        (FieldType.CODE, "vrije tekst over iemand", "not free text"),
        (FieldType.CODE, 12, "must be text"),
        (FieldType.CONTACT, "Jan de Vries", "e-mail address or a phone number"),
        (FieldType.CODE, "   ", "is empty"),
        (FieldType.NUMBER, None, "is empty"),
    ],
)
def test_a_value_that_does_not_fit_is_refused_without_echoing_it(
    ftype: FieldType, raw: object, message: str
) -> None:
    with pytest.raises(FieldValueError) as err:
        to_fact_value(ftype, raw, "status")
    assert message in str(err.value)
    assert str(err.value).startswith("status")
    if isinstance(raw, str) and raw.strip():
        assert raw not in str(err.value)


def test_a_code_outside_its_value_set_is_refused() -> None:
    with pytest.raises(FieldValueError, match="not in the declared value set"):
        to_fact_value(FieldType.CODE, "ontruimd", "status", {"dakloos"})


def test_traceparent_round_trips_and_children_keep_the_trace() -> None:
    parent = TraceContext.new()
    assert TraceContext.parse(parent.traceparent) == parent
    child = parent.child()
    assert child.trace_id == parent.trace_id
    assert child.span_id != parent.span_id
    assert child.parent_span_id == parent.span_id
    assert TraceContext.parse(f"00-{'a' * 32}-{'b' * 16}-00").sampled is False


@pytest.mark.parametrize(
    "header",
    [
        "",
        f"ff-{'a' * 32}-{'b' * 16}-01",
        f"00-{'a' * 32}-{'b' * 16}-01-extra",
        f"00-{'0' * 32}-{'b' * 16}-01",
        "00-xyz",
    ],
)
def test_a_malformed_traceparent_is_refused(header: str) -> None:
    with pytest.raises(TraceContextError):
        TraceContext.parse(header)


def test_a_future_version_is_read_as_the_node_reads_it() -> None:
    # The spec asks a version-00 reader to parse a higher version's first four
    # fields; the SDK used to refuse what the node accepted.
    trace = TraceContext.parse(f"01-{'a' * 32}-{'b' * 16}-01-more")
    assert (trace.trace_id, trace.span_id) == ("a" * 32, "b" * 16)
    assert trace.traceparent == f"00-{'a' * 32}-{'b' * 16}-01"


async def test_an_answer_after_the_task_deadline_is_not_sent(
    client: PartnerClient, sim: RunningNode
) -> None:
    past = timestamp_pb2.Timestamp()
    past.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    task = partner_pb2.PartnerTask(
        task_id="late", kind=partner_pb2.TASK_KIND_HIT_QUERY, deadline=past
    )
    with pytest.raises(PartnerRpcError) as err:
        await client.answer_hit(task, known=False)
    assert err.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert err.value.attempts == 0
    assert sim.node.recorded.calls["AnswerHit"] == 0


def test_a_bad_retry_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoffs"):
        RetryPolicy(initial_backoff=2, max_backoff=1)


def test_backoff_grows_and_stays_under_its_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0)
    assert all(0 <= policy.backoff(1) <= 0.1 for _ in range(50))
    assert all(0 <= policy.backoff(10) <= 1.0 for _ in range(50))
    assert max(policy.backoff(10) for _ in range(200)) > 0.5


def test_a_subject_row_never_shows_its_identifier() -> None:
    bsn = fake_bsns(1)[0]
    row = SubjectRow("42", "bsn", bsn)
    assert bsn not in repr(row)
    assert bsn not in str(row)


@pytest.fixture
def index(tmp_path: Path) -> PseudonymIndex:
    idx = PseudonymIndex(sa.create_engine(f"sqlite:///{tmp_path / 'index.db'}"))
    idx.create()
    return idx


def test_a_malformed_pseudonym_is_refused(index: PseudonymIndex) -> None:
    for bad in ("", "AB" * 32, "a" * 63, "g" * 64):
        with pytest.raises(PseudonymIndexError, match="64 lowercase hex"):
            index.lookup(bad)


async def test_a_node_answering_the_wrong_count_changes_nothing(
    index: PseudonymIndex, federation: FederationKeys, police_keys: DomainKey
) -> None:
    honest = local_pseudonymiser(federation, POLICE)

    async def short(
        batch: Sequence[common_pb2.EncryptedPseudonym],
    ) -> Sequence[common_pb2.EncryptedPseudonym]:
        return (await honest(batch))[:-1]

    rows = [SubjectRow(str(i), "bsn", b) for i, b in enumerate(fake_bsns(3))]
    with pytest.raises(PseudonymIndexError, match="answered 2 subjects for a batch of 3"):
        await index.sync(rows, short, police_keys)
    assert index.count() == 0
    with pytest.raises(PseudonymIndexError, match="batch_size"):
        await index.sync(rows, honest, police_keys, batch_size=1001)


async def test_duplicate_records_of_one_person_all_resolve(
    index: PseudonymIndex, federation: FederationKeys, police_keys: DomainKey
) -> None:
    bsn = fake_bsns(1)[0]
    rows = [SubjectRow("a", "bsn", bsn), SubjectRow("b", "bsn", bsn), SubjectRow("a", "bsn", bsn)]
    report = await index.sync(rows, local_pseudonymiser(federation, POLICE), police_keys)
    assert report.added == 2
    assert report.rejected == {"a": "local key occurs twice in the source"}
    assert index.lookup(pseudonym_of(federation, POLICE, bsn)) == ("a", "b")
