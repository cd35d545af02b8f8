"""Pseudonymise: a partner builds its pseudonym index through the node.

The partner sends subjects encrypted under the federation key; the node
transcrypts each to the partner's own domain (rerandomised) and never
decrypts them. The partner then decrypts to its own stable pseudonyms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schakel.v1 import common_pb2, partner_pb2

from certs.identity import Identity
from gateway.errors import InvalidInputError
from gateway.flows.crossing import Crossing, record
from gateway.flows.partner_request import activity_of, parse_subject, subjects_of
from policy.pseudonyms import PseudonymError

if TYPE_CHECKING:
    from gateway.parts import NodeParts

METHOD = "schakel.v1.PartnerService/Pseudonymise"
MAX_SUBJECTS = 1000
"""Subjects per call; the SDK sends larger sets in batches of this size."""


async def pseudonymise(
    parts: NodeParts, caller: Identity, request: partner_pb2.PseudonymiseRequest
) -> list[common_pb2.EncryptedPseudonym]:
    """``request``'s subjects transcrypted to ``caller``'s own domain, in order.

    A refusal is not recorded: the node cannot tell whom the subjects are
    about, so there is no person whose inzage it would belong in, and
    nothing crossed.
    """
    activity = activity_of(parts, request.purpose)
    count = len(request.subjects)
    if not 1 <= count <= MAX_SUBJECTS:
        raise InvalidInputError(f"subjects: between 1 and {MAX_SUBJECTS} per call, not {count}")
    node_subjects = subjects_of(parts)
    subjects = [
        parse_subject(message, f"subjects[{i}]") for i, message in enumerate(request.subjects)
    ]
    try:
        moved = await node_subjects.for_domain(subjects, caller.org_id, activity.id)
    except PseudonymError as exc:
        raise InvalidInputError(f"subjects: {exc}") from None
    # One record per call: the node cannot tell whom the subjects are about
    # (it never decrypts them), and the caller's own domain is the target.
    await record(
        parts.audit,
        Crossing(name=METHOD, caller=caller, activity=activity.id, activity_uri=activity.uri),
    )
    return moved


__all__ = ["MAX_SUBJECTS", "METHOD", "pseudonymise"]
