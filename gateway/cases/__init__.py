"""The node's case registry (DESIGN.md §4, issue #6): cases, phases, grounds, hits, facts.

See README.md in this directory for the model and its rules.
"""

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
)
from gateway.cases.signals import SignalCount, count_cases
from gateway.cases.status import case_status
from gateway.cases.store import CaseRegistry, HitAnswer, ReferralResult, StoredFact, utc_now
from gateway.cases.vault import FactVault
from policy.vocabulary import OPEN_PHASES, Phase

__all__ = [
    "OPEN_PHASES",
    "REJECTED_OUTCOME",
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
