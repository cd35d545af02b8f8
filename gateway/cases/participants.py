"""Participants (deelnemers) of a case: named at acceptance, added in casusoverleg."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.cases.base import CaseStoreBase
from gateway.cases.errors import CaseInputError
from gateway.cases.model import Case, Participant, check_case_id
from gateway.cases.phases import Action
from gateway.cases.tables import case_participants


def checked_participants(participants: Iterable[Participant]) -> tuple[Participant, ...]:
    """The participants an acceptance names: at least one, each valid, none twice."""
    named = tuple(p.check() for p in participants)
    if not named:
        raise CaseInputError("accepting a case needs at least one participant")
    keys = [(p.node_id, p.org_id) for p in named]
    if len(set(keys)) != len(keys):
        raise CaseInputError("a participant (node id, org id) is listed more than once")
    return named


class ParticipantStore(CaseStoreBase):
    """The registry's participant rows."""

    def _insert_participants(
        self, conn: Connection, case_id: str, named: Iterable[Participant], now: datetime
    ) -> None:
        conn.execute(
            sa.insert(case_participants),
            [
                {
                    "case_id": case_id,
                    "node_id": p.node_id,
                    "org_id": p.org_id,
                    "org_type": p.org_type,
                    "added_at": now,
                }
                for p in named
            ],
        )

    def add_participant(self, case_id: str, participant: Participant) -> Case:
        """Add a participant in casusoverleg; adding one already there changes nothing."""
        check_case_id(case_id)
        participant.check()
        with self._engine.begin() as conn:
            self._guard(conn, case_id, Action.ADD_PARTICIPANT)
            present = conn.execute(
                sa.select(case_participants.c.org_type).where(
                    case_participants.c.case_id == case_id,
                    case_participants.c.node_id == participant.node_id,
                    case_participants.c.org_id == participant.org_id,
                )
            ).scalar_one_or_none()
            if present is None:
                self._insert_participants(conn, case_id, [participant], self._now())
            elif present != participant.org_type:
                raise CaseInputError(
                    f"participant {participant.org_id} at {participant.node_id} is already in "
                    f"case {case_id} with org type {present}"
                )
            return self._load(conn, case_id)
