"""The phase rules of a case, once: which action is allowed in which phase, and where it leads.

A referral opens a case in :data:`OPENING_PHASE`. Every other action acts on
an existing case and has one row in :data:`TRANSITIONS`: the phases it is
allowed in and the phase it moves the case to. The registry's guarded update
takes both from here, so the table is the rule, not a description of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from policy.vocabulary import OPEN_PHASES, Phase

OPENING_PHASE = Phase.AANMELDING
"""The phase a referral (aanmelding) opens a case in."""


class Action(StrEnum):
    """What can be done to an existing case; the values are the registry's method names."""

    START_TRIAGE = "start_triage"
    ACCEPT = "accept"
    """Accept at triage, naming the participants."""
    REJECT = "reject"
    """Reject at triage: the case closes as "niet-ontvankelijk"."""
    CLOSE = "close"
    """Afschaling with an outcome code."""
    HAND_OVER = "hand_over"
    """Overdracht to another node: the case closes here."""
    ADD_PARTICIPANT = "add_participant"
    RECORD_GROUND = "record_ground"
    RECORD_HIT = "record_hit"
    STORE_FACT = "store_fact"
    SET_BOTTLENECKS = "set_bottlenecks"
    WITHDRAW = "withdraw"
    """Delete a case just opened whose referral could not be audited."""


@dataclass(frozen=True)
class Move:
    """One row of the table: where an action is allowed and where it leads."""

    allowed: frozenset[Phase]
    """The phases the case must be in."""
    to: Phase | None
    """The phase the case moves to; None when the phase stays (withdraw deletes the case)."""
    phrase: str
    """The action in a refusal's words: "cannot <phrase> case ..."."""


TRANSITIONS: Mapping[Action, Move] = MappingProxyType(
    {
        Action.START_TRIAGE: Move(frozenset({Phase.AANMELDING}), Phase.TRIAGE, "start triage of"),
        # The procesregisseur takes a referral into triage first (national process):
        # a case is decided only once it is there.
        Action.ACCEPT: Move(frozenset({Phase.TRIAGE}), Phase.CASUSOVERLEG, "accept at triage"),
        Action.REJECT: Move(frozenset({Phase.TRIAGE}), Phase.AFSCHALING, "reject at triage"),
        Action.CLOSE: Move(frozenset({Phase.CASUSOVERLEG}), Phase.AFSCHALING, "close"),
        Action.HAND_OVER: Move(OPEN_PHASES, Phase.AFSCHALING, "hand over"),
        Action.ADD_PARTICIPANT: Move(frozenset({Phase.CASUSOVERLEG}), None, "add a participant to"),
        Action.RECORD_GROUND: Move(OPEN_PHASES, None, "record a ground for"),
        Action.RECORD_HIT: Move(OPEN_PHASES, None, "record a hit for"),
        Action.STORE_FACT: Move(frozenset({Phase.CASUSOVERLEG}), None, "store a fact for"),
        # Closed cases keep their tags settable: signalling looks back on them.
        Action.SET_BOTTLENECKS: Move(frozenset(Phase), None, "set bottleneck tags of"),
        Action.WITHDRAW: Move(frozenset({OPENING_PHASE}), None, "withdraw"),
    }
)
"""Every action on an existing case, with the phases it is allowed in and where it leads."""


def phase_list(phases: frozenset[Phase]) -> str:
    """``phases`` in process order, comma-separated, for a message."""
    return ", ".join(p.value for p in Phase if p in phases)
