"""The link store: a link only grows, a closed link stays closed, and retention purges it.

Runs on SQLite and PostgreSQL, with a clock the test sets by hand.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from gateway.cases import Participant
from gateway.cases.errors import CaseInputError, LinkClosedError, LinkConflictError
from gateway.cases.links import LinkState, LinkStore
from gateway.cases.tables import case_link_grounds
from policy.vocabulary import Phase
from tests.support.cases import SetClock, pseudonym

PEER = "zvh-rotterdam-rijnmond"
HERE = "zvh-haaglanden"
CASE = "a" * 32
POLITIE = Participant("politie-haaglanden", "politie", HERE)
GGZ = Participant("ggz-parnassia", "ggz", HERE)
CONSENT = ("zorg.in_zorg", "consent")


@pytest.fixture
def links(engine: sa.Engine, clock: SetClock) -> LinkStore:
    return LinkStore(engine, clock=clock)


def state(subject: str, *participants: Participant, **changes: object) -> LinkState:
    fields: dict[str, object] = {
        "node_id": PEER,
        "case_id": CASE,
        "subject": subject,
        "activity": "zvh.complexe-casuistiek",
        "phase": Phase.CASUSOVERLEG,
        "participants": participants or (POLITIE,),
        "org_types": frozenset({"politie", "gemeente"} | {p.org_type for p in participants}),
    }
    fields.update(changes)
    return LinkState(**fields)  # type: ignore[arg-type]


def test_a_link_only_grows_and_a_retry_changes_nothing(links: LinkStore) -> None:
    subject = pseudonym()
    assert links.hold(state(subject), retention_days=30)
    assert not links.hold(state(subject), retention_days=30), "a retry changes nothing"
    assert links.hold(state(subject, GGZ), retention_days=30)
    # A late update naming only the first participant removes nobody.
    assert not links.hold(state(subject, POLITIE), retention_days=30)
    link = links.get(PEER, CASE)
    assert link is not None and link.is_open
    assert link.participants == (POLITIE, GGZ)
    assert link.org_types == {"politie", "ggz", "gemeente"}
    assert link.participant("ggz-parnassia", "ggz")
    assert not link.participant("ggz-parnassia", "gemeente")
    assert links.get(HERE, CASE) is None, "a link belongs to its case node"


def test_an_update_may_not_change_subject_activity_or_a_participants_type(
    links: LinkStore,
) -> None:
    subject = pseudonym()
    links.hold(state(subject), retention_days=30)
    for changed in (
        state(pseudonym()),
        state(subject, activity="zvh.huiselijk-geweld"),
        state(subject, Participant("politie-haaglanden", "gemeente", HERE)),
    ):
        with pytest.raises(LinkConflictError):
            links.hold(changed, retention_days=30)
    with pytest.raises(CaseInputError):
        links.hold(state(subject, phase=Phase.TRIAGE), retention_days=30)
    with pytest.raises(CaseInputError):
        links.hold(state(subject, org_types=frozenset({"gemeente"})), retention_days=30)


def test_closing_a_link_never_made_is_refused(links: LinkStore) -> None:
    with pytest.raises(LinkClosedError):
        links.hold(state(pseudonym(), phase=Phase.AFSCHALING), retention_days=30)
    assert links.get(PEER, CASE) is None


def test_grounds_are_bound_to_their_link_and_provider(links: LinkStore) -> None:
    subject = pseudonym()
    links.hold(state(subject, POLITIE, GGZ), retention_days=30)
    links.hold(state(subject, GGZ, case_id="b" * 32), retention_days=30)
    first, second = links.get(PEER, CASE), links.get(PEER, "b" * 32)
    assert first is not None and second is not None
    assert links.assert_grounds(first, GGZ, [CONSENT]) == 1
    assert links.assert_grounds(first, GGZ, [CONSENT]) == 0, "asserting again adds nothing"
    assert links.grounds(first, GGZ) == {CONSENT}
    assert links.grounds(first, POLITIE) == frozenset(), "another provider"
    assert links.grounds(second, GGZ) == frozenset(), "another case"
    with pytest.raises(CaseInputError):
        links.assert_grounds(first, GGZ, [("zorg.in_zorg", "hearsay")])


def test_a_closed_link_stays_closed_and_is_purged_at_the_end_of_retention(
    links: LinkStore, engine: sa.Engine, clock: SetClock
) -> None:
    subject = pseudonym()
    links.hold(state(subject, GGZ), retention_days=30)
    link = links.get(PEER, CASE)
    assert link is not None
    links.assert_grounds(link, GGZ, [CONSENT])
    closed_at = clock.advance(days=3)
    assert links.hold(state(subject, GGZ, phase=Phase.AFSCHALING), retention_days=30)
    link = links.get(PEER, CASE)
    assert link is not None and not link.is_open and link.phase is Phase.AFSCHALING
    assert link.closed_at == closed_at
    # A late update can neither reopen the link nor add to it.
    assert not links.hold(state(subject, GGZ, POLITIE), retention_days=30)
    assert links.get(PEER, CASE) == link
    with pytest.raises(LinkClosedError):
        links.assert_grounds(link, POLITIE, [CONSENT])

    clock.advance(days=30, seconds=-1)
    assert links.purge_expired() == [], "retention has not ended yet"
    assert links.grounds(link, GGZ) == {CONSENT}
    clock.advance(seconds=1)
    assert links.purge_expired() == [(PEER, CASE)]
    assert links.purge_expired() == [], "a purge runs once"
    purged = links.get(PEER, CASE)
    assert purged is not None and purged.purged_at == clock.now
    assert purged.subject == "" and purged.participants == () and purged.org_types == set()
    assert not purged.is_open
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(case_link_grounds)).scalar() == 0
    # The tombstone keeps the link from being made again by a late update.
    assert not links.hold(state(subject, GGZ), retention_days=30)
    assert links.get(PEER, CASE) == purged
