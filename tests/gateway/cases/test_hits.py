"""Hit records per case and the federated lookup "is this subject in an active case here?"."""

from __future__ import annotations

from datetime import UTC

import pytest
from schakel.v1 import common_pb2

from gateway.cases import CaseInputError, CaseRegistry, Hit, HitAnswer, case_status
from tests.support.cases import POLITIE, pseudonym, referral

REGIE = "procesregie@zvh-haaglanden.example"


def test_hits_are_recorded_and_refreshed(registry: CaseRegistry) -> None:
    case_id = registry.refer(referral()).case.id
    registry.record_hit(case_id, Hit("ggz-parnassia", "zvh-haaglanden", "crisisdienst@ggz.example"))
    registry.record_hit(case_id, Hit("", "zvh-rotterdam", "regie@zvh-rotterdam.example"))
    case = registry.record_hit(case_id, Hit("ggz-parnassia", "zvh-haaglanden", "+31 70 000 0000"))
    assert case.hits == (
        Hit("ggz-parnassia", "zvh-haaglanden", "+31 70 000 0000"),
        Hit("", "zvh-rotterdam", "regie@zvh-rotterdam.example"),
    )


def test_active_case_lookup(registry: CaseRegistry) -> None:
    ref = referral()
    stranger = pseudonym()
    assert registry.active_hit(ref.subject, contact_handle=REGIE) == HitAnswer(False, "")

    case_id = registry.refer(ref).case.id
    assert registry.active_hit(ref.subject, contact_handle=REGIE) == HitAnswer(True, REGIE)
    assert registry.active_hit(stranger, contact_handle=REGIE) == HitAnswer(False, "")
    # The asking case itself does not count as a hit.
    assert not registry.active_hit(ref.subject, contact_handle=REGIE, exclude_case_id=case_id).hit

    registry.start_triage(case_id)
    registry.accept(case_id, reason_code="ok", participants=[POLITIE])
    assert registry.active_hit(ref.subject, contact_handle=REGIE).hit
    registry.close(case_id, outcome="doelen-bereikt", retention_days=30)
    # A closed case is no longer active, although its link is kept until the purge.
    assert registry.active_hit(ref.subject, contact_handle=REGIE) == HitAnswer(False, "")
    assert registry.get(case_id).subject == ref.subject


def test_lookup_refuses_malformed_input(registry: CaseRegistry) -> None:
    with pytest.raises(CaseInputError, match="subject must be a node-domain pseudonym"):
        registry.active_hit("123456782", contact_handle=REGIE)
    with pytest.raises(CaseInputError, match="contact handle"):
        registry.active_hit(pseudonym(), contact_handle=" spaced ")
    with pytest.raises(CaseInputError, match="hit org id"):
        registry.record_hit(registry.refer(referral()).case.id, Hit("Org X", "zvh-a", REGIE))


def test_case_status_carries_no_subject_or_facts(registry: CaseRegistry) -> None:
    ref = referral()
    case_id = registry.refer(ref).case.id
    registry.record_hit(case_id, Hit("", "zvh-rotterdam", REGIE))
    registry.start_triage(case_id)
    registry.accept(case_id, reason_code="ok", participants=[POLITIE])
    registry.set_bottlenecks(case_id, ["huisvesting"])
    case = registry.close(case_id, outcome="doelen-bereikt", retention_days=30)
    status = case_status(case, "zvh-haaglanden", for_referrer=True)
    assert (status.case_ref.node_id, status.case_ref.case_id) == ("zvh-haaglanden", case_id)
    assert status.phase == common_pb2.PHASE_AFSCHALING and status.outcome == "doelen-bereikt"
    assert [p.org_id for p in status.participants] == [POLITIE.org_id]
    assert [h.node_id for h in status.hits] == ["zvh-rotterdam"]
    assert list(status.bottlenecks) == ["huisvesting"] and status.external_ref == ref.external_ref
    assert status.opened_at.ToDatetime(tzinfo=UTC) == case.opened_at
    assert status.closed_at.ToDatetime(tzinfo=UTC) == case.closed_at
    wire = status.SerializeToString()
    assert ref.subject.encode() not in wire and bytes.fromhex(ref.subject) not in wire
    other = case_status(case, "zvh-haaglanden", for_referrer=False)
    assert other.external_ref == "" and other.HasField("closed_at")
    assert not case_status(registry.refer(referral("open")).case, "n", for_referrer=True).HasField(
        "closed_at"
    )
