"""The node's case registry: referrals and phase transitions, over the parts of a case.

:class:`CaseRegistry` is synchronous over an Engine handed in; the flows call
it through ``asyncio.to_thread``. This module holds what changes a case's
phase (referral, triage, acceptance, rejection, closure, hand-over); the
rows a case collects on the way live with their own part: participants,
grounds, hits, bottleneck tags, facts and retention. Which action is legal
in which phase is :data:`gateway.cases.phases.TRANSITIONS`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from gateway.cases.bottlenecks import BottleneckStore
from gateway.cases.errors import CaseError, IllegalTransitionError, ReferralConflictError
from gateway.cases.facts import FactStore
from gateway.cases.grounds import GroundStore
from gateway.cases.hits import HitStore
from gateway.cases.listing import CaseListing
from gateway.cases.model import (
    REJECTED_OUTCOME,
    Case,
    Participant,
    Referral,
    Transfer,
    check_case_id,
    check_code,
)
from gateway.cases.participants import ParticipantStore, checked_participants
from gateway.cases.phases import OPENING_PHASE, TRANSITIONS, Action
from gateway.cases.retention import RetentionStore, retain_until
from gateway.cases.tables import (
    case_bottlenecks,
    case_grounds,
    case_hits,
    case_participants,
    case_transfers,
    cases,
)
from gateway.storage.clock import utc_now

# utc_now stays importable from here: the task broker and store import it so.
__all__ = ["CaseRegistry", "OpenReferral", "ReferralResult", "utc_now"]


@dataclass(frozen=True)
class ReferralResult:
    """The case a referral opened, or on a retry had opened."""

    case: Case
    created: bool
    """False when the referral was a retry of an earlier one."""


@dataclass(frozen=True)
class OpenReferral:
    """A case still in the opening phase, as start-up looks for its referral's audit record."""

    case_id: str
    subject: str
    opened_at: datetime


