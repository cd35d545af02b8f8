"""Case links: the peers' cases this node takes part in, as their case nodes told it.

A peer node's case may have participants that are partner organisations of
this node. When the case node's procesregisseur accepts or adds such a
participant, the case node tells this node (``FederationService.LinkCase``),
and this node keeps a *link*: the case node and its case id, the subject
(this node's own pseudonym of the person), the activity, this node's
participating organisations, the organisation types of all the case's
participants, and the phase. This node answers the case node about the case
only within its link.

A link only grows. An update adds participants and participant types and
may close the link, never the reverse, so a retried or late update cannot
undo a later one. It may not change the subject or the activity, nor the
type of a participant. A closed link starts its retention clock; the purge
then clears the subject, participants and types and deletes the grounds,
and keeps the row as a tombstone so that the link cannot be made again.

A ground the case node states for a provider (consent, legal duty,
conflict van plichten) is kept on the link as that node's assertion, bound
to the link and to that provider: it never counts for another link, another
provider, or a case of this node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from gateway.cases.errors import CaseInputError, LinkClosedError, LinkConflictError
from gateway.cases.model import (
    Participant,
    check_case_id,
    check_code,
    check_id,
    check_pseudonym,
)
from gateway.cases.retention import retain_until
from gateway.cases.tables import case_link_grounds, case_links
from gateway.storage import Clock, utc_now
from policy.vocabulary import ORG_TYPES, Phase

LINK_PHASES = frozenset({Phase.CASUSOVERLEG, Phase.AFSCHALING})
"""A link is made in casusoverleg (participants exist only from acceptance);
afschaling closes it."""
GROUND_KINDS = frozenset({"consent", "legal-duty", "conflict-van-plichten"})
"""Grounds as policy names them, and as peers state them."""
_ATTEMPTS = 5
"""How often an update is retried when another one wrote the link in between."""


@dataclass(frozen=True)
class LinkState:
    """What a case node says its case is, for this node."""

    node_id: str
    """The case node (the caller)."""
    case_id: str
    subject: str
    """The subject's node-domain pseudonym here."""
    activity: str
    phase: Phase
    participants: tuple[Participant, ...]
    """The case's participants that are partner organisations of this node."""
    org_types: frozenset[str]
    """The organisation types of all the case's participants, at any node."""

    def check(self) -> LinkState:
        """Return self if every field is valid, else raise CaseInputError."""
        check_id(self.node_id, "link node id")
        check_case_id(self.case_id)
        check_pseudonym(self.subject)
        check_code(self.activity, "activity")
        if self.phase not in LINK_PHASES:
            raise CaseInputError("a link's phase is casusoverleg, or afschaling to close it")
        if not self.participants:
            raise CaseInputError("a link names at least one participant at this node")
        for p in self.participants:
            p.check()
        unknown = self.org_types - ORG_TYPES
        if unknown:
            raise CaseInputError("participant org types must be known organisation types")
        if {p.org_type for p in self.participants} - self.org_types:
            raise CaseInputError("participant org types must include the participants' types")
        return self


@dataclass(frozen=True)
class CaseLink:
    """A link as held; after the purge only a closed tombstone remains."""

    node_id: str
    case_id: str
    subject: str
    """Empty after the purge."""
    activity: str
    phase: Phase
    participants: tuple[Participant, ...]
    org_types: frozenset[str]
    linked_at: datetime
    closed_at: datetime | None
    retain_until: datetime | None
    purged_at: datetime | None

    @property
    def is_open(self) -> bool:
        """True until the case node closed the case."""
        return self.closed_at is None

    def participant(self, org_id: str, org_type: str) -> bool:
        """True when ``org_id`` of type ``org_type`` takes part at this node."""
        return any(p.org_id == org_id and p.org_type == org_type for p in self.participants)


def _link(row: Any) -> CaseLink:
    return CaseLink(
        node_id=row.node_id,
        case_id=row.case_id,
        subject=row.subject_pseudonym or "",
        activity=row.activity,
        phase=Phase(row.phase),
        participants=tuple(Participant(o, t, n) for o, t, n in row.participants or ()),
        org_types=frozenset(row.org_types or ()),
        linked_at=row.linked_at,
        closed_at=row.closed_at,
        retain_until=row.retain_until,
        purged_at=row.purged_at,
    )


