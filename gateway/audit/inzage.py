"""Inzage (AVG art. 15): every record about one person, each provable offline.

The officer's tool turns the BSN into the node-domain pseudonym the log
holds, the way the node itself would see it: encrypt under the federation
key Y, transcrypt to the node's domain, decrypt with the node's domain key.
The BSN itself goes nowhere: not into the report, a log line or a query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa
from schakel.v1 import audit_pb2, common_pb2

from gateway.audit import inzage_report, merkle, notes, query, tables
from gateway.audit.checkpoint import Checkpoints
from gateway.audit.verify import Keys
from policy.pseudonyms import (
    Ciphertext,
    DomainKey,
    check_identifier,
    decrypt,
    encrypt,
    pseudonym_hex,
    subject_point,
)

INZAGE_ACTIVITY = "schakel.inzage"
"""The processing activity under which officers' subject reports are logged (AVG art. 15),
and for which the transcryptor chain converts the person's ciphertext."""

SubjectResolver = Callable[[Ciphertext], Awaitable[str]]
"""From a ciphertext under Y to the node-domain pseudonym (hex); the node's goes through
the transcryptor chain."""


class LocalConversion(Protocol):
    """Conversion in this process: a chain whose shares are all here, or a single transcryptor."""

    def transcrypt(self, ct: Ciphertext, to_domain: str) -> Ciphertext:
        """``ct`` (under Y) converted to ``to_domain``."""


class InzageError(Exception):
    """The report cannot be made; the message says why (never the identifier)."""


def resolve_locally(
    transcryptor: LocalConversion, domain_key: DomainKey, ciphertext: Ciphertext
) -> str:
    """The node-domain pseudonym (hex) of ``ciphertext``, converted in this process."""
    moved = transcryptor.transcrypt(ciphertext, domain_key.domain)
    return pseudonym_hex(decrypt(moved, domain_key.secret_key))


def node_resolver(transcryptor: LocalConversion, domain_key: DomainKey) -> SubjectResolver:
    """A resolver that converts in this process, for a federation of one transcryptor."""

    async def resolve(ciphertext: Ciphertext) -> str:
        return resolve_locally(transcryptor, domain_key, ciphertext)

    return resolve


def encrypt_bsn(bsn: str, global_public_key: bytes) -> Ciphertext:
    """The BSN (elfproef-checked) as a fresh ciphertext under Y."""
    id_type, value = check_identifier("bsn", bsn)
    return encrypt(subject_point(id_type, value), global_public_key)


@dataclass
class SubjectReport:
    """The API answer plus the records newer than the cosigned checkpoint."""

    response: audit_pb2.SubjectReportResponse
    pending: list[audit_pb2.AuditEntry] = field(default_factory=list)


def build_report(checkpointer: Checkpoints, pseudonym: str) -> SubjectReport:
    """Every record of ``pseudonym``; those covered by the latest cosigned checkpoint get proofs."""
    final = checkpointer.latest_final()
    if final is None:
        raise InzageError("the log has no cosigned checkpoint yet; proofs need one")
    log = checkpointer.log
    leaf = tables.leaf
    response = audit_pb2.SubjectReportResponse(
        data_subject_id=pseudonym, checkpoint=checkpointer.to_proto(final)
    )
    report = SubjectReport(response)
    with log.engine.connect() as conn:
        rows = conn.execute(
            sa.select(leaf.c.idx, leaf.c.leaf_hash, leaf.c.data)
            .where(leaf.c.data_subject_id == pseudonym)
            .order_by(leaf.c.idx)
        ).all()
    for idx, digest, data in rows:
        entry = query.entry(int(idx), bytes(digest), bytes(data))
        if entry.index < final.size:
            proof = audit_pb2.InclusionProof(
                index=entry.index,
                tree_size=final.size,
                hashes=log.inclusion_proof(entry.index, final.size),
            )
            response.entries.add(entry=entry, proof=proof)
        else:
            report.pending.append(entry)
    return report