class CaseRegistry(
    ParticipantStore,
    GroundStore,
    HitStore,
    BottleneckStore,
    FactStore,
    RetentionStore,
    CaseListing,
):
    """Cases of one node, stored through ``engine``; facts sealed by ``vault``.

    Construct it as ``CaseRegistry(engine, vault, clock=utc_now)``: ``engine``
    with its schema migrated, ``clock`` giving timezone-aware UTC times.
    """

    def get(self, case_id: str) -> Case:
        """The case ``case_id``; CaseNotFoundError if there is none."""
        check_case_id(case_id)
        with self._engine.connect() as conn:
            return self._load(conn, case_id)

    # -- referral ------------------------------------------------------------

    def refer(self, referral: Referral) -> ReferralResult:
        """Open a case for ``referral`` (aanmelding), or return the one a retry refers to.

        The pair (referrer org id, idempotency key) is unique: a retry returns
        the existing case with ``created=False``, also when two retries race
        (the unique constraint decides). A retry whose payload differs from
        the first is refused with ReferralConflictError.
        """
        referral = referral.check()
        # Look first, outside the insert's transaction: a retry then costs a
        # read, not a failed insert and a rollback.
        existing = self._find_referral(referral)
        if existing is None:
            case_id = uuid.uuid4().hex
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        sa.insert(cases).values(
                            id=case_id,
                            version=1,
                            activity=referral.activity,
                            theme=referral.theme,
                            phase=OPENING_PHASE.value,
                            referrer_org_id=referral.referrer_org_id,
                            referrer_org_type=referral.referrer_org_type,
                            idempotency_key=referral.idempotency_key,
                            external_ref=referral.external_ref,
                            subject_pseudonym=referral.subject,
                            criteria=list(referral.criteria),
                            reason_codes=list(referral.reason_codes),
                            triage_reason="",
                            outcome="",
                            opened_at=self._now(),
                        )
                    )
                    return ReferralResult(self._load(conn, case_id), created=True)
            except IntegrityError:
                # A racing retry inserted first; the unique constraint decided.
                existing = self._find_referral(referral)
                if existing is None:
                    # Not the idempotency key: the driver's message would
                    # carry the row's values, the subject among them.
                    raise CaseError("the database refused the new case") from None
        differs = [
            name
            for name, first, retry in (
                ("referrer_org_type", existing.referrer_org_type, referral.referrer_org_type),
                ("subject", existing.subject, referral.subject),
                ("activity", existing.activity, referral.activity),
                ("theme", existing.theme, referral.theme),
                ("criteria", existing.criteria, referral.criteria),
                ("reason_codes", existing.reason_codes, referral.reason_codes),
                ("external_ref", existing.external_ref, referral.external_ref),
            )
            if first != retry
        ]
        if differs:
            raise ReferralConflictError(
                f"idempotency key already used by this referrer for case {existing.id} "
                f"with a different {', '.join(differs)}; use a new key for a new referral"
            )
        return ReferralResult(existing, created=False)

    def _find_referral(self, referral: Referral) -> Case | None:
        with self._engine.connect() as conn:
            case_id = conn.execute(
                sa.select(cases.c.id).where(
                    cases.c.referrer_org_id == referral.referrer_org_id,
                    cases.c.idempotency_key == referral.idempotency_key,
                )
            ).scalar_one_or_none()
            return None if case_id is None else self._load(conn, case_id)

    def open_referrals(self) -> list[OpenReferral]:
        """Every unpurged case still in the opening phase (aanmelding), oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(cases.c.id, cases.c.subject_pseudonym, cases.c.opened_at)
                .where(cases.c.phase == OPENING_PHASE.value, cases.c.purged_at.is_(None))
                .order_by(cases.c.opened_at, cases.c.id)
            ).all()
        return [OpenReferral(r.id, r.subject_pseudonym or "", r.opened_at) for r in rows]

    def withdraw(self, case_id: str) -> None:
        """Delete a case that was just opened, because its referral could not be audited.

        Only a case still in aanmelding with nothing attached to it can be
        withdrawn; anything else raises IllegalTransitionError.
        """
        allowed = TRANSITIONS[Action.WITHDRAW].allowed
        with self._engine.begin() as conn:
            attached = [
                table.name
                for table in (case_participants, case_grounds, case_hits, case_bottlenecks)
                if conn.execute(
                    sa.select(sa.literal(1)).where(table.c.case_id == case_id).limit(1)
                ).first()
            ]
            deleted = conn.execute(
                sa.delete(cases).where(
                    cases.c.id == case_id, cases.c.phase.in_([p.value for p in allowed])
                )
            ).rowcount
            if attached or deleted != 1:
                # Raising inside begin() rolls the delete back.
                raise IllegalTransitionError(
                    f"case {case_id} cannot be withdrawn: only a new case in aanmelding "
                    "with nothing attached can"
                )

    # -- phase transitions ---------------------------------------------------

    def start_triage(self, case_id: str) -> Case:
        """Move a case from aanmelding to triage."""
        check_case_id(case_id)
        with self._engine.begin() as conn:
            self._guard(conn, case_id, Action.START_TRIAGE, {"triage_at": self._now()})
            return self._load(conn, case_id)

    def accept(
        self, case_id: str, *, reason_code: str, participants: Iterable[Participant]
    ) -> Case:
        """Accept at triage: triage -> casusoverleg, naming the participants."""
        check_case_id(case_id)
        check_code(reason_code, "reason_code")
        named = checked_participants(participants)
        now = self._now()
        with self._engine.begin() as conn:
            self._guard(
                conn, case_id, Action.ACCEPT, {"accepted_at": now, "triage_reason": reason_code}
            )
            self._insert_participants(conn, case_id, named, now)
            return self._load(conn, case_id)

    def reject(self, case_id: str, *, reason_code: str, retention_days: int) -> Case:
        """Reject at triage: triage -> afschaling, outcome "niet-ontvankelijk"."""
        check_case_id(case_id)
        check_code(reason_code, "reason_code")
        now = self._now()
        values = {
            "outcome": REJECTED_OUTCOME,
            "triage_reason": reason_code,
            "closed_at": now,
            "retain_until": retain_until(now, retention_days),
        }
        with self._engine.begin() as conn:
            self._guard(conn, case_id, Action.REJECT, values)
            return self._load(conn, case_id)

    def close(self, case_id: str, *, outcome: str, retention_days: int) -> Case:
        """Close (afschaling): casusoverleg -> afschaling with ``outcome``; starts retention."""
        check_case_id(case_id)
        check_code(outcome, "outcome")
        now = self._now()
        values = {
            "outcome": outcome,
            "closed_at": now,
            "retain_until": retain_until(now, retention_days),
        }
        with self._engine.begin() as conn:
            self._guard(conn, case_id, Action.CLOSE, values)
            return self._load(conn, case_id)

    def hand_over(
        self, case_id: str, transfer: Transfer, *, outcome: str, retention_days: int
    ) -> Case:
        """Close an open case as handed over to ``transfer.node_id``, recording the transfer.

        aanmelding|triage|casusoverleg -> afschaling with ``outcome``, and the
        transfer row, in one transaction; starts the retention clock.
        """
        check_case_id(case_id)
        transfer.check()
        check_code(outcome, "outcome")
        now = self._now()
        values = {
            "outcome": outcome,
            "closed_at": now,
            "retain_until": retain_until(now, retention_days),
        }
        with self._engine.begin() as conn:
            self._guard(conn, case_id, Action.HAND_OVER, values)
            conn.execute(
                sa.insert(case_transfers).values(
                    case_id=case_id,
                    node_id=transfer.node_id,
                    idempotency_key=transfer.idempotency_key,
                    reason_code=transfer.reason_code,
                    remote_case_id=transfer.remote_case_id,
                    transferred_at=now,
                )
            )
            return self._load(conn, case_id)

    def transfer_of(self, case_id: str) -> Transfer | None:
        """The hand-over of ``case_id``, or None if it was not handed over (or is purged)."""
        check_case_id(case_id)
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(case_transfers).where(case_transfers.c.case_id == case_id)
            ).first()
        if row is None:
            return None
        return Transfer(
            node_id=row.node_id,
            idempotency_key=row.idempotency_key,
            reason_code=row.reason_code,
            remote_case_id=row.remote_case_id,
            transferred_at=row.transferred_at,
        )
