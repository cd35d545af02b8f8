"""Bottleneck tags on cases: the procesregisseur says why a case is stuck, for signalering.

The procesregisseur sets a case's tags (``huisvesting``, ``zorgplek``, ...);
which tags exist is the policy bundle's ``lists.bottlenecks``, so a region
extends them by signing a new bundle. Tags are codes, never free text, and
the national collector counts them without any personal data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.cases import Case
from gateway.errors import InvalidInputError
from gateway.flows.regie import CaseCall, apply, begin, quote_some
from policy.model import Bundle

if TYPE_CHECKING:
    from gateway.parts import NodeParts

MAX_TAGS = 64
"""The most tags one request may set."""


class BottleneckTagError(InvalidInputError):
    """The tags of a SetBottlenecks request are malformed; the message says what is wrong."""


def check_tags(tags: Sequence[str], bundle: Bundle) -> tuple[str, ...]:
    """``tags`` if each is in the bundle's bottleneck list, once; else BottleneckTagError."""
    if len(tags) > MAX_TAGS:
        raise BottleneckTagError(f"tags: at most {MAX_TAGS}, not {len(tags)}")
    duplicates = sorted({t for t in tags if tags.count(t) > 1})
    if duplicates:
        raise BottleneckTagError(f"tags are listed twice: {quote_some(duplicates)}")
    unknown = [t for t in tags if t not in bundle.bottlenecks]
    if unknown:
        raise BottleneckTagError(
            f"unknown bottleneck tag(s) {quote_some(unknown)}; policy bundle "
            f"{bundle.name} {bundle.version} lists: {', '.join(bundle.bottlenecks)}"
        )
    return tuple(tags)


async def set_bottlenecks(parts: NodeParts, call: CaseCall, tags: Sequence[str]) -> Case:
    """Replace the tags of the case ``call`` names (any phase, until the purge)."""
    action = await begin(parts, call)
    checked = check_tags(tags, action.bundle)
    return await apply(
        parts, action, lambda: parts.registry.set_bottlenecks(action.case.id, checked)
    )


__all__ = ["MAX_TAGS", "BottleneckTagError", "check_tags", "set_bottlenecks"]