def check_report(response: audit_pb2.SubjectReportResponse, keys: Keys) -> None:
    """Verify a report offline: checkpoint signature, quorum, each leaf and its proof.

    Raises :class:`InzageError` naming the first entry that fails.
    """
    try:
        checkpoint, parsed = notes.open_checkpoint(response.checkpoint.note, keys.log)
    except notes.NoteError as exc:
        raise InzageError(f"the report's checkpoint does not verify: {exc}") from exc
    witnesses = {(w.name, w.key_id): w for w in keys.witnesses}
    cosigned = 0
    for sig in parsed.signatures:
        witness = witnesses.get((sig.name, sig.key_id))
        if witness is not None:
            try:
                notes.verify_cosignature(parsed.text, sig, witness)
            except notes.NoteError as exc:
                raise InzageError(str(exc)) from exc
            cosigned += 1
    if cosigned < keys.quorum:
        raise InzageError(f"the checkpoint has {cosigned} of {keys.quorum} cosignatures")
    for proven in response.entries:
        entry, proof = proven.entry, proven.proof
        if merkle.leaf_hash(entry.leaf_data) != entry.leaf_hash:
            raise InzageError(f"record {entry.index}: bytes do not match the leaf hash")
        if entry.record.data_subject_id != response.data_subject_id:
            raise InzageError(f"record {entry.index} is about someone else")
        if proof.tree_size != checkpoint.size or proof.index != entry.index:
            raise InzageError(f"record {entry.index}: proof is not against the checkpoint")
        try:
            merkle.verify_inclusion(
                entry.leaf_hash, entry.index, checkpoint.size, list(proof.hashes), checkpoint.root
            )
        except merkle.ProofError as exc:
            raise InzageError(f"record {entry.index}: {exc}") from exc


_OUTCOME = {
    common_pb2.DECISION_OUTCOME_ALLOW: "toegestaan",
    common_pb2.DECISION_OUTCOME_DENY: "geweigerd",
    common_pb2.DECISION_OUTCOME_PARTIAL: "gedeeltelijk",
}


def _summary(entry: audit_pb2.AuditEntry) -> dict[str, str]:
    r = entry.record
    d = r.decision
    return {
        "index": str(entry.index),
        "time": r.start_time.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds"),
        "operation": r.name,
        "activity": r.processing_activity_id,
        "phase": common_pb2.Phase.Name(r.phase),
        "requester": r.requester,
        "provider": r.provider,
        "peer": r.foreign_operation_processor,
        "outcome": _OUTCOME.get(d.outcome, "onbekend"),
        "released": ", ".join(d.released) or "-",
        "withheld": ", ".join(f"{w.category} ({w.reason})" for w in d.withheld) or "-",
        "basis": d.legal_basis.code or "-",
        "rules": ", ".join(d.rule_ids) or "-",
        "leaf_hash": entry.leaf_hash.hex(),
    }


def render_text(report: SubjectReport) -> str:
    """The report as plain text."""
    resp = report.response
    cp = resp.checkpoint
    out = [
        "Inzage: verwerkingen over één persoon",
        f"Pseudoniem (node-domein): {resp.data_subject_id}",
        f"Checkpoint: grootte {cp.size}, root {cp.root.hex()}, "
        f"{cp.cosignatures} medeondertekeningen{' (definitief)' if cp.final else ''}",
        f"Records met inclusiebewijs: {len(resp.entries)}",
        "",
    ]
    for proven in resp.entries:
        s = _summary(proven.entry)
        out.append(
            f"#{s['index']} {s['time']} {s['operation']} [{s['activity']}, {s['phase']}]"
            f" {s['outcome']}; verstrekt: {s['released']}; achtergehouden: {s['withheld']};"
            f" grondslag: {s['basis']}; regels: {s['rules']}; aanvrager: {s['requester']};"
            f" verstrekker: {s['provider']}; bewijs: {len(proven.proof.hashes)} hashes"
        )
    if report.pending:
        out += ["", f"Nieuwer dan de checkpoint (nog zonder bewijs): {len(report.pending)}"]
        for entry in report.pending:
            s = _summary(entry)
            out.append(f"#{s['index']} {s['time']} {s['operation']} {s['outcome']}")
    return "\n".join(out) + "\n"


def render_html(report: SubjectReport, generated: datetime | None = None) -> str:
    """The report as a self-contained, printable HTML page in Dutch (made at ``generated``).

    A plain-language summary, one row per processing, the proofs in an appendix:
    see :mod:`gateway.audit.inzage_report`.
    """
    return inzage_report.render(report.response, report.pending, generated)
