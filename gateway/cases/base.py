"""What every part of the case registry shares: the engine, the clock, loading a case, the guard.

The registry is one class, :class:`gateway.cases.CaseRegistry`, assembled from
a part per concept (referrals and transitions, participants, grounds, hits,
bottleneck tags, facts, retention), each a subclass of :class:`CaseStoreBase`.

Every mutation is one transaction that starts with :meth:`CaseStoreBase._guard`:
a guarded ``UPDATE`` of the case row (``WHERE phase IN (allowed)``) whose
allowed phases and target phase come from :data:`gateway.cases.phases.TRANSITIONS`.
The guard decides legality atomically, takes the row's write lock so concurrent
mutations of one case serialise, and on failure the whole transaction rolls
back, so no case is ever half-written.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.cases.errors import CaseNotFoundError, IllegalTransitionError
from gateway.cases.model import Case, Ground, GroundKind, Hit, Participant
from gateway.cases.phases import TRANSITIONS, Action, phase_list
from gateway.cases.tables import (
    case_bottlenecks,
    case_grounds,
    case_hits,
    case_participants,
    cases,
)
from gateway.cases.vault import FactVault
from gateway.storage import Clock, utc_now
from policy.vocabulary import Phase

# Built once: constructing a select costs more than running it on SQLite.
_ID: sa.BindParameter[str] = sa.bindparam("case_id", type_=sa.String())
_CASE = sa.select(cases).where(cases.c.id == _ID)
_PARTICIPANTS = (
    sa.select(case_participants)
    .where(case_participants.c.case_id == _ID)
    .order_by(case_participants.c.added_at, case_participants.c.node_id, case_participants.c.org_id)
)
_GROUNDS = sa.select(case_grounds).where(case_grounds.c.case_id == _ID).order_by(case_grounds.c.id)
_HITS = (
    sa.select(case_hits)
    .where(case_hits.c.case_id == _ID)
    .order_by(case_hits.c.node_id, case_hits.c.org_id)
)
_TAGS = (
    sa.select(case_bottlenecks.c.tag)
    .where(case_bottlenecks.c.case_id == _ID)
    .order_by(case_bottlenecks.c.tag)
)


class CaseStoreBase:
    """Cases of one node, stored through ``engine``; facts sealed by ``vault``."""

    def __init__(self, engine: Engine, vault: FactVault, *, clock: Clock = utc_now) -> None:
        """Use ``engine`` (schema migrated) and ``vault``; ``clock`` gives aware UTC times."""
        self._engine = engine
        self._vault = vault
        self._clock = clock

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the registry clock must return timezone-aware datetimes")
        return now

    def _load(self, conn: Connection, case_id: str) -> Case:
        """The case ``case_id`` with everything attached; CaseNotFoundError if there is none."""
        key = {"case_id": case_id}
        row = conn.execute(_CASE, key).first()
        if row is None:
            raise CaseNotFoundError(f"no case {case_id} at this node")
        participants = conn.execute(_PARTICIPANTS, key).all()
        grounds = conn.execute(_GROUNDS, key).all()
        hits = conn.execute(_HITS, key).all()
        tags = conn.execute(_TAGS, key).scalars()
        return Case(
            id=row.id,
            activity=row.activity,
            theme=row.theme,
            phase=Phase(row.phase),
            referrer_org_id=row.referrer_org_id or "",
            referrer_org_type=row.referrer_org_type or "",
            external_ref=row.external_ref or "",
            subject=row.subject_pseudonym or "",
            criteria=tuple(row.criteria or ()),
            reason_codes=tuple(row.reason_codes or ()),
            triage_reason=row.triage_reason,
            outcome=row.outcome,
            participants=tuple(Participant(p.org_id, p.org_type, p.node_id) for p in participants),
            grounds=tuple(
                Ground(
                    GroundKind(g.kind), g.category, g.provider_org_id, g.evidence_ref, g.recorded_at
                )
                for g in grounds
            ),
            hits=tuple(Hit(h.org_id, h.node_id, h.contact_handle) for h in hits),
            bottlenecks=tuple(tags),
            opened_at=row.opened_at,
            triage_at=row.triage_at,
            accepted_at=row.accepted_at,
            closed_at=row.closed_at,
            retain_until=row.retain_until,
            purged_at=row.purged_at,
        )

    def _guard(
        self,
        conn: Connection,
        case_id: str,
        action: Action,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """Start ``action``: bump the case's version, move its phase and set ``values``.

        Only if the case's phase is one ``action`` is allowed in; the target
        phase comes from the transition table. Raises CaseNotFoundError or
        IllegalTransitionError, naming the current phase and the action, when
        the update matched no row.
        """
        move = TRANSITIONS[action]
        changes = dict(values or {})
        if move.to is not None:
            changes["phase"] = move.to.value
        result = conn.execute(
            sa.update(cases)
            .where(
                cases.c.id == case_id,
                cases.c.phase.in_([p.value for p in move.allowed]),
                cases.c.purged_at.is_(None),
            )
            .values(version=cases.c.version + 1, **changes)
        )
        if result.rowcount == 1:
            return
        row = conn.execute(
            sa.select(cases.c.phase, cases.c.purged_at).where(cases.c.id == case_id)
        ).first()
        if row is None:
            raise CaseNotFoundError(f"no case {case_id} at this node")
        if row.purged_at is not None:
            raise IllegalTransitionError(
                f"cannot {move.phrase} case {case_id}: its retention period ended and it was purged"
            )
        raise IllegalTransitionError(
            f"cannot {move.phrase} case {case_id}: it is in phase {row.phase}, "
            f"and {move.phrase} is allowed only in phase {phase_list(move.allowed)}"
        )
