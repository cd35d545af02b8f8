"""The deadline of one call, and the shares of it a step hands to its questions and deliveries.

A caller gives a call its deadline twice over: the gRPC deadline of the call
itself, and for some calls a ``deadline_ms`` field. The rpc layer hands the
first to :func:`start_call`; a flow then makes its :class:`Deadline` with
:meth:`Deadline.of_call`, which ends at the sooner of the two, less
:data:`ANSWER_MARGIN_SECONDS` to write the last audit records and answer.

Everything a step sends out (questions to partners and peers, deliveries)
runs in parallel under that one deadline, so a peer that hangs costs the
call its deadline once, not once per recipient; what did not arrive by then
is named in the answer.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass

ANSWER_MARGIN_SECONDS = 0.15
"""Kept back from the caller's gRPC deadline: the answer must leave before it ends."""
DELIVERY_SHARE = 0.2
"""The part of a step's deadline kept for delivering what its questions brought."""
MAX_DELIVERY_RESERVE_SECONDS = 1.0
"""Deliveries are one hop each; a long deadline keeps at most this much back for them."""

_call_end: ContextVar[float | None] = ContextVar("schakel_call_deadline", default=None)


def start_call(time_remaining: float | None) -> None:
    """Note the gRPC deadline of the call being handled: seconds left, None when there is none."""
    _call_end.set(None if time_remaining is None else time.monotonic() + time_remaining)


@dataclass(frozen=True)
class Deadline:
    """A moment on the monotonic clock by which a step must be done."""

    end: float
    """``time.monotonic()`` at the deadline."""

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """``seconds`` from now, whatever call is under way (background work)."""
        return cls(time.monotonic() + seconds)

    @classmethod
    def of_call(cls, seconds: float) -> Deadline:
        """``seconds`` from now, or sooner when the call's gRPC deadline ends first.

        The gRPC deadline is shortened by :data:`ANSWER_MARGIN_SECONDS`, so the
        answer (naming what did not arrive) reaches the caller before it gives up.
        """
        end = time.monotonic() + seconds
        call_end = _call_end.get()
        if call_end is not None:
            end = min(end, call_end - ANSWER_MARGIN_SECONDS)
        return cls(end)

    def left(self) -> float:
        """Seconds until the deadline; 0 once it has passed."""
        return max(self.end - time.monotonic(), 0.0)

    @property
    def passed(self) -> bool:
        """True once the deadline has passed."""
        return time.monotonic() >= self.end

    def for_questions(self) -> Deadline:
        """The earlier deadline for questions, keeping a share of what is left for deliveries."""
        left = self.left()
        return Deadline(self.end - min(left * DELIVERY_SHARE, MAX_DELIVERY_RESERVE_SECONDS))


__all__ = [
    "ANSWER_MARGIN_SECONDS",
    "DELIVERY_SHARE",
    "MAX_DELIVERY_RESERVE_SECONDS",
    "Deadline",
    "start_call",
]
