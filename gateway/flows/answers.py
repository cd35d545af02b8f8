"""A partner's side of its tasks: which kinds it takes, its answers, its acknowledgements.

The node hands partners work on their task stream (:mod:`gateway.tasks.broker`).
An answer (AnswerHit, AnswerFacts) must name an open task sent to the
caller, of the kind the call answers, with the task's purpose and case. It
is then judged (a hit answer: category ``bekend`` under policy; facts: only
the categories asked), audited, and only then handed to the flow that asked.
The uitvraag that asked for facts judges and minimises them per recipient.

Once the task is claimed, the call is about the task's subject: its crossing
is made then, before the answer is checked, so a refused answer is recorded
with the subject and shows in that person's inzage. A call that names no
open task of the caller is about no one and is refused without a record.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2, partner_pb2

from certs.identity import Identity
from gateway.cases import CaseNotFoundError
from gateway.cases.model import check_code, check_contact
from gateway.errors import InvalidInputError, WrongStateError, quote
from gateway.flows.crossing import Crossing, record
from gateway.tasks.broker import PendingTask, TaskKindError, Withheld
from policy.evaluator import Outcome, Request
from policy.minimise import MAX_CONTACT_LENGTH
from policy.text import TextError, check_fact_text
from policy.vocabulary import BEKEND, PROCESREGISSEUR, REGIE, phase_name

if TYPE_CHECKING:
    from gateway.parts import NodeParts

SERVICE = "schakel.v1.PartnerService"
TASK_KINDS = frozenset(
    {
        partner_pb2.TASK_KIND_HIT_QUERY,
        partner_pb2.TASK_KIND_FACT_QUERY,
        partner_pb2.TASK_KIND_FACT_DELIVERY,
    }
)
MAX_FACTS = 100
"""Facts one answer may carry."""
MAX_FIELDS = 64
"""Fields one fact may carry."""
MAX_TEXT = MAX_CONTACT_LENGTH
"""Characters of one text value: the longest kind of text a fact holds is a contact."""

# The node makes uuid4 hex ids; any short id of this form is looked up, so an
# unknown one is "not found", while a malformed one is bad input.
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def task_kinds(
    kinds: Iterable[partner_pb2.TaskKind.ValueType],
) -> frozenset[partner_pb2.TaskKind.ValueType]:
    """The task kinds a ReceiveTasks stream asks for (empty: all of them)."""
    asked = frozenset(kinds)
    unknown = sorted(k for k in asked if k not in TASK_KINDS)
    if unknown:
        raise InvalidInputError(
            f"kinds: {quote(', '.join(map(str, unknown)))} are not task kinds; "
            "use HIT_QUERY, FACT_QUERY, FACT_DELIVERY"
        )
    return asked


def check_task_id(task_id: str) -> str:
    """``task_id`` if it can name a task; InvalidInputError otherwise."""
    if not task_id:
        raise InvalidInputError("task_id is required")
    if not _TASK_ID.match(task_id):
        raise InvalidInputError(
            "task_id must be 1-64 letters, digits, '_' or '-', as the task carried it"
        )
    return task_id


async def answer_hit(
    parts: NodeParts, caller: Identity, request: partner_pb2.AnswerHitRequest
) -> None:
    """Take a hit/no-hit answer: check it, judge ``bekend`` under policy, audit, hand on."""
    pending = await _claim(parts, caller, request.task_id)
    crossing = _crossing(parts, "AnswerHit", pending, caller, (BEKEND,))
    _check_task(request, pending.task, partner_pb2.TASK_KIND_HIT_QUERY)
    if request.known:
        check_contact(request.contact_handle, "contact_handle")
    elif request.contact_handle:
        raise InvalidInputError("contact_handle must be empty when the subject is not known")
    released = False
    if parts.policy is not None:
        decision = parts.policy.decide(
            Request(
                activity=crossing.activity,
                phase=phase_name(pending.task.phase),
                provider=caller.org_type,
                recipient=REGIE,
                roles=frozenset({PROCESREGISSEUR}),
                categories=(BEKEND,),
            )
        )
        crossing.decision = decision.to_proto()
        released = decision.outcome is Outcome.ALLOW
    await _check_case_open(parts, pending.task)
    await record(parts.audit, crossing)
    await parts.tasks.deliver(pending, request if released else Withheld())


async def answer_facts(
    parts: NodeParts, caller: Identity, request: partner_pb2.AnswerFactsRequest
) -> None:
    """Take an uitvraag answer: only categories asked; audited, then handed to the uitvraag."""
    pending = await _claim(parts, caller, request.task_id)
    asked = tuple(pending.task.categories)
    crossing = _crossing(parts, "AnswerFacts", pending, caller, asked)
    _check_task(request, pending.task, partner_pb2.TASK_KIND_FACT_QUERY)
    _check_facts(request.facts)
    extra = sorted({f.category for f in request.facts} - set(asked))
    if extra:
        shown = ", ".join(quote(c) for c in extra[:5])
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        raise InvalidInputError(
            f"facts of categories not asked for: {shown}{more}; "
            f"this task asked for {', '.join(sorted(asked))}"
        )
    crossing.categories = tuple(sorted({f.category for f in request.facts}))
    await _check_case_open(parts, pending.task)
    await record(parts.audit, crossing)
    await parts.tasks.deliver(pending, request)


async def acknowledge(parts: NodeParts, caller: Identity, task_id: str) -> None:
    """Settle a FACT_DELIVERY ``caller`` has stored, so it is never sent again.

    Not audited: the delivery was audited when it was released, and the
    acknowledgement carries no personal data.
    """
    await parts.tasks.acknowledge(check_task_id(task_id), caller.org_id)


async def _claim(parts: NodeParts, caller: Identity, task_id: str) -> PendingTask:
    """The caller's open task ``task_id`` (a TaskError of the broker says why not)."""
    return await parts.tasks.claim_open(check_task_id(task_id), caller.org_id)


