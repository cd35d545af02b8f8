"""The file-drop adapter: periodic exports (CSV or JSON lines) in a drop folder.

A declared schema (YAML or TOML) names, per export, the file pattern, the
format, the identifier column and the typed fact fields. :meth:`FileDropAdapter.
process` takes each new file, validates every row, writes the bad rows with
their reason to ``quarantine/<file>.rejected.jsonl`` (partner-side data, so
it may hold the row; logs and errors never do), turns the good rows into
facts in the adapter's own store and moves the file to ``processed/``.

The store holds no identifier: each row's identifier is pseudonymised
through the node (encrypted under Y, transcrypted, decrypted with the domain
key) and the record is filed under a random local key that the pseudonym
index links to. Processing is idempotent per file content (SHA-256): a file
seen before is moved aside without being read again. A file is processed in
one transaction, so a failure (the node unreachable, a full disk) leaves the
store as it was and the file in the drop folder for the next run.

Exporters should write under a temporary name and rename into the pattern
when complete, so a half-written file is never picked up.

The declared schema is :mod:`adapters.dropschema`; reading and validating a
file's rows is :mod:`adapters.droprows`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import structlog
from schakel.v1 import common_pb2, partner_pb2

from adapters.droprows import FileRefusedError, Row, read_rows, validate
from adapters.dropschema import DropSchema, ExportSchema, Mode
from adapters.index import MAX_BATCH, PseudonymIndex, Pseudonymiser, pseudonyms_of
from adapters.sdk import DeliveryHandler, SubjectRow
from policy.pseudonyms import DomainKey

# DropSchema stays importable from here: partners and the dev federation import it so.
__all__ = ["PROCESSED", "QUARANTINE", "DropSchema", "FileDropAdapter", "FileReport"]

log = structlog.get_logger(__name__)

PROCESSED = "processed"
QUARANTINE = "quarantine"


@dataclass
class FileReport:
    """The outcome of one file."""

    name: str
    export: str
    sha256: str
    accepted: int = 0
    quarantined: int = 0
    duplicate: bool = False
    """True when the same content had been processed before (nothing was read)."""
    refused: str = ""
    """Why the whole file was refused (e.g. a missing column), empty when it was read."""


class FileDropAdapter:
    """An :class:`adapters.sdk.Adapter` over periodic exports in a drop folder."""

    def __init__(
        self,
        drop_dir: Path,
        schema: DropSchema,
        engine: sa.Engine,
        *,
        on_delivery: DeliveryHandler | None = None,
    ) -> None:
        """Watch ``drop_dir``; keep records and the pseudonym index in ``engine``'s database."""
        self.drop_dir = drop_dir
        self.schema = schema
        self._engine = engine
        self._on_delivery = on_delivery
        self.index = PseudonymIndex(engine, table_name="filedrop_pseudonym_index")
        meta = sa.MetaData()
        self._files = sa.Table(
            "filedrop_files",
            meta,
            sa.Column("sha256", sa.String(64), primary_key=True),
            sa.Column("name", sa.String(255), nullable=False),
            sa.Column("export", sa.String(64), nullable=False),
            sa.Column("accepted", sa.Integer, nullable=False),
            sa.Column("quarantined", sa.Integer, nullable=False),
            sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        )
        self._records = sa.Table(
            "filedrop_records",
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("export", sa.String(64), nullable=False, index=True),
            sa.Column("local_key", sa.String(64), nullable=False, index=True),
            sa.Column("category", sa.String(128), nullable=False),
            sa.Column("fact", sa.LargeBinary, nullable=False),
            sa.Column("source_sha256", sa.String(64), nullable=False),
        )
        self._meta = meta

    def create(self) -> None:
        """Create the store's tables and the drop folder's sub-folders."""
        self._meta.create_all(self._engine)
        self.index.create()
        for sub in (PROCESSED, QUARANTINE):
            (self.drop_dir / sub).mkdir(parents=True, exist_ok=True)

    async def process(self, pseudonymise: Pseudonymiser, keys: DomainKey) -> list[FileReport]:
        """Process every new file in the drop folder, oldest name first."""
        reports = []
        for path in sorted(p for p in self.drop_dir.iterdir() if p.is_file()):
            export = self.schema.export_for(path.name)
            if export is not None:
                reports.append(await self._process_file(path, export, pseudonymise, keys))
        return reports

    async def _process_file(
        self, path: Path, export: ExportSchema, pseudonymise: Pseudonymiser, keys: DomainKey
    ) -> FileReport:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        report = FileReport(path.name, export.name, digest)
        with self._engine.connect() as conn:
            seen = conn.scalar(
                sa.select(self._files.c.sha256).where(self._files.c.sha256 == digest)
            )
        if seen:
            report.duplicate = True
            log.info("file already processed", file=path.name, sha256=digest[:16])
            self._move(path, PROCESSED, digest)
            return report
        try:
            rows = [validate(line, raw, export) for line, raw in read_rows(data, export)]
        except FileRefusedError as exc:
            report.refused = str(exc)
            log.warning("file refused", file=path.name, reason=report.refused)
            reason_file = self.drop_dir / QUARANTINE / f"{path.name}.reason.txt"
            reason_file.write_text(report.refused + "\n", encoding="utf-8")
            self._move(path, QUARANTINE, digest)
            return report
        good = [r for r in rows if r.fact is not None]
        bad = [r for r in rows if r.fact is None]
        distinct = sorted({r.id_value for r in good})
        hexes = await pseudonyms_of(
            [(export.id_type, v) for v in distinct], pseudonymise, keys, batch_size=MAX_BATCH
        )
        pseudonym = dict(zip(distinct, hexes, strict=True))
        self._write_quarantine(path.name, bad)
        now = dt.datetime.now(dt.UTC)
        with self._engine.begin() as conn:
            local = self._local_keys(conn, set(hexes), now)
            if export.mode is Mode.SNAPSHOT:
                conn.execute(sa.delete(self._records).where(self._records.c.export == export.name))
            if good:
                conn.execute(
                    sa.insert(self._records),
                    [
                        {
                            "export": export.name,
                            "local_key": local[pseudonym[r.id_value]],
                            "category": export.category,
                            "fact": r.fact.SerializeToString(deterministic=True) if r.fact else b"",
                            "source_sha256": digest,
                        }
                        for r in good
                    ],
                )
            conn.execute(
                sa.insert(self._files).values(
                    sha256=digest,
                    name=path.name,
                    export=export.name,
                    accepted=len(good),
                    quarantined=len(bad),
                    processed_at=now,
                )
            )
        report.accepted, report.quarantined = len(good), len(bad)
        for r in bad:
            log.warning("row quarantined", file=path.name, line=r.line, reason=r.reason)
        log.info(
            "file processed",
            file=path.name,
            export=export.name,
            accepted=report.accepted,
            quarantined=report.quarantined,
        )
        self._move(path, PROCESSED, digest)
        return report

    def _local_keys(self, conn: sa.Connection, hexes: set[str], now: dt.datetime) -> dict[str, str]:
        """Local keys for pseudonyms, creating (and indexing) a key for each new person."""
        table = self.index.table
        known: dict[str, str] = {}
        ordered = sorted(hexes)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            for hexa, key in conn.execute(
                sa.select(table.c.pseudonym, table.c.local_key).where(table.c.pseudonym.in_(chunk))
            ):
                known[hexa] = key
        new = {h: uuid.uuid4().hex for h in ordered if h not in known}
        if new:
            conn.execute(
                sa.insert(table),
                [{"local_key": k, "pseudonym": h, "indexed_at": now} for h, k in new.items()],
            )
            known.update(new)
        return known

    def _write_quarantine(self, name: str, bad: Sequence[Row]) -> None:
        target = self.drop_dir / QUARANTINE / f"{name}.rejected.jsonl"
        if not bad:
            target.unlink(missing_ok=True)
            return
        with target.open("w", encoding="utf-8") as out:
            for r in bad:
                out.write(
                    json.dumps(
                        {"line": r.line, "reason": r.reason, "row": r.raw}, ensure_ascii=False
                    )
                    + "\n"
                )

    def _move(self, path: Path, sub: str, digest: str) -> None:
        target = self.drop_dir / sub / path.name
        if target.exists():
            target = target.with_name(f"{path.stem}.{digest[:12]}{path.suffix}")
        shutil.move(path, target)

    def subjects(self) -> Iterator[SubjectRow]:
        """Nothing: the store holds no identifiers; :meth:`process` indexes as it reads."""
        return iter(())

    def known(self, pseudonym_hex: str) -> str | None:
        """The contact handle when any current export has a record about the subject."""
        keys = self.index.lookup(pseudonym_hex)
        if not keys:
            return None
        query = sa.select(self._records.c.id).where(self._records.c.local_key.in_(keys)).limit(1)
        with self._engine.connect() as conn:
            return self.schema.contact if conn.scalar(query) is not None else None

    def facts(self, pseudonym_hex: str, categories: Sequence[str]) -> list[common_pb2.Fact]:
        """The current records about the subject in the asked categories, in file order."""
        keys = self.index.lookup(pseudonym_hex)
        if not keys or not categories:
            return []
        query = (
            sa.select(self._records.c.fact)
            .where(self._records.c.local_key.in_(keys))
            .where(self._records.c.category.in_(list(categories)))
            .order_by(self._records.c.id)
        )
        with self._engine.connect() as conn:
            return [common_pb2.Fact.FromString(raw) for raw in conn.scalars(query)]

    def deliver(self, pseudonym_hex: str, task: partner_pb2.PartnerTask) -> None:
        """Hand released facts to the configured handler with the subject's local keys."""
        if self._on_delivery is None:
            log.warning("fact delivery dropped: no delivery handler", task_id=task.task_id)
            return
        self._on_delivery(self.index.lookup(pseudonym_hex), task)
