"""Bottleneck tags on cases (issue #7): the body of CaseService.SetBottlenecks.

The procesregisseur sets a case's tags (``huisvesting``, ``zorgplek``, ...);
which tags exist is the policy bundle's ``lists.bottlenecks``, so a region
extends them by signing a new bundle. The node's interceptor has already
checked that the caller is this node's procesregisseur.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
from schakel.v1 import case_pb2, partner_pb2

from gateway.cases import CaseRegistry, case_status
from policy.model import Bundle


class BottleneckTagError(ValueError):
    """A SetBottlenecks request is malformed; the message says what is wrong."""

    code = grpc.StatusCode.INVALID_ARGUMENT


def check_tags(tags: Sequence[str], bundle: Bundle) -> tuple[str, ...]:
    """``tags`` if each is in the bundle's bottleneck list, once; else BottleneckTagError."""
    duplicates = sorted({t for t in tags if tags.count(t) > 1})
    if duplicates:
        raise BottleneckTagError(f"tags are listed twice: {', '.join(map(repr, duplicates))}")
    unknown = [t for t in tags if t not in bundle.bottlenecks]
    if unknown:
        raise BottleneckTagError(
            f"unknown bottleneck tag(s) {', '.join(map(repr, unknown))}; policy bundle "
            f"{bundle.name} {bundle.version} lists: {', '.join(bundle.bottlenecks)}"
        )
    return tuple(tags)


async def set_bottlenecks(
    request: case_pb2.SetBottlenecksRequest,
    registry: CaseRegistry,
    bundle: Bundle,
    node_id: str,
) -> partner_pb2.CaseStatus:
    """Replace the case's tags and return its status (for the regie, hits included).

    Raises BottleneckTagError for a malformed request (nothing changes), and
    the registry's errors (each with its gRPC ``code``) for an unknown case.
    """
    ref = request.case_ref
    if not ref.case_id:
        raise BottleneckTagError("case_ref.case_id is required")
    if ref.node_id != node_id:
        raise BottleneckTagError(
            f"case_ref.node_id is {ref.node_id!r}; this node is {node_id!r} and sets tags "
            "only on its own cases"
        )
    tags = check_tags(list(request.tags), bundle)
    case = await asyncio.to_thread(registry.get, ref.case_id)
    activity = request.purpose.processing_activity_id
    if activity != case.activity:
        raise BottleneckTagError(
            f"purpose.processing_activity_id must be the case's activity {case.activity!r}, "
            f"not {activity!r}"
        )
    case = await asyncio.to_thread(registry.set_bottlenecks, ref.case_id, tags)
    return case_status(case, node_id, for_referrer=False)
