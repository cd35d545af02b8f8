"""What every partner request is checked for: the activity its purpose names, and its subjects.

A partner names the processing activity it acts for in ``purpose``; the node
serves it only when its signed policy bundle knows that activity as one for
personal data. Subjects arrive as ciphertexts under the federation key: the
node can parse and transcrypt them, and decrypt them only in its own domain.

Each check raises a branch of :mod:`gateway.errors` and quotes a request
value only through :func:`gateway.errors.quote`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2

from gateway.errors import DeniedError, InvalidInputError, NotConfiguredError, quote
from policy.pseudonyms import Ciphertext, PseudonymError

if TYPE_CHECKING:
    from gateway.parts import NodeParts
    from gateway.subjects import NodeSubjects
    from policy.model import Activity
    from policy.store import PolicyStore

_ACTIVITY = re.compile(r"^[a-z][a-z0-9._-]{0,127}$")


def policy_of(parts: NodeParts) -> PolicyStore:
    """The node's policy; a node without a bundle refuses every crossing (default deny)."""
    if parts.policy is None:
        raise DeniedError("this node has no policy bundle configured (policy.bundle): default deny")
    return parts.policy


def activity_of(parts: NodeParts, purpose: common_pb2.Purpose) -> Activity:
    """The bundle's activity for ``purpose``, if it serves personal data.

    InvalidInputError when the id is missing or not of an activity's form;
    DeniedError when the bundle does not serve it for personal data.
    """
    activity_id = purpose.processing_activity_id
    if not activity_id:
        raise InvalidInputError("purpose.processing_activity_id is required")
    if not _ACTIVITY.match(activity_id):
        raise InvalidInputError(
            "purpose.processing_activity_id must be an activity id such as "
            "'zvh.complexe-casuistiek'"
        )
    activity = policy_of(parts).evaluator.policy.bundle.activities.get(activity_id)
    if activity is None or not activity.personal_data:
        raise DeniedError(
            f"processing activity {quote(activity_id)} is not one this node's policy serves "
            "for personal data (unknown-activity)"
        )
    return activity


def subjects_of(parts: NodeParts) -> NodeSubjects:
    """The node's pseudonym keys; NotConfiguredError on a node without them."""
    if parts.subjects is None:
        raise NotConfiguredError(
            "this node has no pseudonym keys configured ([[transcryptors]], pseudonyms.domain_key)"
        )
    return parts.subjects


def parse_subject(message: common_pb2.EncryptedPseudonym, field: str) -> Ciphertext:
    """The ciphertext in ``message``; InvalidInputError naming ``field`` when it is malformed."""
    try:
        return Ciphertext.from_proto(message)
    except PseudonymError as exc:
        # The scheme's messages name the part that is wrong, never a value.
        raise InvalidInputError(f"{field}: {exc}") from None


async def node_pseudonym(
    parts: NodeParts, message: common_pb2.EncryptedPseudonym, field: str, activity: str
) -> str:
    """The node-domain pseudonym (hex) of the subject in ``message``, named ``field``.

    The transcryptor chain converts it to the node's domain for ``activity``.
    """
    subjects = subjects_of(parts)
    subject = parse_subject(message, field)
    try:
        return await subjects.node_pseudonym(subject, activity)
    except PseudonymError as exc:
        raise InvalidInputError(f"{field}: {exc}") from None


__all__ = ["activity_of", "node_pseudonym", "parse_subject", "policy_of", "subjects_of"]
