"""A subject's active case at this node: the case a peer's question about that person meets.

A peer asks about a person, not about a case id it cannot know: the answer
comes from the one case about that subject that is still open here.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.cases.model import check_pseudonym
from gateway.cases.tables import cases
from policy.vocabulary import OPEN_PHASES


def active_case_id(engine: Engine, subject: str) -> str | None:
    """The id of ``subject``'s active case here (the newest if, oddly, several), or None.

    ``subject`` is the node-domain pseudonym; a malformed one raises
    :class:`~gateway.cases.CaseInputError`.
    """
    check_pseudonym(subject)
    query = (
        sa.select(cases.c.id)
        .where(
            cases.c.subject_pseudonym == subject,
            cases.c.phase.in_([p.value for p in OPEN_PHASES]),
        )
        .order_by(cases.c.opened_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        case_id: str | None = conn.execute(query).scalar_one_or_none()
    return case_id
