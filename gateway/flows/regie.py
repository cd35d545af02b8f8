"""The procesregisseur's action on one case of this node: the case named, checked, audited.

Every CaseService call names a case of this node and the case's own
processing activity (purpose limitation). :func:`begin` makes the call's
:class:`~gateway.flows.crossing.Crossing` first and gives it the subject as
soon as the case is read, so that whatever is refused after that (a
malformed field, another purpose, the wrong phase) is written to the audit
log with the subject and shows in the person's inzage.

A change is audited before it is made (:func:`apply`): the record is
written first, and if the registry then refuses the change a second record
(status ERROR) says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2

from certs.identity import Identity
from gateway.cases import Case
from gateway.cases.model import check_code
from gateway.errors import (
    DeniedError,
    InvalidInputError,
    NotConfiguredError,
    SchakelError,
    WrongStateError,
    quote,
)
from gateway.flows.crossing import Crossing, record, record_refusal

if TYPE_CHECKING:
    from gateway.parts import NodeParts
    from policy.model import Activity, Bundle

SERVICE = "schakel.v1.CaseService"

MIN_DEADLINE_MS = 100
"""The shortest deadline a round or an uitvraag may be given: below it no partner,
peer or audit write can answer, so the call could only fail."""
MAX_DEADLINE_MS = 30_000
"""The longest: the procesregisseur waits for the answer."""


@dataclass(frozen=True)
class CaseCall:
    """What every CaseService request says: who asks, which RPC, for which case and purpose."""

    caller: Identity
    """The procesregisseur, from the verified certificate."""
    method: str
    """The RPC's name, e.g. ``Triage``."""
    purpose: str
    """The processing activity the request names."""
    node_id: str
    case_id: str

    @property
    def name(self) -> str:
        """The full gRPC method, as the audit record names it."""
        return f"{SERVICE}/{self.method}"


@dataclass(frozen=True)
class CaseAction:
    """A call on one case under way: the case as read, its activity, and the call's crossing."""

    call: CaseCall
    case: Case
    activity: Activity
    bundle: Bundle
    crossing: Crossing

    @property
    def retention_days(self) -> int:
        """The retention a closure starts; the registry keeps facts and links on one clock."""
        retention = self.activity.retention
        return max(retention.facts_days, retention.links_days)


async def begin(parts: NodeParts, call: CaseCall, categories: tuple[str, ...] = ()) -> CaseAction:
    """The case ``call`` names, checked against its purpose, with the call's crossing.

    Raises InvalidInputError for a missing or malformed reference or purpose,
    NotFoundError for an unknown case, DeniedError for another purpose than
    the case's, and WrongStateError when the policy lacks the case's activity.
    """
    crossing = Crossing(
        name=call.name,
        caller=call.caller,
        activity=call.purpose,
        case_ref=common_pb2.CaseRef(node_id=call.node_id, case_id=call.case_id),
        categories=categories,
    )
    if not call.case_id:
        raise InvalidInputError("case_ref.case_id is required")
    if call.node_id != parts.node_id:
        raise InvalidInputError(
            f"case_ref.node_id is {quote(call.node_id)}; this node is "
            f"{parts.node_id!r} and acts only on its own cases"
        )
    if not call.purpose:
        raise InvalidInputError("purpose.processing_activity_id is required")
    case = await asyncio.to_thread(parts.registry.get, call.case_id)
    crossing.subject = case.subject
    crossing.phase = case.phase.to_proto()
    check_code(call.purpose, "purpose.processing_activity_id")
    if call.purpose != case.activity:
        raise DeniedError(
            f"purpose.processing_activity_id must be the case's activity {case.activity!r}, "
            f"not {quote(call.purpose)}"
        )
    if parts.policy is None:
        raise NotConfiguredError("this node has no policy bundle configured (policy.bundle)")
    bundle = parts.policy.evaluator.policy.bundle
    activity = bundle.activities.get(case.activity)
    if activity is None:
        raise WrongStateError(
            f"the policy bundle in force no longer has activity {case.activity!r}"
        )
    crossing.activity_uri = activity.uri
    return CaseAction(call, case, activity, bundle, crossing)


async def apply(parts: NodeParts, action: CaseAction, change: Callable[[], Case]) -> Case:
    """Audit ``action``, then make ``change`` in the registry; a refusal is audited as well."""
    await record(parts.audit, action.crossing)
    try:
        return await asyncio.to_thread(change)
    except SchakelError:
        await record_refusal(parts.audit, action.crossing)
        raise


def deadline_seconds(deadline_ms: int, default_ms: int) -> float:
    """A request's ``deadline_ms`` in seconds; 0 is ``default_ms``, the rest must be in range."""
    if not deadline_ms:
        return default_ms / 1000
    if not MIN_DEADLINE_MS <= deadline_ms <= MAX_DEADLINE_MS:
        raise InvalidInputError(
            f"deadline_ms must be 0 (the default, {default_ms}) or from {MIN_DEADLINE_MS} "
            f"to {MAX_DEADLINE_MS}, not {deadline_ms}"
        )
    return deadline_ms / 1000


def quote_some(values: Sequence[str], shown: int = 3) -> str:
    """The first ``shown`` of ``values``, each cut short by ``quote``, and how many more."""
    text = ", ".join(quote(v) for v in values[:shown])
    return text + (f" and {len(values) - shown} more" if len(values) > shown else "")


def check_count(values: Sized, limit: int, what: str) -> None:
    """Refuse a list longer than ``limit`` before anything looks at its entries."""
    if len(values) > limit:
        raise InvalidInputError(f"{what}: at most {limit}, not {len(values)}")


__all__ = [
    "MAX_DEADLINE_MS",
    "MIN_DEADLINE_MS",
    "SERVICE",
    "CaseAction",
    "CaseCall",
    "apply",
    "begin",
    "check_count",
    "deadline_seconds",
    "quote_some",
]
