"""What a partner system must answer, whatever its data source.

An adapter runs on the partner's side. The runner hands it the partner's own
domain pseudonym (lowercase hex) of the subject of each task; the adapter
looks that up in its pseudonym index and answers from its own data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from schakel.v1 import common_pb2, partner_pb2

ContactHandle = str
"""A function mailbox or phone number to contact about a subject; never a person's data."""


@dataclass(frozen=True)
class SubjectRow:
    """One local record and the identifier it is about, as input to the pseudonym index.

    The identifier value is left out of ``repr`` so that a row that ends up in
    a log line or a traceback does not carry a BSN.
    """

    local_key: str
    id_type: str
    id_value: str = field(repr=False)


DeliveryHandler = Callable[[Sequence[str], partner_pb2.PartnerTask], None]
"""Receives released facts: the local record keys of the subject (empty when the
subject is not in the partner's index) and the FACT_DELIVERY task."""


@runtime_checkable
class Adapter(Protocol):
    """The interface a partner data source implements to take part in Schakel."""

    def subjects(self) -> Iterable[SubjectRow]:
        """Every local record with its identifier, to build the pseudonym index from."""
        ...

    def known(self, pseudonym_hex: str) -> ContactHandle | None:
        """The contact handle when the subject is known to the partner, else None."""
        ...

    def facts(self, pseudonym_hex: str, categories: Sequence[str]) -> list[common_pb2.Fact]:
        """The partner's facts about the subject, only of the given categories."""
        ...

    def deliver(self, pseudonym_hex: str, task: partner_pb2.PartnerTask) -> None:
        """Take in facts the node released to this partner (a FACT_DELIVERY task)."""
        ...
