"""Inzage (AVG art. 15) through the officers' API: every record about one person.

Looking a person up is itself processing about that person, so the lookup
is recorded under :data:`INZAGE_ACTIVITY` with the subject: after the report
is made (so that it does not list itself), and as refused when it cannot be
made.
"""

from __future__ import annotations

import asyncio

from schakel.v1 import audit_pb2, common_pb2

from certs.identity import Identity
from gateway.audit import inzage
from gateway.audit.checkpoint import Checkpoints
from gateway.audit.store import AuditLog
from gateway.errors import InvalidInputError, NotConfiguredError, WrongStateError
from gateway.flows.crossing import Crossing, record
from policy.pseudonyms import Ciphertext, PseudonymError

INZAGE_ACTIVITY = inzage.INZAGE_ACTIVITY
METHOD = "schakel.v1.AuditService/SubjectReport"


async def subject_report(
    log: AuditLog,
    checkpointer: Checkpoints,
    resolver: inzage.SubjectResolver | None,
    caller: Identity,
    subject: common_pb2.EncryptedPseudonym,
) -> audit_pb2.SubjectReportResponse:
    """Every record about ``subject`` (under Y), with proofs against the latest cosigned checkpoint.

    ``resolver`` turns the ciphertext into the node-domain pseudonym; a node
    without pseudonym keys has none and cannot answer.
    """
    report = await make_report(log, checkpointer, resolver, caller, subject)
    return report.response


async def make_report(
    log: AuditLog,
    checkpointer: Checkpoints,
    resolver: inzage.SubjectResolver | None,
    caller: Identity,
    subject: common_pb2.EncryptedPseudonym,
    *,
    name: str = METHOD,
) -> inzage.SubjectReport:
    """:func:`subject_report` with the records newer than the checkpoint, for a rendered report.

    ``name`` is the operation the lookup's audit record names.
    """
    if resolver is None:
        raise NotConfiguredError(
            "SubjectReport needs the node's pseudonym keys "
            "([[transcryptors]], pseudonyms.domain_key), which are not configured"
        )
    try:
        pseudonym = await resolver(Ciphertext.from_proto(subject))
    except PseudonymError as exc:
        raise InvalidInputError(f"subject: {exc}") from None
    crossing = Crossing(name=name, caller=caller, activity=INZAGE_ACTIVITY, subject=pseudonym)
    try:
        report = await asyncio.to_thread(inzage.build_report, checkpointer, pseudonym)
    except inzage.InzageError as exc:
        raise WrongStateError(str(exc)) from None
    await record(log, crossing)
    return report
