"""The node's case registry: referrals, phase transitions, grounds, hits and the fact vault.

Synchronous over an Engine handed in; the gRPC layer calls it through
``asyncio.to_thread``. Every mutation is one transaction that starts with a
guarded ``UPDATE`` of the case row (``WHERE phase IN (allowed)``): the guard
decides legality atomically, takes the row's write lock so concurrent
mutations of one case serialise, and on failure the whole transaction rolls
back, so no case is ever half-written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from google.protobuf.message import DecodeError
from schakel.v1 import common_pb2
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from gateway.cases.errors import (
    CaseError,
    CaseInputError,
    CaseNotFoundError,
    FactIntegrityError,
    IllegalTransitionError,
    ReferralConflictError,
)
from gateway.cases.model import (
    REJECTED_OUTCOME,
    Case,
    Ground,
    GroundKind,
    Hit,
    Participant,
    Referral,
    Transfer,
    check_case_id,
    check_code,
    check_codes,
    check_contact,
    check_external_ref,
    check_id,
    check_pseudonym,
)
from gateway.cases.tables import (
    case_bottlenecks,
    case_facts,
    case_grounds,
    case_hits,
    case_participants,
    case_transfers,
    cases,
)
from gateway.cases.vault import FactVault
from policy.vocabulary import OPEN_PHASES, Phase

Clock = Callable[[], datetime]

MAX_FACT_BYTES = 64 * 1024
"""Upper bound on one serialized fact; a minimised fact is a few hundred bytes."""

MAX_RETENTION_DAYS = 100 * 366


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


def utc_now() -> datetime:
    """The current time in UTC, the registry's default clock."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReferralResult:
    """The case a referral opened, or on a retry had opened."""

    case: Case
    created: bool
    """False when the referral was a retry of an earlier one."""


@dataclass(frozen=True)
class StoredFact:
    """A fact from the vault, decrypted."""

    id: str
    category: str
    provider_node_id: str
    provider_org_id: str
    fact: common_pb2.Fact
    received_at: datetime


@dataclass(frozen=True)
class HitAnswer:
    """The answer to "is this subject in an active case here?"."""

    hit: bool
    contact_handle: str
    """The procesregisseur's contact on a hit, empty otherwise."""


def _phases(phases: frozenset[Phase]) -> str:
    return ", ".join(p.value for p in Phase if p in phases)


def _check_retention(days: int) -> int:
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_RETENTION_DAYS:
        raise CaseInputError(
            f"retention_days must be a whole number from 0 to {MAX_RETENTION_DAYS}"
        )
    return days


