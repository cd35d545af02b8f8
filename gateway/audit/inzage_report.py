"""The inzage as a page a citizen and a privacy officer can read and print.

First a summary in plain Dutch (who received which kinds of data, when, on
which legal basis, in which phase), then one row per processing with any
refusal explained, then the proofs in a technical appendix. Every code is
shown in words (:mod:`gateway.labels`), every time in Dutch time. The page
is a jinja2 template with autoescaping: no value from a record can become
markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import jinja2
from schakel.v1 import audit_pb2, common_pb2

from gateway import labels

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway.audit", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)

_OUTCOMES = {
    common_pb2.DECISION_OUTCOME_ALLOW: "toegestaan",
    common_pb2.DECISION_OUTCOME_DENY: "geweigerd",
    common_pb2.DECISION_OUTCOME_PARTIAL: "deels toegestaan",
}
UNKNOWN = "onbekend"
UNKNOWN_MEANS = (
    "“Onbekend” betekent dat het logboek bij deze verwerking geen beslissing over het "
    "verstrekken van gegevens vastlegt. Dat is zo bij handelingen waarbij geen gegevens "
    "van de ene organisatie naar de andere gaan (zoals het starten van een triage of een "
    "inzage), en bij verzoeken die al vóór de beslissing stopten, bijvoorbeeld omdat ze "
    "onvolledig waren."
)


@dataclass
class Row:
    """One processing as the page shows it."""

    index: int
    when: str
    what: str
    activity: str
    requester: str
    provider: str
    phase: str
    outcome: str
    released: list[str]
    withheld: list[str]
    basis: str
    failed: bool
    proof: list[str] = field(default_factory=list)
    leaf_hash: str = ""


@dataclass
class Recipient:
    """What one organisation received, for the summary."""

    name: str
    categories: set[str] = field(default_factory=set)
    times: list[datetime] = field(default_factory=list)
    bases: set[str] = field(default_factory=set)
    phases: set[str] = field(default_factory=set)

    def line(self) -> str:
        """One sentence about this recipient."""
        first, last = min(self.times), max(self.times)
        count = len(self.times)
        when = (
            f"op {labels.date(first)}"
            if labels.date(first) == labels.date(last)
            else f"tussen {labels.date(first)} en {labels.date(last)}"
        )
        times = "één keer" if count == 1 else f"{count} keer"
        name = self.name[:1].upper() + self.name[1:]
        return (
            f"{name} ontving {_join(sorted(self.categories))}, {times} {when}, "
            f"in de fase {_join(sorted(self.phases))}, op grond van {_join(sorted(self.bases))}."
        )


def _join(words: Iterable[str]) -> str:
    items = list(words)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " en " + items[-1]


def _moment(record: audit_pb2.AuditRecord) -> datetime:
    return record.start_time.ToDatetime(tzinfo=UTC)


def _row(entry: audit_pb2.AuditEntry, proof: audit_pb2.InclusionProof | None) -> Row:
    hashes = [h.hex() for h in proof.hashes] if proof is not None else []
    if entry.erased:
        return Row(
            index=entry.index,
            when="—",
            what="verwijderd na afloop van de bewaartermijn",
            activity="—",
            requester="—",
            provider="—",
            phase="—",
            outcome=UNKNOWN,
            released=[],
            withheld=[],
            basis="—",
            failed=False,
            proof=hashes,
            leaf_hash=entry.leaf_hash.hex(),
        )
    r = entry.record
    d = r.decision
    return Row(
        index=entry.index,
        when=labels.date_time(_moment(r)),
        what=labels.operation(r.name),
        activity=labels.activity(r.processing_activity_id),
        requester=labels.party(r.requester),
        provider=labels.party(r.provider) if r.provider else "—",
        phase=labels.phase(r.phase),
        outcome=_OUTCOMES.get(d.outcome, UNKNOWN),
        released=[labels.category(c) for c in d.released],
        withheld=[f"{labels.category(w.category)}: {labels.reason(w.reason)}" for w in d.withheld],
        basis=labels.legal_basis_short(d.legal_basis.code) if d.released else "—",
        failed=r.status == audit_pb2.SPAN_STATUS_ERROR,
        proof=hashes,
        leaf_hash=entry.leaf_hash.hex(),
    )


def _recipient(record: audit_pb2.AuditRecord, origin: str) -> str:
    """Who received the released categories: the caller, or the ZVH when the caller provided."""
    if record.provider and record.provider == record.requester:
        return f"Zorg- en Veiligheidshuis {origin}"
    return labels.party(record.requester)


def summary(entries: Iterable[audit_pb2.AuditEntry], origin: str) -> list[str]:
    """The plain-Dutch sentences that open the page, one per organisation that received data."""
    recipients: dict[str, Recipient] = {}
    for entry in entries:
        r = entry.record
        if entry.erased or not r.decision.released or r.status == audit_pb2.SPAN_STATUS_ERROR:
            continue
        name = _recipient(r, origin)
        got = recipients.setdefault(name, Recipient(name))
        got.categories.update(labels.category(c) for c in r.decision.released)
        got.times.append(_moment(r))
        got.bases.add(labels.legal_basis(r.decision.legal_basis.code))
        got.phases.add(labels.phase(r.phase))
    return [recipients[name].line() for name in sorted(recipients)]


def origin_of(checkpoint: audit_pb2.SignedCheckpoint) -> str:
    """The log's origin (the node id) from the checkpoint note's first line."""
    first = checkpoint.note.split(b"\n", 1)[0]
    return first.decode("utf-8", errors="replace") or UNKNOWN


def render(
    resp: audit_pb2.SubjectReportResponse,
    newer: Iterable[audit_pb2.AuditEntry] = (),
    generated: datetime | None = None,
) -> str:
    """The whole page: ``resp``'s proven records and the ``newer`` ones, made at ``generated``."""
    origin = origin_of(resp.checkpoint)
    entries = [p.entry for p in resp.entries] + list(newer)
    rows = [_row(p.entry, p.proof) for p in resp.entries]
    pending = [_row(e, None) for e in entries[len(rows) :]]
    every = rows + pending
    refused = [r for r in every if r.withheld or r.outcome == "geweigerd" or r.failed]
    moments = [_moment(e.record) for e in entries if not e.erased]
    cp = resp.checkpoint
    return _ENV.get_template("inzage.html").render(
        origin=origin,
        generated=labels.date_time(generated or datetime.now(UTC)),
        summary=summary(entries, origin),
        count=len(every),
        first=labels.date(min(moments)) if moments else "",
        last=labels.date(max(moments)) if moments else "",
        refused=len(refused),
        unknown=sum(r.outcome == UNKNOWN for r in every),
        unknown_means=UNKNOWN_MEANS,
        rows=every,
        proven=rows,
        pending=pending,
        pseudonym=resp.data_subject_id,
        checkpoint_size=cp.size,
        checkpoint_root=cp.root.hex(),
        cosignatures=cp.cosignatures,
        final=cp.final,
        note=cp.note.decode("utf-8", errors="replace"),
    )
