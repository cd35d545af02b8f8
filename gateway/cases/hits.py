"""Hit/no-hit at the case registry: who knows a case's subject, and is a subject in a case here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from gateway.cases.base import CaseStoreBase
from gateway.cases.model import (
    Case,
    Hit,
    check_case_id,
    check_contact,
    check_id,
    check_pseudonym,
)
from gateway.cases.phases import Action
from gateway.cases.tables import case_hits, cases
from policy.vocabulary import OPEN_PHASES


@dataclass(frozen=True)
class HitAnswer:
    """The answer to "is this subject in an active case here?"."""

    hit: bool
    contact_handle: str
    """The procesregisseur's contact on a hit, empty otherwise."""


class HitStore(CaseStoreBase):
    """The registry's hit records, and the federated "active case here?" question."""

    def record_hit(self, case_id: str, hit: Hit) -> Case:
        """Record (or refresh) who knows the subject of an open case, and whom to contact."""
        return self.record_hits(case_id, [hit])

    def record_hits(self, case_id: str, hits: Sequence[Hit]) -> Case:
        """:meth:`record_hit` for every hit of a round, in one transaction."""
        check_case_id(case_id)
        for hit in hits:
            check_id(hit.node_id, "hit node id")
            if hit.org_id:
                check_id(hit.org_id, "hit org id")
            check_contact(hit.contact_handle)
        with self._engine.begin() as conn:
            self._guard(conn, case_id, Action.RECORD_HIT)
            now = self._now()
            for hit in hits:
                conn.execute(
                    sa.delete(case_hits).where(
                        case_hits.c.case_id == case_id,
                        case_hits.c.node_id == hit.node_id,
                        case_hits.c.org_id == hit.org_id,
                    )
                )
                conn.execute(
                    sa.insert(case_hits).values(
                        case_id=case_id,
                        node_id=hit.node_id,
                        org_id=hit.org_id,
                        contact_handle=hit.contact_handle,
                        recorded_at=now,
                    )
                )
            return self._load(conn, case_id)

    def active_hit(
        self, subject: str, *, contact_handle: str, exclude_case_id: str | None = None
    ) -> HitAnswer:
        """Is ``subject`` (node-domain pseudonym) in an active case here? Federated hit/no-hit.

        On a hit the answer carries ``contact_handle``, the node's
        procesregisseur function from its configuration, and nothing else.
        """
        check_pseudonym(subject)
        check_contact(contact_handle)
        query = sa.select(cases.c.id).where(
            cases.c.subject_pseudonym == subject,
            cases.c.phase.in_([p.value for p in OPEN_PHASES]),
        )
        if exclude_case_id is not None:
            query = query.where(cases.c.id != check_case_id(exclude_case_id))
        with self._engine.connect() as conn:
            found = conn.execute(query.limit(1)).first() is not None
        return HitAnswer(True, contact_handle) if found else HitAnswer(False, "")
