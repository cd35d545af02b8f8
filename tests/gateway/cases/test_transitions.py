"""Every legal and illegal phase transition of a case, and refusals that change nothing."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier

import pytest
import sqlalchemy as sa
from schakel.v1 import case_pb2, common_pb2

from gateway.cases import (
    CaseInputError,
    CaseNotFoundError,
    CaseRegistry,
    GroundKind,
    Hit,
    IllegalTransitionError,
    Participant,
)
from policy.vocabulary import Phase
from tests.support.cases import (
    GEMEENTE,
    GGZ,
    POLITIE,
    START,
    SetClock,
    case_in,
    case_version,
    referral,
)

Action = Callable[[CaseRegistry, str], object]

ACTIONS: dict[str, tuple[Action, frozenset[Phase]]] = {
    "start triage of": (lambda r, c: r.start_triage(c), frozenset({Phase.AANMELDING})),
    "accept at triage": (
        lambda r, c: r.accept(c, reason_code="criteria-ok", participants=[POLITIE]),
        frozenset({Phase.TRIAGE}),
    ),
    "reject at triage": (
        lambda r, c: r.reject(c, reason_code="buiten-doelgroep", retention_days=30),
        frozenset({Phase.TRIAGE}),
    ),
    "close": (
        lambda r, c: r.close(c, outcome="doelen-bereikt", retention_days=30),
        frozenset({Phase.CASUSOVERLEG}),
    ),
    "add a participant to": (
        lambda r, c: r.add_participant(c, GEMEENTE),
        frozenset({Phase.CASUSOVERLEG}),
    ),
    "record a ground for": (
        lambda r, c: r.record_ground(
            c,
            kind=GroundKind.CONSENT,
            category="zorg.in_zorg",
            provider_org_id="ggz-parnassia",
            evidence_ref="TOESTEMMING-77",
        ),
        frozenset({Phase.AANMELDING, Phase.TRIAGE, Phase.CASUSOVERLEG}),
    ),
    "record a hit for": (
        lambda r, c: r.record_hit(c, Hit("ggz-parnassia", "zvh-haaglanden", "regie@zvh.example")),
        frozenset({Phase.AANMELDING, Phase.TRIAGE, Phase.CASUSOVERLEG}),
    ),
    "store a fact for": (
        lambda r, c: r.store_fact(c, common_pb2.Fact(category="sociaal.huisvesting"), provider=GGZ),
        frozenset({Phase.CASUSOVERLEG}),
    ),
}


def test_the_full_legal_path(registry: CaseRegistry, clock: SetClock) -> None:
    ref = referral()
    case = registry.refer(ref).case
    assert (case.phase, case.theme, case.subject) == (Phase.AANMELDING, ref.theme, ref.subject)
    assert case.criteria == ref.criteria and case.reason_codes == ref.reason_codes
    assert case.referrer_org_id == "politie-haaglanden" and case.external_ref == ref.external_ref
    assert case.opened_at == START and case.closed_at is None and case.retain_until is None

    clock.advance(hours=1)
    case = registry.start_triage(case.id)
    assert case.phase is Phase.TRIAGE and case.triage_at == START + timedelta(hours=1)

    clock.advance(hours=1)
    case = registry.accept(case.id, reason_code="criteria-ok", participants=[POLITIE, GGZ])
    assert case.phase is Phase.CASUSOVERLEG and case.triage_reason == "criteria-ok"
    assert set(case.participants) == {POLITIE, GGZ}
    assert case.accepted_at == START + timedelta(hours=2)

    case = registry.add_participant(case.id, GEMEENTE)
    assert set(case.participants) == {POLITIE, GGZ, GEMEENTE}
    # Adding the same participant again is a harmless retry.
    assert set(registry.add_participant(case.id, GEMEENTE).participants) == set(case.participants)

    case = registry.record_ground(
        case.id,
        kind=GroundKind.CONFLICT_VAN_PLICHTEN,
        category="zorg.crisismaatregel",
        provider_org_id="ggz-parnassia",
        evidence_ref="CVP-2026-4",
    )
    (ground,) = case.grounds
    assert (ground.kind, ground.category, ground.provider_org_id, ground.evidence_ref) == (
        GroundKind.CONFLICT_VAN_PLICHTEN,
        "zorg.crisismaatregel",
        "ggz-parnassia",
        "CVP-2026-4",
    )

    case = registry.set_bottlenecks(case.id, ["huisvesting", "wachtlijst-ggz"])
    assert case.bottlenecks == ("huisvesting", "wachtlijst-ggz")

    clock.advance(days=10)
    case = registry.close(case.id, outcome="doelen-bereikt", retention_days=365)
    assert case.phase is Phase.AFSCHALING and case.outcome == "doelen-bereikt"
    assert case.closed_at == clock.now
    assert case.retain_until == clock.now + timedelta(days=365)
    assert not case.is_open
    # Tags may still be set after closing: signalling looks back on closed cases.
    assert registry.set_bottlenecks(case.id, ["schulden"]).bottlenecks == ("schulden",)
    assert registry.get(case.id) == registry.set_bottlenecks(case.id, ["schulden"])


def test_a_case_in_aanmelding_is_decided_only_after_triage_started(
    registry: CaseRegistry,
) -> None:
    case_id = case_in(registry, Phase.AANMELDING)
    for decide in (
        lambda: registry.accept(case_id, reason_code="spoed", participants=[GGZ]),
        lambda: registry.reject(case_id, reason_code="buiten-doelgroep", retention_days=7),
    ):
        with pytest.raises(IllegalTransitionError, match="allowed only in phase triage"):
            decide()
    assert registry.get(case_id).phase is Phase.AANMELDING
    registry.start_triage(case_id)
    case = registry.accept(case_id, reason_code="spoed", participants=[GGZ])
    assert case.phase is Phase.CASUSOVERLEG and case.triage_at is not None


def test_reject_closes_as_niet_ontvankelijk(registry: CaseRegistry, clock: SetClock) -> None:
    case_id = case_in(registry, Phase.TRIAGE)
    case = registry.reject(case_id, reason_code="buiten-doelgroep", retention_days=7)
    assert case.phase is Phase.AFSCHALING and case.outcome == "niet-ontvankelijk"
    assert case.triage_reason == "buiten-doelgroep" and case.participants == ()
    assert case.retain_until == clock.now + timedelta(days=7)


@pytest.mark.parametrize("phase", list(Phase))
def test_illegal_transitions_are_refused_and_change_nothing(
    registry: CaseRegistry, engine: sa.Engine, phase: Phase
) -> None:
    refused = [action for action, (_, allowed) in ACTIONS.items() if phase not in allowed]
    assert refused
    for n, action in enumerate(refused):
        case_id = case_in(registry, phase, key=f"k{n}")
        before, version = registry.get(case_id), case_version(engine, case_id)
        do, allowed = ACTIONS[action]
        with pytest.raises(IllegalTransitionError) as err:
            do(registry, case_id)
        message = str(err.value)
        assert f"cannot {action} case {case_id}" in message
        assert f"it is in phase {phase.value}" in message
        assert all(p.value in message for p in allowed)
        assert registry.get(case_id) == before and case_version(engine, case_id) == version
        assert registry.facts(case_id) == []


def test_unknown_case_is_not_found(registry: CaseRegistry) -> None:
    for do, _ in ACTIONS.values():
        with pytest.raises(CaseNotFoundError, match=r"no case 0{32} at this node"):
            do(registry, "0" * 32)
        with pytest.raises(CaseInputError, match="case id must be 32 lowercase hex"):
            do(registry, "../etc")
    with pytest.raises(CaseNotFoundError):
        registry.get("0" * 32)


def test_set_bottlenecks_on_unknown_case(registry: CaseRegistry) -> None:
    with pytest.raises(CaseNotFoundError):
        registry.set_bottlenecks("f" * 32, ["huisvesting"])


def test_failure_mid_transaction_rolls_back(registry: CaseRegistry, engine: sa.Engine) -> None:
    case_id = case_in(registry, Phase.CASUSOVERLEG)
    version = case_version(engine, case_id)
    # The guard has already bumped the version when the conflict is found:
    # the rollback must undo it together with everything else.
    with pytest.raises(CaseInputError, match=r"already in case .* with org type ggz"):
        registry.add_participant(case_id, Participant("ggz-parnassia", "gemeente", GGZ.node_id))
    assert case_version(engine, case_id) == version
    assert set(registry.get(case_id).participants) == {POLITIE, GGZ}


BAD_INPUT: list[tuple[Action, str]] = [
    (
        lambda r, c: r.accept(c, reason_code="ok", participants=[]),
        "at least one participant",
    ),
    (
        lambda r, c: r.accept(c, reason_code="ok", participants=[GGZ, GGZ]),
        "listed more than once",
    ),
    (
        lambda r, c: r.accept(
            c, reason_code="ok", participants=[Participant("ggz-x", "ziekenhuis", "zvh-a")]
        ),
        "participant org type is unknown",
    ),
    (
        lambda r, c: r.accept(
            c, reason_code="ok", participants=[Participant("GGZ X", "ggz", "zvh-a")]
        ),
        "participant org id must be",
    ),
    (
        lambda r, c: r.accept(c, reason_code="Vrije tekst!", participants=[GGZ]),
        "reason_code must be a code",
    ),
    (
        lambda r, c: r.reject(c, reason_code="nee", retention_days=-1),
        "retention_days must be a whole number",
    ),
    (
        lambda r, c: r.record_ground(
            c,
            kind=GroundKind.CONSENT,
            category="zorg.in_zorg",
            provider_org_id="ggz-parnassia",
            evidence_ref="",
        ),
        "evidence_ref is required",
    ),
    (
        lambda r, c: r.record_ground(
            c,
            kind="consent",  # type: ignore[arg-type]
            category="zorg.in_zorg",
            provider_org_id="ggz-parnassia",
            evidence_ref="T-1",
        ),
        "ground kind must be",
    ),
    (
        lambda r, c: r.set_bottlenecks(c, ["huisvesting", "huisvesting"]),
        "more than once",
    ),
    (
        lambda r, c: r.record_hit(c, Hit("ggz-parnassia", "zvh-a", "")),
        "contact handle must be",
    ),
]


def test_bad_input_is_refused_and_changes_nothing(
    registry: CaseRegistry, engine: sa.Engine
) -> None:
    case_id = case_in(registry, Phase.TRIAGE)
    before, version = registry.get(case_id), case_version(engine, case_id)
    for call, message in BAD_INPUT:
        with pytest.raises(CaseInputError, match=message):
            call(registry, case_id)
        assert registry.get(case_id) == before and case_version(engine, case_id) == version


def test_close_needs_an_outcome_code(registry: CaseRegistry) -> None:
    case_id = case_in(registry, Phase.CASUSOVERLEG)
    with pytest.raises(CaseInputError, match="outcome must be a code"):
        registry.close(case_id, outcome="", retention_days=30)
    assert registry.get(case_id).phase is Phase.CASUSOVERLEG


def test_phase_and_ground_kind_map_to_the_proto_enums() -> None:
    assert [p.to_proto() for p in Phase] == [
        common_pb2.PHASE_AANMELDING,
        common_pb2.PHASE_TRIAGE,
        common_pb2.PHASE_CASUSOVERLEG,
        common_pb2.PHASE_AFSCHALING,
    ]
    assert all(Phase.from_proto(p.to_proto()) is p for p in Phase)
    assert all(GroundKind.from_proto(k.to_proto()) is k for k in GroundKind)
    assert GroundKind.CONSENT.to_proto() == case_pb2.GROUND_KIND_CONSENT
    with pytest.raises(ValueError, match="not one of the four case phases"):
        Phase.from_proto(common_pb2.PHASE_UNSPECIFIED)
    with pytest.raises(CaseInputError):
        GroundKind.from_proto(case_pb2.GROUND_KIND_UNSPECIFIED)


def test_concurrent_accepts_only_one_wins(registry: CaseRegistry) -> None:
    case_id = case_in(registry, Phase.TRIAGE)
    barrier = Barrier(4)

    def accept(org: str) -> str:
        barrier.wait()
        try:
            registry.accept(
                case_id,
                reason_code="ok",
                participants=[Participant(org, "gemeente", "zvh-haaglanden")],
            )
        except IllegalTransitionError:
            return "refused"
        return "accepted"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(accept, [f"gemeente-{i}" for i in range(4)]))
    assert sorted(outcomes) == ["accepted", "refused", "refused", "refused"]
    # Exactly the winner's participant list was written, not a mix.
    assert len(registry.get(case_id).participants) == 1
