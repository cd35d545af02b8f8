"""Bottleneck tags of a case (e.g. ``huisvesting``): what signalling counts cases by."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from gateway.cases.base import CaseStoreBase
from gateway.cases.model import Case, check_case_id, check_codes
from gateway.cases.phases import Action
from gateway.cases.tables import case_bottlenecks


class BottleneckStore(CaseStoreBase):
    """The registry's bottleneck tag rows."""

    def set_bottlenecks(self, case_id: str, tags: Iterable[str]) -> Case:
        """Replace the bottleneck tags of a case (any phase, until the purge keeps them)."""
        check_case_id(case_id)
        wanted = check_codes(tags, "bottleneck tags")
        with self._engine.begin() as conn:
            self._guard(conn, case_id, Action.SET_BOTTLENECKS)
            conn.execute(sa.delete(case_bottlenecks).where(case_bottlenecks.c.case_id == case_id))
            if wanted:
                conn.execute(
                    sa.insert(case_bottlenecks), [{"case_id": case_id, "tag": t} for t in wanted]
                )
            return self._load(conn, case_id)
