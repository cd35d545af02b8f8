"""The node's case registry: cases, phases, grounds, hits, facts.

See README.md in this directory for the model and its rules, and
:mod:`gateway.cases.phases` for the transition table the registry enforces.
"""

from gateway.cases.errors import (
    CaseError,
    CaseInputError,
    CaseNotFoundError,
    FactIntegrityError,
    IllegalTransitionError,
    ReferralConflictError,
)
from gateway.cases.facts import StoredFact
from gateway.cases.hits import HitAnswer
from gateway.cases.model import (
    REJECTED_OUTCOME,
    Case,
    Ground,
    GroundKind,
    Hit,
    Participant,
    Referral,
    Transfer,
)
from gateway.cases.phases import OPENING_PHASE, TRANSITIONS, Action, Move
from gateway.cases.signals import SignalCount, count_cases
from gateway.cases.status import case_status
from gateway.cases.store import CaseRegistry, ReferralResult
from gateway.cases.vault import FactVault
from gateway.storage import utc_now
from policy.vocabulary import OPEN_PHASES, Phase

__all__ = [
    "OPENING_PHASE",
    "OPEN_PHASES",
    "REJECTED_OUTCOME",
    "TRANSITIONS",
    "Action",
    "Case",
    "CaseError",
    "CaseInputError",
    "CaseNotFoundError",
    "CaseRegistry",
    "FactIntegrityError",
    "FactVault",
    "Ground",
    "GroundKind",
    "Hit",
    "HitAnswer",
    "IllegalTransitionError",
    "Move",
    "Participant",
    "Phase",
    "Referral",
    "ReferralConflictError",
    "ReferralResult",
    "SignalCount",
    "StoredFact",
    "Transfer",
    "case_status",
    "count_cases",
    "utc_now",
]
