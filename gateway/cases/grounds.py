"""Grounds of a case: the consent, legal duty or conflict van plichten art. 9 data needs."""

from __future__ import annotations

import sqlalchemy as sa

from gateway.cases.base import CaseStoreBase
from gateway.cases.errors import CaseInputError
from gateway.cases.model import (
    Case,
    GroundKind,
    check_case_id,
    check_code,
    check_external_ref,
    check_id,
)
from gateway.cases.phases import Action
from gateway.cases.tables import case_grounds


class GroundStore(CaseStoreBase):
    """The registry's ground rows, each bound to one category and one provider."""

    def record_ground(
        self,
        case_id: str,
        *,
        kind: GroundKind,
        category: str,
        provider_org_id: str,
        evidence_ref: str,
    ) -> Case:
        """Record consent, a legal duty or a conflict van plichten while the case is open."""
        check_case_id(case_id)
        if not isinstance(kind, GroundKind):
            raise CaseInputError("ground kind must be consent, legal_duty or conflict_van_plichten")
        check_code(category, "category")
        check_id(provider_org_id, "provider org id")
        if not evidence_ref:
            raise CaseInputError("evidence_ref is required: the reference of the ground's record")
        check_external_ref(evidence_ref, "evidence_ref")
        with self._engine.begin() as conn:
            self._guard(conn, case_id, Action.RECORD_GROUND)
            conn.execute(
                sa.insert(case_grounds).values(
                    case_id=case_id,
                    kind=kind.value,
                    category=category,
                    provider_org_id=provider_org_id,
                    evidence_ref=evidence_ref,
                    recorded_at=self._now(),
                )
            )
            return self._load(conn, case_id)