def _crossing(
    parts: NodeParts, name: str, pending: PendingTask, caller: Identity, categories: tuple[str, ...]
) -> Crossing:
    """The crossing of an answer to ``pending``: about the task's subject, case and purpose."""
    task = pending.task
    activity_id = task.purpose.processing_activity_id
    uri = ""
    if parts.policy is not None:
        activity = parts.policy.evaluator.policy.bundle.activities.get(activity_id)
        uri = activity.uri if activity is not None else ""
    return Crossing(
        name=f"{SERVICE}/{name}",
        caller=caller,
        activity=activity_id,
        activity_uri=uri,
        phase=task.phase,
        case_ref=task.case_ref,
        subject=pending.subject,
        categories=categories,
        provider=caller.uri,
    )


def _check_task(
    request: partner_pb2.AnswerHitRequest | partner_pb2.AnswerFactsRequest,
    task: partner_pb2.PartnerTask,
    kind: partner_pb2.TaskKind.ValueType,
) -> None:
    """``request`` answers ``task``: a task of ``kind``, with its purpose and case."""
    if task.kind != kind:
        raise TaskKindError(
            f"task {task.task_id} is a {partner_pb2.TaskKind.Name(task.kind)} task; "
            f"this call answers {partner_pb2.TaskKind.Name(kind)} tasks"
        )
    if request.purpose != task.purpose:
        raise InvalidInputError(
            f"purpose must equal the task's purpose ({task.purpose.processing_activity_id!r})"
        )
    if request.case_ref != task.case_ref:
        raise InvalidInputError(f"case_ref must equal the task's case ({task.case_ref.case_id!r})")


async def _check_case_open(parts: NodeParts, task: partner_pb2.PartnerTask) -> None:
    """Refuse an answer about a case of this node that closed after the question left."""
    if task.case_ref.node_id != parts.node_id:
        return  # a peer node's case: that node judges the answer it gets
    try:
        case = await asyncio.to_thread(parts.registry.get, task.case_ref.case_id)
    except CaseNotFoundError:
        return  # no case here to protect; the asker decides what the answer is for
    if not case.is_open:
        raise WrongStateError(
            f"case {case.id} was closed (outcome {case.outcome}) after the question was "
            "asked; answers about it are refused"
        )


def _check_facts(facts: Iterable[common_pb2.Fact]) -> None:
    """Facts of a well-formed answer: bounded in number and size, named by codes."""
    listed = list(facts)
    if len(listed) > MAX_FACTS:
        raise InvalidInputError(f"facts: at most {MAX_FACTS} per answer, not {len(listed)}")
    for i, fact in enumerate(listed):
        where = f"facts[{i}]"
        check_code(fact.category, f"{where}.category")
        if len(fact.fields) > MAX_FIELDS:
            raise InvalidInputError(f"{where}.fields: at most {MAX_FIELDS}, not {len(fact.fields)}")
        for name, value in fact.fields.items():
            check_code(name, f"{where}: each field name")
            if value.WhichOneof("kind") != "text":
                continue
            if len(value.text) > MAX_TEXT:
                raise InvalidInputError(
                    f"{where}.fields[{quote(name)}].text: at most {MAX_TEXT} characters, "
                    f"not {len(value.text)}"
                )
            # A code or a contact (which one is the field's type, checked when it is
            # minimised); free text and identifiers are refused whatever the field.
            try:
                check_fact_text(value.text, f"{where}.fields[{quote(name)}].text")
            except TextError as exc:
                raise InvalidInputError(str(exc)) from None


__all__ = [
    "MAX_FACTS",
    "MAX_FIELDS",
    "MAX_TEXT",
    "TASK_KINDS",
    "acknowledge",
    "answer_facts",
    "answer_hit",
    "check_task_id",
    "task_kinds",
]
