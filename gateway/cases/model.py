"""Values of the case registry: phases, grounds, participants, cases, and input checks.

Every value that enters the registry passes a check here first, so a bad
argument is refused with a message that names the field before anything is
written. Codes (themes, criteria, outcomes, categories, bottleneck tags) are
short machine codes, references and keys are short tokens, contact handles
are an e-mail address, a phone number or an https/tel/mailto URI, and none
holds a BSN or a date (:mod:`policy.text`, the one rule for text): that
keeps content out of columns that are not encrypted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from schakel.v1 import case_pb2

from certs.identity import IdentityError, check_slug
from gateway.cases.errors import CaseInputError
from policy import text
from policy.text import TextError
from policy.vocabulary import OPEN_PHASES, ORG_TYPES, Phase

REJECTED_OUTCOME = "niet-ontvankelijk"
"""The outcome of a case rejected at triage."""


class GroundKind(StrEnum):
    """What lets special-category data cross; values follow ``schakel.v1.GroundKind``."""

    CONSENT = "consent"
    LEGAL_DUTY = "legal_duty"
    CONFLICT_VAN_PLICHTEN = "conflict_van_plichten"

    def to_proto(self) -> case_pb2.GroundKind.ValueType:
        """The ``schakel.v1.GroundKind`` value."""
        return case_pb2.GroundKind.Value(f"GROUND_KIND_{self.name}")

    @classmethod
    def from_proto(cls, value: case_pb2.GroundKind.ValueType) -> GroundKind:
        """The kind of a ``schakel.v1.GroundKind`` value; UNSPECIFIED is refused."""
        if value == case_pb2.GROUND_KIND_UNSPECIFIED or value not in case_pb2.GroundKind.values():
            raise CaseInputError(f"ground kind {value} is not consent, legal duty or conflict")
        return cls[case_pb2.GroundKind.Name(value).removeprefix("GROUND_KIND_")]


@dataclass(frozen=True)
class Participant:
    """A participant (deelnemer): a partner organisation at a node."""

    org_id: str
    org_type: str
    node_id: str

    def check(self) -> Participant:
        """Return self if every field is valid, else raise CaseInputError."""
        check_org(self.org_id, self.org_type, "participant")
        check_id(self.node_id, "participant node id")
        return self


@dataclass(frozen=True)
class Ground:
    """A recorded ground for one fact category and provider organisation."""

    kind: GroundKind
    category: str
    provider_org_id: str
    evidence_ref: str
    recorded_at: datetime


@dataclass(frozen=True)
class Hit:
    """An organisation (or, with empty org_id, a peer node) that knows the subject."""

    org_id: str
    node_id: str
    contact_handle: str


@dataclass(frozen=True)
class Transfer:
    """Where a case was handed over to (overdracht), and under which idempotency key."""

    node_id: str
    """The node that took the case over."""
    idempotency_key: str
    """The key the procesregisseur gave the hand-over; a retry with it returns this transfer."""
    reason_code: str
    remote_case_id: str
    """The case's id at ``node_id``."""
    transferred_at: datetime | None = None
    """Set by the registry when it records the transfer."""

    def check(self) -> Transfer:
        """Return self if every field is valid, else raise CaseInputError."""
        check_id(self.node_id, "transfer node id")
        check_idempotency_key(self.idempotency_key)
        check_code(self.reason_code, "reason_code")
        check_case_id(self.remote_case_id)
        return self


@dataclass(frozen=True)
class Referral:
    """What a referrer submits to open a case (aanmelding)."""

    referrer_org_id: str
    referrer_org_type: str
    idempotency_key: str
    subject: str
    """The subject's pseudonym in the node's own domain, 64 lowercase hex characters."""
    activity: str
    """The processing activity the case is opened for; later requests must name it too."""
    theme: str
    criteria: tuple[str, ...] = ()
    reason_codes: tuple[str, ...] = ()
    external_ref: str = ""

    def check(self) -> Referral:
        """This referral with code lists as tuples; CaseInputError if a field is invalid."""
        check_org(self.referrer_org_id, self.referrer_org_type, "referrer")
        check_idempotency_key(self.idempotency_key)
        check_pseudonym(self.subject)
        check_code(self.activity, "activity")
        check_code(self.theme, "theme")
        check_external_ref(self.external_ref)
        # Callers pass protobuf repeated fields or lists; a retry must compare equal.
        return replace(
            self,
            criteria=check_codes(self.criteria, "criteria"),
            reason_codes=check_codes(self.reason_codes, "reason_codes"),
        )


