"""The phases in which the regie may take the steps the registry does not itself record.

The registry decides every change of a case in its own guarded transaction
(accept, close, add a participant, record a ground, ...). Two steps of the
procesregisseur change no case row before they reach outside the node: a
hit/no-hit round asks partners and peer nodes, and an uitvraag asks the
participants for facts. Their phase rule must hold before the first
question leaves, so it is checked here, against the case as read, and
refused the way the registry refuses an illegal transition.
"""

from __future__ import annotations

from enum import StrEnum

from gateway.cases.errors import IllegalTransitionError
from gateway.cases.model import Case
from policy.vocabulary import Phase


class Step(StrEnum):
    """A step of the regie that asks others about a case; the value names it in a message."""

    HIT_NO_HIT = "hit/no-hit"
    UITVRAAG = "uitvraag"


PHASES: dict[Step, tuple[Phase, ...]] = {
    # Whether someone knows the person is asked before the case meeting.
    Step.HIT_NO_HIT: (Phase.AANMELDING, Phase.TRIAGE),
    # Facts only in casusoverleg: the gate where data minimisation allows them.
    Step.UITVRAAG: (Phase.CASUSOVERLEG,),
}
"""Each step and the phases in which it may be taken."""


def check_step(case: Case, step: Step) -> None:
    """Raise IllegalTransitionError unless ``case`` is in a phase where ``step`` may be taken."""
    allowed = PHASES[step]
    if case.phase not in allowed:
        raise IllegalTransitionError(
            f"case {case.id} is in {case.phase.value}; {step.value} needs "
            f"{' or '.join(p.value for p in allowed)}"
        )


__all__ = ["PHASES", "Step", "check_step"]
