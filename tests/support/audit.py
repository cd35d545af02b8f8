"""Shared builders for the audit tests: records, migrated logs, keys, a reference tree."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from gateway.audit import notes
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.store import AuditLog
from gateway.audit.verify import Keys
from gateway.storage import make_engine, migrate
from tests.support.audit_sample import ORIGIN, record, reference_root

__all__ = ["ORIGIN", "Node", "migrated", "node", "record", "reference_root"]


def migrated(url: str) -> Engine:
    """An engine on ``url`` with the schema migrated."""
    engine = make_engine(url)
    migrate(engine)
    return engine


@dataclass
class Node:
    """A log with its checkpoint key, two witnesses' keys and the pinned key set."""

    log: AuditLog
    signer: notes.Signer
    witness_signers: list[notes.Signer]
    checkpointer: Checkpointer

    @property
    def keys(self) -> Keys:
        return Keys(
            self.signer.verifier(),
            [w.verifier() for w in self.witness_signers],
            quorum=len(self.witness_signers),
        )

    def cosign_latest(self) -> None:
        """Have every witness cosign the latest checkpoint (no witness state kept)."""
        latest = self.checkpointer.latest()
        assert latest is not None
        text = notes.parse_note(latest.note).text
        for w in self.witness_signers:
            self.checkpointer.add_cosignature(latest.size, notes.cosign(text, w, 1_780_000_000))


def node(url: str, every_records: int = 10) -> Node:
    """A fresh node log on ``url`` with two witnesses and quorum 2."""
    log = AuditLog(migrated(url))
    signer = notes.Signer.generate(ORIGIN)
    witnesses = [notes.Signer.generate(f"zvh-w{i}", notes.COSIGNATURE_V1) for i in range(2)]
    checkpointer = Checkpointer(
        log,
        signer,
        every_records=every_records,
        witnesses=[w.verifier() for w in witnesses],
        quorum=2,
    )
    return Node(log, signer, witnesses, checkpointer)