@dataclass(frozen=True)
class Case:
    """One case as stored. After the retention purge only the skeleton remains.

    The skeleton is theme, phase, outcome, triage reason, bottleneck tags and
    dates; every field that could link to the subject is empty then.
    """

    id: str
    activity: str
    """The processing activity the case was opened for (purpose limitation)."""
    theme: str
    phase: Phase
    referrer_org_id: str
    referrer_org_type: str
    external_ref: str
    subject: str
    """The node-domain pseudonym; empty after the purge."""
    criteria: tuple[str, ...]
    reason_codes: tuple[str, ...]
    triage_reason: str
    outcome: str
    participants: tuple[Participant, ...]
    grounds: tuple[Ground, ...]
    hits: tuple[Hit, ...]
    bottlenecks: tuple[str, ...]
    opened_at: datetime
    triage_at: datetime | None
    accepted_at: datetime | None
    closed_at: datetime | None
    retain_until: datetime | None
    purged_at: datetime | None

    @property
    def is_open(self) -> bool:
        """True while the case is active (not yet in afschaling)."""
        return self.phase in OPEN_PHASES


_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CASE_ID = re.compile(r"^[0-9a-f]{32}$")


def _text(check: Callable[[str, str], str], value: str, what: str) -> str:
    """``value`` if ``check`` (one of :mod:`policy.text`) passes it; CaseInputError otherwise."""
    try:
        return check(value, what)
    except TextError as exc:
        raise CaseInputError(str(exc)) from None


def check_code(value: str, what: str) -> str:
    """A machine code: 1-64 of lowercase letters, digits, '.', '_' or '-'; no BSN or date."""
    return _text(text.check_code, value, what)


def check_codes(values: Iterable[str], what: str) -> tuple[str, ...]:
    """A list of distinct codes; returned as a tuple in the given order."""
    out = tuple(values)
    for value in out:
        check_code(value, f"each of {what}")
    if len(set(out)) != len(out):
        raise CaseInputError(f"{what} lists a code more than once")
    return out


def check_pseudonym(value: str) -> str:
    """A node-domain pseudonym: 64 lowercase hex characters (32 bytes)."""
    if not isinstance(value, str) or not _HEX64.match(value):
        # The value itself stays out of the message: it is personal data.
        raise CaseInputError("subject must be a node-domain pseudonym: 64 lowercase hex digits")
    return value


def check_idempotency_key(value: str, what: str = "idempotency_key") -> str:
    """A key the caller chose: a token (:func:`policy.text.check_token`), no BSN or date."""
    return _text(text.check_token, value, what)


def check_external_ref(value: str, what: str = "external_ref") -> str:
    """A reference of the caller's own: empty, or a token with no BSN or date in it."""
    return _text(text.check_token, value, what) if value != "" else value


def check_contact(value: str, what: str = "contact handle") -> str:
    """A contact handle: an e-mail address, a phone number, or an https/tel/mailto URI."""
    return _text(text.check_contact, value, what)


def check_id(value: str, what: str) -> str:
    """A node or organisation id (the certificate slug rules), holding no BSN or date."""
    try:
        check_slug(value, what)
    except (IdentityError, TypeError):
        # Not str(exc): it echoes the value, and a caller may have put anything there.
        raise CaseInputError(
            f"{what} must be 1-63 lowercase letters, digits or '-', starting with a letter or digit"
        ) from None
    return _text(text.check_no_identifier, value, what)


def check_org(org_id: str, org_type: str, what: str) -> None:
    """An organisation id and a known organisation type."""
    check_id(org_id, f"{what} org id")
    if org_type not in ORG_TYPES:
        raise CaseInputError(f"{what} org type is unknown; known: {', '.join(sorted(ORG_TYPES))}")


def check_case_id(value: str) -> str:
    """A case id as the registry hands them out: 32 lowercase hex characters."""
    if not isinstance(value, str) or not _CASE_ID.match(value):
        raise CaseInputError("case id must be 32 lowercase hex characters")
    return value
