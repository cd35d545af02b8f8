"""Minimise facts before they leave, under the plan of a decision.

Only declared fields can leave, each through its transform: drop, keep,
coarsen a date to month or year, band a number, reduce a value to its
presence (yes/no) or keep a contact handle. Undeclared fields are dropped,
never passed through. A fact of a category the decision did not release is
refused. A declared field with a value of the wrong kind is an error: the
provider is sending something other than what the bundle describes.

Minimising is idempotent and composes: a fact already minimised (a count
already banded, a value already reduced to its presence, a date already
coarsened) passes again under a plan at least as coarse and comes out the
same, so what the node keeps minimised for the regie can be released to
another recipient from the vault. A plan finer than what was kept (``keep``
of a count that was banded) refuses the fact: nothing finer can be made.

Error messages name categories, fields and kinds, never values.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Iterable

from schakel.v1 import common_pb2

from policy.compiler import FieldStep, Plan
from policy.evaluator import Decision
from policy.model import FieldType, PolicyError, Transform, TransformKind
from policy.text import MAX_CONTACT, TextError, check_contact, identifier_in

MAX_CONTACT_LENGTH = MAX_CONTACT
"""A contact handle is a function mailbox, a phone number or a URI (:mod:`policy.text`)."""

_KIND: dict[FieldType, str] = {
    FieldType.CODE: "text",
    FieldType.CONTACT: "text",
    FieldType.NUMBER: "number",
    FieldType.BOOL: "flag",
    FieldType.DATE: "date",
}


_DROP = TransformKind.DROP
_KEEP = TransformKind.KEEP
_KEEP_CONTACT = TransformKind.KEEP_CONTACT
_COARSEN_MONTH = TransformKind.COARSEN_MONTH
_COARSEN_YEAR = TransformKind.COARSEN_YEAR
_BAND = TransformKind.BAND
_PRESENCE = TransformKind.PRESENCE
_CODE, _CONTACT, _DATE, _BOOL = FieldType.CODE, FieldType.CONTACT, FieldType.DATE, FieldType.BOOL


class FactRefusedError(PolicyError):
    """A fact may not leave: its category was not released, or it is malformed."""


def minimise_fact(fact: common_pb2.Fact, decision: Decision) -> common_pb2.Fact:
    """The minimised copy of ``fact`` under ``decision``; the input is left unchanged."""
    result = decision.result(fact.category)
    if result is None:
        raise FactRefusedError(f"category {fact.category!r} was not part of the decision")
    if not result.released or result.plan is None:
        raise FactRefusedError(f"category {fact.category!r} was withheld ({result.reason})")
    return apply_plan(fact, result.plan)


def minimise_facts(facts: Iterable[common_pb2.Fact], decision: Decision) -> list[common_pb2.Fact]:
    """Minimise every fact, or raise on the first refused one (then nothing is returned)."""
    return [minimise_fact(f, decision) for f in facts]


def apply_plan(fact: common_pb2.Fact, plan: Plan) -> common_pb2.Fact:
    """Apply ``plan`` to ``fact``: the core of :func:`minimise_fact`."""
    if fact.category != plan.category:
        raise FactRefusedError(
            f"a fact of {fact.category!r} cannot use the plan for {plan.category!r}"
        )
    out = common_pb2.Fact(category=fact.category)
    # Plain dict and local names: the plan's mapping proxy, the proto map's
    # items() view and enum class look-ups dominate a fact's cost otherwise.
    steps = plan.lookup
    source = fact.fields
    target_fields = out.fields
    for name in source:
        step = steps.get(name)
        if step is None:
            continue
        value = source[name]
        kind = step.transform.kind
        if _already(step, value):
            if kind is not _DROP:
                target_fields[name].CopyFrom(value)
            continue
        _check(fact.category, step, value)
        if kind is _DROP:
            continue
        target = target_fields[name]
        if kind is _KEEP or kind is _KEEP_CONTACT:
            target.CopyFrom(value)
        elif kind is _COARSEN_MONTH:
            target.date.year = value.date.year
            target.date.month = value.date.month
        elif kind is _COARSEN_YEAR:
            target.date.year = value.date.year
        elif kind is _BAND:
            target.text = step.transform.band_label(value.number)
        else:
            target.flag = _present(value)
    return out


@functools.cache
def _labels(transform: Transform) -> frozenset[str]:
    """Every label ``band_label`` can give under ``transform``'s edges."""
    edges = transform.edges
    labels = {f"<{edges[0]}", f"{edges[-1]}+"}
    labels.update(transform.band_label(low) for low in edges[:-1])
    return frozenset(labels)


def _already(step: FieldStep, value: common_pb2.FactValue) -> bool:
    """Whether ``value`` is what ``step`` makes: a band label of its bands, or a presence flag."""
    kind = step.transform.kind
    if kind is _BAND:
        return value.WhichOneof("kind") == "text" and value.text in _labels(step.transform)
    if kind is _PRESENCE and step.type is not _BOOL:
        return value.WhichOneof("kind") == "flag"
    return False


def _present(value: common_pb2.FactValue) -> bool:
    """Whether a value says "yes, there is something": a non-zero count, a code, true, a date."""
    which = value.WhichOneof("kind")
    if which == "number":
        return value.number != 0
    if which == "text":
        return value.text != ""
    if which == "flag":
        return value.flag
    return True


def _where(category: str, step: FieldStep) -> str:
    return f"field {step.name!r} of a {category!r} fact"


def _check(category: str, step: FieldStep, value: common_pb2.FactValue) -> None:
    which = value.WhichOneof("kind")
    expected = _KIND[step.type]
    if which != expected:
        raise FactRefusedError(
            f"{_where(category, step)} must carry a {expected} ({step.type.value}), not {which}"
        )
    ftype = step.type
    if ftype is _CODE:
        if step.values and value.text not in step.values:
            raise FactRefusedError(
                f"{_where(category, step)} carries a code outside the category's value set"
            )
        found = identifier_in(value.text)
        if found is not None:
            raise FactRefusedError(f"{_where(category, step)} holds {found}, not a code")
    elif ftype is _CONTACT:
        try:
            check_contact(value.text, "it")
        except TextError as exc:
            # The text names the rule, never the value.
            raise FactRefusedError(
                f"{_where(category, step)} must be a contact handle ({exc})"
            ) from None
    elif ftype is _DATE:
        d = value.date
        valid = 1 <= d.year <= 9999 and 0 <= d.month <= 12 and d.day >= 0
        if valid and d.day:
            valid = d.month != 0 and d.day <= calendar.monthrange(d.year, d.month)[1]
        if not valid:
            raise FactRefusedError(
                f"{_where(category, step)} is not a valid (possibly coarsened) date"
            )