def _key(node_id: str, case_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(case_links.c.node_id == node_id, case_links.c.case_id == case_id)


class LinkStore:
    """The links of one node, stored through ``engine`` (schema migrated)."""

    def __init__(self, engine: Engine, *, clock: Clock = utc_now) -> None:
        """Use ``engine``; ``clock`` gives aware UTC times (tests set it by hand)."""
        self._engine = engine
        self._clock = clock

    def get(self, node_id: str, case_id: str) -> CaseLink | None:
        """The link for case ``case_id`` of node ``node_id``, or None if there is none."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(case_links).where(_key(node_id, case_id))).first()
        return None if row is None else _link(row)

    def hold(self, state: LinkState, *, retention_days: int) -> bool:
        """Make or update the link ``state`` describes; True when anything changed.

        Participants and types are added; afschaling closes the link and
        starts its retention of ``retention_days``. A closed link changes no
        more (False). Raises LinkConflictError when ``state`` names another
        subject or activity than the link, or another type for a participant;
        LinkClosedError when it closes a link that was never made.
        """
        state.check()
        for _ in range(_ATTEMPTS):
            try:
                with self._engine.begin() as conn:
                    changed = self._hold(conn, state, retention_days)
            except IntegrityError:
                continue  # another update made the link first; read it again
            if changed is not None:
                return changed
        raise LinkConflictError(
            f"the link for case {state.case_id} of node {state.node_id} kept changing; try again"
        )

    def _hold(self, conn: Connection, state: LinkState, retention_days: int) -> bool | None:
        """One attempt; None when another update wrote the link since it was read."""
        now = self._clock()
        closing = state.phase is Phase.AFSCHALING
        row = conn.execute(sa.select(case_links).where(_key(state.node_id, state.case_id))).first()
        if row is None:
            if closing:
                raise LinkClosedError(
                    f"node {state.node_id} has no link here for case {state.case_id} to close"
                )
            conn.execute(
                sa.insert(case_links).values(
                    node_id=state.node_id,
                    case_id=state.case_id,
                    version=1,
                    activity=state.activity,
                    phase=state.phase.value,
                    subject_pseudonym=state.subject,
                    participants=_rows(state.participants),
                    org_types=sorted(state.org_types),
                    linked_at=now,
                )
            )
            return True
        link = _link(row)
        if not link.is_open:
            return False
        if state.subject != link.subject or state.activity != link.activity:
            raise LinkConflictError(
                f"case {state.case_id} of node {state.node_id} was linked for another "
                "subject or activity"
            )
        held = {p.org_id: p for p in link.participants}
        for p in state.participants:
            if p.org_id in held and held[p.org_id] != p:
                raise LinkConflictError(
                    f"participant {p.org_id} takes part in case {state.case_id} "
                    f"as {held[p.org_id].org_type}, not {p.org_type}"
                )
        added = tuple(p for p in state.participants if p.org_id not in held)
        participants = (*link.participants, *added)
        org_types = link.org_types | state.org_types
        if participants == link.participants and org_types == link.org_types and not closing:
            return False
        values: dict[str, Any] = {
            "version": row.version + 1,
            "participants": _rows(participants),
            "org_types": sorted(org_types),
        }
        if closing:
            values |= {
                "phase": Phase.AFSCHALING.value,
                "closed_at": now,
                "retain_until": retain_until(now, retention_days),
            }
        written = conn.execute(
            sa.update(case_links)
            .where(_key(state.node_id, state.case_id), case_links.c.version == row.version)
            .values(**values)
        ).rowcount
        return True if written == 1 else None

    def assert_grounds(
        self, link: CaseLink, provider: Participant, grounds: Iterable[tuple[str, str]]
    ) -> int:
        """Keep the case node's ``grounds`` (category, kind) for ``provider`` on ``link``.

        Returns how many were new. Raises LinkClosedError once the link is
        closed: a closed link takes no more assertions.
        """
        wanted = set(grounds)
        for category, kind in wanted:
            check_code(category, "ground category")
            if kind not in GROUND_KINDS:
                raise CaseInputError(
                    f"ground kind must be one of {', '.join(sorted(GROUND_KINDS))}"
                )
        check_id(provider.node_id, "provider node id")
        check_id(provider.org_id, "provider org id")
        if not wanted:
            return 0
        for _ in range(_ATTEMPTS):
            try:
                with self._engine.begin() as conn:
                    return self._assert(conn, link, provider, wanted)
            except IntegrityError:
                continue  # the same assertion arrived twice at once; look again
        raise LinkConflictError(f"the grounds of case {link.case_id} kept changing; try again")

    def _assert(
        self,
        conn: Connection,
        link: CaseLink,
        provider: Participant,
        wanted: set[tuple[str, str]],
    ) -> int:
        open_now = conn.execute(
            sa.select(case_links.c.node_id).where(
                _key(link.node_id, link.case_id), case_links.c.closed_at.is_(None)
            )
        ).first()
        if open_now is None:
            raise LinkClosedError(f"the link for case {link.case_id} is closed")
        held = self._grounds(conn, link, provider)
        new = sorted(wanted - held)
        if new:
            conn.execute(
                sa.insert(case_link_grounds),
                [
                    {
                        "node_id": link.node_id,
                        "case_id": link.case_id,
                        "provider_node_id": provider.node_id,
                        "provider_org_id": provider.org_id,
                        "category": category,
                        "kind": kind,
                        "asserted_at": self._clock(),
                    }
                    for category, kind in new
                ],
            )
        return len(new)

    def grounds(self, link: CaseLink, provider: Participant) -> frozenset[tuple[str, str]]:
        """The (category, kind) grounds the case node asserted for ``provider`` on ``link``."""
        with self._engine.connect() as conn:
            return self._grounds(conn, link, provider)

    @staticmethod
    def _grounds(
        conn: Connection, link: CaseLink, provider: Participant
    ) -> frozenset[tuple[str, str]]:
        g = case_link_grounds.c
        rows = conn.execute(
            sa.select(g.category, g.kind).where(
                g.node_id == link.node_id,
                g.case_id == link.case_id,
                g.provider_node_id == provider.node_id,
                g.provider_org_id == provider.org_id,
            )
        )
        return frozenset((r.category, r.kind) for r in rows)

    def purge_expired(self, now: datetime | None = None) -> list[tuple[str, str]]:
        """Purge every closed link whose retention ended at or before ``now``.

        Its grounds are deleted; subject, participants and types are cleared;
        the row stays as a closed tombstone. Returns the (node id, case id)
        of each link purged, each in its own transaction.
        """
        at = now if now is not None else self._clock()
        if at.tzinfo is None:
            raise CaseInputError("purge time must be timezone-aware")
        due = sa.and_(case_links.c.retain_until <= at, case_links.c.purged_at.is_(None))
        with self._engine.connect() as conn:
            keys = [
                (r.node_id, r.case_id)
                for r in conn.execute(
                    sa.select(case_links.c.node_id, case_links.c.case_id)
                    .where(due)
                    .order_by(case_links.c.node_id, case_links.c.case_id)
                )
            ]
        purged = []
        for node_id, case_id in keys:
            with self._engine.begin() as conn:
                claimed = conn.execute(
                    sa.update(case_links)
                    .where(_key(node_id, case_id), due)
                    .values(
                        version=case_links.c.version + 1,
                        subject_pseudonym=None,
                        participants=None,
                        org_types=None,
                        purged_at=at,
                    )
                ).rowcount
                if claimed != 1:
                    continue
                conn.execute(
                    sa.delete(case_link_grounds).where(
                        case_link_grounds.c.node_id == node_id,
                        case_link_grounds.c.case_id == case_id,
                    )
                )
            purged.append((node_id, case_id))
        return purged


def _rows(participants: Iterable[Participant]) -> list[list[str]]:
    return [[p.org_id, p.org_type, p.node_id] for p in participants]


__all__ = ["GROUND_KINDS", "LINK_PHASES", "CaseLink", "LinkState", "LinkStore"]
