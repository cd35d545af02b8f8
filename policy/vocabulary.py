"""The words of the ZVH domain, defined once: phases, organisation types, roles, categories.

Everything that names a phase, an organisation type, an officer role or a
fact category takes the name from here: the policy bundle's loader, the
certificate profile, the node's flows and the partner SDK. Phases follow the
proto enum ``schakel.v1.Phase``; their values are the names the policy
bundle uses.
"""

from __future__ import annotations

from enum import StrEnum

from schakel.v1 import common_pb2


class Phase(StrEnum):
    """The phases of the national ZVH process, in order."""

    AANMELDING = "aanmelding"
    TRIAGE = "triage"
    CASUSOVERLEG = "casusoverleg"
    AFSCHALING = "afschaling"

    def to_proto(self) -> common_pb2.Phase.ValueType:
        """The ``schakel.v1.Phase`` value."""
        return common_pb2.Phase.Value(f"PHASE_{self.name}")

    @classmethod
    def from_proto(cls, value: int) -> Phase:
        """The phase of a ``schakel.v1.Phase`` value; ValueError for unspecified or unknown."""
        if value == common_pb2.PHASE_UNSPECIFIED or value not in common_pb2.Phase.values():
            raise ValueError(f"phase {value} is not one of the four case phases")
        return cls[common_pb2.Phase.Name(value).removeprefix("PHASE_")]  # type: ignore[arg-type]


PHASES: tuple[str, ...] = tuple(p.value for p in Phase)
"""The phase names in process order, as the policy bundle writes them."""

OPEN_PHASES = frozenset({Phase.AANMELDING, Phase.TRIAGE, Phase.CASUSOVERLEG})
"""Phases in which a case is active (it counts for federated hit/no-hit)."""


def phase_name(value: int) -> str:
    """The bundle's name for a proto ``schakel.v1.Phase`` value ("" when not a phase)."""
    try:
        return Phase.from_proto(value).value
    except ValueError:
        return ""


REGIE = "zvh"
"""The organisation type of a Zorg- en Veiligheidshuis itself: the regie as a
recipient, and the provider when one node answers another."""

ORG_TYPES = frozenset(
    {
        "politie",
        "om",
        "reclassering",
        "ggz",
        "gemeente",
        "veilig-thuis",
        "dji",
        "rvdk",
        "woningcorporatie",
        REGIE,
    }
)
"""Organisation types a partner (or the ZVH itself) can have."""

PROCESREGISSEUR = "procesregisseur"
"""The officer who runs a case's process at a ZVH."""
FG = "fg"
"""The privacy officer (functionaris gegevensbescherming) of a ZVH."""
OFFICER_ROLES = frozenset({PROCESREGISSEUR, FG})
COLLECTOR_ROLE = "landelijk"
"""The role of the national signals collector."""
ROLES = OFFICER_ROLES | {COLLECTOR_ROLE}

BEKEND = "bekend"
"""Hit/no-hit: is the person known, and who is the contact."""
REFERRAL = "aanmelding"
"""A referral itself (theme and reason codes), sent to the regie."""
OUTCOME = "uitkomst"
"""The outcome code a case closes with, told to its participants."""
TRANSFER = "overdracht"
"""A case handed over to another ZVH."""

FACT_CATEGORIES = frozenset(
    {
        "justitie.antecedenten",
        "justitie.toezicht",
        "detentie",
        "zorg.in_zorg",
        "zorg.crisismaatregel",
        "sociaal.huisvesting",
        "sociaal.inkomen_schulden",
        "sociaal.wmo_jeugd",
        "veiligheid.risico",
        "veiligheid.huiselijk_geweld",
    }
)
"""The fact categories of the first cut; a policy bundle may define more."""

HEALTH_CATEGORIES = frozenset({"zorg.in_zorg", "zorg.crisismaatregel"})
"""Categories that are health data (AVG art. 9): they leave only on a ground."""