class CaseRegistry:
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

    # -- reading ---------------------------------------------------------

    def get(self, case_id: str) -> Case:
        """The case ``case_id``; CaseNotFoundError if there is none."""
        check_case_id(case_id)
        with self._engine.connect() as conn:
            return self._load(conn, case_id)

    def _load(self, conn: Connection, case_id: str) -> Case:
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

    # -- the guard every mutation starts with --------------------------------

    def _guard(
        self,
        conn: Connection,
        case_id: str,
        allowed: frozenset[Phase],
        action: str,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """Bump the case's version (and set ``values``) only if its phase is ``allowed``.

        Raises CaseNotFoundError or IllegalTransitionError, naming the current phase and
        the action, when the update matched no row.
        """
        result = conn.execute(
            sa.update(cases)
            .where(
                cases.c.id == case_id,
                cases.c.phase.in_([p.value for p in allowed]),
                cases.c.purged_at.is_(None),
            )
            .values(version=cases.c.version + 1, **(values or {}))
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
                f"cannot {action} case {case_id}: its retention period ended and it was purged"
            )
        raise IllegalTransitionError(
            f"cannot {action} case {case_id}: it is in phase {row.phase}, "
            f"and {action} is allowed only in phase {_phases(allowed)}"
        )

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
                            phase=Phase.AANMELDING.value,
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

    def withdraw(self, case_id: str) -> None:
        """Delete a case that was just opened, because its referral could not be audited.

        Only a case still in aanmelding with nothing attached to it can be
        withdrawn; anything else raises IllegalTransitionError.
        """
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
                    cases.c.id == case_id, cases.c.phase == Phase.AANMELDING.value
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
            self._guard(
                conn,
                case_id,
                frozenset({Phase.AANMELDING}),
                "start triage of",
                {"phase": Phase.TRIAGE.value, "triage_at": self._now()},
            )
            return self._load(conn, case_id)

    def accept(
        self, case_id: str, *, reason_code: str, participants: Iterable[Participant]
    ) -> Case:
        """Accept at triage: aanmelding|triage -> casusoverleg, naming the participants."""
        check_case_id(case_id)
        check_code(reason_code, "reason_code")
        named = tuple(p.check() for p in participants)
        if not named:
            raise CaseInputError("accepting a case needs at least one participant")
        keys = [(p.node_id, p.org_id) for p in named]
        if len(set(keys)) != len(keys):
            raise CaseInputError("a participant (node id, org id) is listed more than once")
        now = self._now()
        with self._engine.begin() as conn:
            self._guard(
                conn,
                case_id,
                frozenset({Phase.AANMELDING, Phase.TRIAGE}),
                "accept at triage",
                {
                    "phase": Phase.CASUSOVERLEG.value,
                    "accepted_at": now,
                    "triage_reason": reason_code,
                },
            )
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
            return self._load(conn, case_id)

    def reject(self, case_id: str, *, reason_code: str, retention_days: int) -> Case:
        """Reject at triage: aanmelding|triage -> afschaling, outcome "niet-ontvankelijk"."""
        check_case_id(case_id)
        check_code(reason_code, "reason_code")
        now = self._now()
        with self._engine.begin() as conn:
            self._guard(
                conn,
                case_id,
                frozenset({Phase.AANMELDING, Phase.TRIAGE}),
                "reject at triage",
                {
                    "phase": Phase.AFSCHALING.value,
                    "outcome": REJECTED_OUTCOME,
                    "triage_reason": reason_code,
                    "closed_at": now,
                    "retain_until": now + timedelta(days=_check_retention(retention_days)),
                },
            )
            return self._load(conn, case_id)

    def close(self, case_id: str, *, outcome: str, retention_days: int) -> Case:
        """Close (afschaling): casusoverleg -> afschaling with ``outcome``; starts retention."""
        check_case_id(case_id)
        check_code(outcome, "outcome")
        now = self._now()
        with self._engine.begin() as conn:
            self._guard(
                conn,
                case_id,
                frozenset({Phase.CASUSOVERLEG}),
                "close",
                {
                    "phase": Phase.AFSCHALING.value,
                    "outcome": outcome,
                    "closed_at": now,
                    "retain_until": now + timedelta(days=_check_retention(retention_days)),
                },
            )
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
        with self._engine.begin() as conn:
            self._guard(
                conn,
                case_id,
                OPEN_PHASES,
                "hand over",
                {
                    "phase": Phase.AFSCHALING.value,
                    "outcome": outcome,
                    "closed_at": now,
                    "retain_until": now + timedelta(days=_check_retention(retention_days)),
                },
            )
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

    # -- changes within a phase ----------------------------------------------

    def add_participant(self, case_id: str, participant: Participant) -> Case:
        """Add a participant in casusoverleg; adding one already there changes nothing."""
        check_case_id(case_id)
        participant.check()
        with self._engine.begin() as conn:
            self._guard(conn, case_id, frozenset({Phase.CASUSOVERLEG}), "add a participant to")
            present = conn.execute(
                sa.select(case_participants.c.org_type).where(
                    case_participants.c.case_id == case_id,
                    case_participants.c.node_id == participant.node_id,
                    case_participants.c.org_id == participant.org_id,
                )
            ).scalar_one_or_none()
            if present is None:
                conn.execute(
                    sa.insert(case_participants).values(
                        case_id=case_id,
                        node_id=participant.node_id,
                        org_id=participant.org_id,
                        org_type=participant.org_type,
                        added_at=self._now(),
                    )
                )
            elif present != participant.org_type:
                raise CaseInputError(
                    f"participant {participant.org_id} at {participant.node_id} is already in "
                    f"case {case_id} with org type {present}"
                )
            return self._load(conn, case_id)

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
        check_external_ref(evidence_ref)
        with self._engine.begin() as conn:
            self._guard(conn, case_id, OPEN_PHASES, "record a ground for")
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

    def set_bottlenecks(self, case_id: str, tags: Iterable[str]) -> Case:
        """Replace the bottleneck tags of a case (any phase, until the purge keeps them)."""
        check_case_id(case_id)
        wanted = check_codes(tags, "bottleneck tags")
        with self._engine.begin() as conn:
            self._guard(conn, case_id, frozenset(Phase), "set bottleneck tags of")
            conn.execute(sa.delete(case_bottlenecks).where(case_bottlenecks.c.case_id == case_id))
            if wanted:
                conn.execute(
                    sa.insert(case_bottlenecks), [{"case_id": case_id, "tag": t} for t in wanted]
                )
            return self._load(conn, case_id)

    # -- hit/no-hit ----------------------------------------------------------

    def record_hit(self, case_id: str, hit: Hit) -> Case:
        """Record (or refresh) who knows the subject of an open case, and whom to contact."""
        check_case_id(case_id)
        check_id(hit.node_id, "hit node id")
        if hit.org_id:
            check_id(hit.org_id, "hit org id")
        check_contact(hit.contact_handle)
        with self._engine.begin() as conn:
            self._guard(conn, case_id, OPEN_PHASES, "record a hit for")
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
                    recorded_at=self._now(),
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

    # -- the fact vault ------------------------------------------------------

    def store_fact(self, case_id: str, fact: common_pb2.Fact, *, provider: Participant) -> str:
        """Seal and store a fact delivered for a case in casusoverleg; returns the fact id."""
        check_case_id(case_id)
        if not isinstance(fact, common_pb2.Fact):
            raise CaseInputError("fact must be a schakel.v1.Fact message")
        check_code(fact.category, "fact category")
        provider.check()
        plaintext = fact.SerializeToString(deterministic=True)
        if len(plaintext) > MAX_FACT_BYTES:
            raise CaseInputError(f"fact is larger than {MAX_FACT_BYTES} bytes serialized")
        fact_id = uuid.uuid4().hex
        sealed = self._vault.seal(case_id, fact.category, fact_id, plaintext)
        with self._engine.begin() as conn:
            self._guard(conn, case_id, frozenset({Phase.CASUSOVERLEG}), "store a fact for")
            conn.execute(
                sa.insert(case_facts).values(
                    id=fact_id,
                    case_id=case_id,
                    category=fact.category,
                    provider_node_id=provider.node_id,
                    provider_org_id=provider.org_id,
                    key_id=self._vault.key_id,
                    sealed=sealed,
                    received_at=self._now(),
                )
            )
        return fact_id

    def facts(self, case_id: str, category: str | None = None) -> list[StoredFact]:
        """The decrypted facts of a case, oldest first, optionally of one category.

        Raises FactIntegrityError when a row fails authentication.
        """
        check_case_id(case_id)
        query = sa.select(case_facts).where(case_facts.c.case_id == case_id)
        if category is not None:
            query = query.where(case_facts.c.category == check_code(category, "category"))
        with self._engine.connect() as conn:
            if conn.execute(sa.select(cases.c.id).where(cases.c.id == case_id)).first() is None:
                raise CaseNotFoundError(f"no case {case_id} at this node")
            rows = conn.execute(query.order_by(case_facts.c.received_at, case_facts.c.id)).all()
        out = []
        for row in rows:
            plaintext = self._vault.open(row.case_id, row.category, row.id, row.sealed, row.key_id)
            fact = common_pb2.Fact()
            try:
                fact.ParseFromString(plaintext)
            except DecodeError:
                raise FactIntegrityError(
                    f"fact {row.id} of case {case_id} decrypted but is not a schakel.v1.Fact"
                ) from None
            if fact.category != row.category:
                raise FactIntegrityError(
                    f"fact {row.id} of case {case_id} carries another category than its row"
                )
            out.append(
                StoredFact(
                    row.id,
                    row.category,
                    row.provider_node_id,
                    row.provider_org_id,
                    fact,
                    row.received_at,
                )
            )
        return out

    # -- retention -----------------------------------------------------------

    def purge_expired(self, now: datetime | None = None) -> list[str]:
        """Purge every closed case whose retention ended at or before ``now``; return their ids.

        Facts, participants, grounds, hits and a hand-over's record are deleted; the subject
        pseudonym, referrer, idempotency key, reference, criteria and reason
        codes are cleared. The skeleton stays for signalling: theme, phase,
        outcome, triage reason, bottleneck tags and dates. Each case is purged
        in its own transaction, so an interrupted purge leaves whole cases.
        """
        at = now if now is not None else self._now()
        if at.tzinfo is None:
            raise CaseInputError("purge time must be timezone-aware")
        due = cases.c.retain_until <= at
        with self._engine.connect() as conn:
            ids = list(
                conn.execute(
                    sa.select(cases.c.id)
                    .where(due, cases.c.purged_at.is_(None))
                    .order_by(cases.c.id)
                ).scalars()
            )
        purged = []
        for case_id in ids:
            with self._engine.begin() as conn:
                claimed = conn.execute(
                    sa.update(cases)
                    .where(cases.c.id == case_id, due, cases.c.purged_at.is_(None))
                    .values(
                        version=cases.c.version + 1,
                        referrer_org_id=None,
                        referrer_org_type=None,
                        idempotency_key=None,
                        external_ref=None,
                        subject_pseudonym=None,
                        criteria=None,
                        reason_codes=None,
                        purged_at=at,
                    )
                ).rowcount
                if claimed != 1:
                    continue
                for table in (
                    case_facts,
                    case_participants,
                    case_grounds,
                    case_hits,
                    case_transfers,
                ):
                    conn.execute(sa.delete(table).where(table.c.case_id == case_id))
            purged.append(case_id)
        return purged
