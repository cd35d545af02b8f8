"""The SQL adapter: answers from a partner's own database through a declared mapping.

The mapping (YAML or TOML) says where the local key and the identifier live,
which read-only query gives each fact category's rows (bound to ``:key``, the
local record key), how each selected column becomes a typed fact field, and
which contact handle to give for a known subject. Example::

    version: 1
    id_type: bsn
    subjects: {table: personen, key_column: persoon_id, id_column: bsn}
    contact:
      query: SELECT t.mailbox FROM personen p JOIN teams t ON t.team = p.team
             WHERE p.persoon_id = :key
      column: mailbox
      handle: zvh@politie.example     # fallback when the query finds none
    categories:
      justitie.antecedenten:
        query: SELECT feitcode, COUNT(*) AS aantal, MAX(pleegdatum) AS laatste
               FROM antecedenten WHERE persoon_id = :key GROUP BY feitcode
        fields:
          feit: {column: feitcode, type: code}
          aantal: {column: aantal, type: number}
          laatste: {column: laatste, type: date}

The mapping is validated when it is loaded: every query is parsed (sqlglot)
and must be one ``SELECT`` (or ``WITH ... SELECT``, or a ``UNION`` of them)
without ``INTO``, locks or data-modifying statements anywhere inside.
:meth:`SqlAdapter.check` then runs every query once against the database to
prove the columns exist. Whatever the parser let through, the adapter reads
only inside a read-only transaction (PostgreSQL, MySQL, Oracle: ``SET
TRANSACTION READ ONLY``) or connection (SQLite: ``PRAGMA query_only``), so
the database itself refuses any write.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import sqlglot
import structlog
from schakel.v1 import common_pb2, partner_pb2
from sqlglot import expressions as exp

from adapters.fields import FieldType, FieldValueError, check_contact, to_fact_value
from adapters.index import PseudonymIndex
from adapters.mapping import CATEGORY, FIELD_NAME, IDENTIFIER, MappingError, Reader, load_document
from adapters.sdk import DeliveryHandler, SubjectRow

log = structlog.get_logger(__name__)

_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
# Anything that writes, locks, or changes the session, wherever in the tree
# it stands (a data-modifying CTE, SELECT ... INTO, FOR UPDATE, ...).
_REFUSED = (
    exp.DML,
    exp.DDL,
    exp.Command,
    exp.Into,
    exp.Lock,
    exp.Set,
    exp.Copy,
    exp.Merge,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Use,
    exp.Pragma,
    exp.Grant,
    exp.Revoke,
    exp.Kill,
    exp.Execute,
    exp.Declare,
    exp.Analyze,
    exp.LoadData,
    exp.Cache,
    exp.Uncache,
    exp.Refresh,
)
_READ_ONLY_TRANSACTION = {"postgresql", "mysql", "mariadb", "oracle"}
"""Dialects that take ``SET TRANSACTION READ ONLY`` as a transaction's first statement."""


def _check_read_only(text: str, where: str) -> None:
    """Parse ``text``; raise MappingError unless it is one plain SELECT."""
    try:
        statements = [s for s in sqlglot.parse(text) if s is not None]
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "no detail"
        raise MappingError(f"{where}: is not SQL the adapter can read: {first}") from None
    if len(statements) != 1:
        raise MappingError(f"{where}: must be a single statement, found {len(statements)}")
    query = statements[0]
    if not isinstance(query, (exp.Select, exp.SetOperation)):
        raise MappingError(f"{where}: must be a SELECT (or WITH ... SELECT) query")
    refused = next(query.find_all(*_REFUSED), None)
    if refused is not None:
        raise MappingError(
            f"{where}: must only read: it holds {refused.key.upper()}"
            " (no INTO, locking or data-modifying statements, also not in a WITH)"
        )


def _check_query(query: str, where: str) -> str:
    text = query.strip().rstrip(";").strip()
    _check_read_only(text, where)
    binds = set(_BIND.findall(text))
    if binds != {"key"}:
        raise MappingError(
            f"{where}: must use exactly the bind parameter :key (the local record key), "
            f"found {sorted(binds) or 'none'}"
        )
    return text


@dataclass(frozen=True)
class FieldMapping:
    """One fact field: its name, the result column it comes from, and its type."""

    name: str
    column: str
    type: FieldType
    values: frozenset[str]
    """For ``code`` fields: the allowed codes (empty: any well-formed code)."""


@dataclass(frozen=True)
class CategoryMapping:
    """How to read the facts of one category: a query and its fields."""

    category: str
    query: str
    fields: tuple[FieldMapping, ...]


@dataclass(frozen=True)
class ContactMapping:
    """The contact handle for a known subject: per-record query, fixed handle, or both."""

    query: str | None
    column: str | None
    handle: str | None


@dataclass(frozen=True)
class SqlMapping:
    """A validated SQL adapter mapping."""

    id_type: str
    table: str
    key_column: str
    id_column: str
    contact: ContactMapping
    categories: Mapping[str, CategoryMapping]

    @classmethod
    def load(cls, path: Path) -> SqlMapping:
        """Load and validate a mapping file (``.yaml``, ``.yml`` or ``.toml``)."""
        return cls.from_dict(load_document(path), str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "mapping") -> SqlMapping:
        """Validate a parsed mapping document; ``source`` names it in errors."""
        top = Reader(data, source)
        top.only({"version", "id_type", "subjects", "contact", "categories"})
        if top.data.get("version") != 1:
            raise MappingError(f"{source}.version: must be 1")
        subjects = top.sub("subjects")
        subjects.only({"table", "key_column", "id_column"})
        contact = top.sub("contact")
        contact.only({"query", "column", "handle"})
        query, column = contact.optional_text("query"), contact.optional_text("column")
        handle = contact.optional_text("handle")
        if (query is None) != (column is None):
            raise MappingError(f"{contact.where}: 'query' and 'column' go together")
        if query is None and handle is None:
            raise MappingError(f"{contact.where}: needs a 'query' with 'column', or a 'handle'")
        if query is not None:
            query = _check_query(query, f"{contact.where}.query")
        if handle is not None:
            try:
                check_contact(handle, f"{contact.where}.handle")
            except FieldValueError as exc:
                raise MappingError(str(exc)) from None
        categories: dict[str, CategoryMapping] = {}
        for name, cat in top.sub("categories").items():
            if not CATEGORY.fullmatch(name):
                raise MappingError(f"{cat.where}: {name!r} is not a fact category name")
            cat.only({"query", "fields"})
            fields = []
            for fname, spec in cat.sub("fields").items():
                if not FIELD_NAME.fullmatch(fname):
                    raise MappingError(f"{spec.where}: {fname!r} is not a field name")
                spec.only({"column", "type", "values"})
                ftype = spec.field_type()
                values = frozenset(spec.string_list("values"))
                if values and ftype is not FieldType.CODE:
                    raise MappingError(f"{spec.where}.values: only a code field has a value set")
                fields.append(FieldMapping(fname, spec.text("column"), ftype, values))
            if not fields:
                raise MappingError(f"{cat.where}.fields: declare at least one field")
            categories[name] = CategoryMapping(
                name, _check_query(cat.text("query"), f"{cat.where}.query"), tuple(fields)
            )
        return cls(
            id_type=top.text("id_type", default="bsn"),
            table=subjects.text("table", pattern=IDENTIFIER),
            key_column=subjects.text("key_column", pattern=IDENTIFIER),
            id_column=subjects.text("id_column", pattern=IDENTIFIER),
            contact=ContactMapping(query, column, handle),
            categories=categories,
        )


class SqlAdapter:
    """An :class:`adapters.sdk.Adapter` over a partner's own SQL database (read-only)."""

    def __init__(
        self,
        engine: sa.Engine,
        mapping: SqlMapping,
        index: PseudonymIndex,
        *,
        on_delivery: DeliveryHandler | None = None,
    ) -> None:
        """Answer from ``engine`` through ``mapping``; ``index`` resolves pseudonyms."""
        self._engine = engine
        self.mapping = mapping
        self.index = index
        self._on_delivery = on_delivery
        self._subjects = sa.table(
            mapping.table, sa.column(mapping.key_column), sa.column(mapping.id_column)
        )
        dialect = engine.dialect.name
        if dialect != "sqlite" and dialect not in _READ_ONLY_TRANSACTION:
            raise MappingError(
                f"the SQL adapter cannot hold a {dialect} connection read-only; "
                "use PostgreSQL, MySQL/MariaDB, Oracle or SQLite"
            )

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        """A connection that cannot write: a read-only transaction, or ``query_only`` on SQLite.

        The engine may be shared with a writer (the pseudonym index), so the
        SQLite pragma is lifted before the connection goes back to the pool,
        and a connection whose pragma cannot be lifted is discarded.
        """
        with self._engine.connect() as conn:
            if conn.dialect.name != "sqlite":
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn
                return
            conn.exec_driver_sql("PRAGMA query_only = ON")
            try:
                yield conn
            finally:
                try:
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA query_only = OFF")
                except sa.exc.DBAPIError:
                    conn.invalidate()

    def check(self) -> None:
        """Run every declared query once, proving the tables and columns exist.

        Raises :class:`MappingError` naming the entry that does not fit the database.
        """
        key = self._subjects.c[self.mapping.key_column]
        probes: list[tuple[str, str, set[str]]] = []
        if self.mapping.contact.query and self.mapping.contact.column:
            probes.append(("contact", self.mapping.contact.query, {self.mapping.contact.column}))
        for cat in self.mapping.categories.values():
            probes.append((f"categories.{cat.category}", cat.query, {f.column for f in cat.fields}))
        with self._reading() as conn:
            try:
                first = conn.execute(
                    sa.select(key, self._subjects.c[self.mapping.id_column]).limit(1)
                ).first()
            except sa.exc.DBAPIError as exc:
                raise MappingError(
                    f"subjects: the database refused the query: {_first_line(exc)}"
                ) from None
            # A real key, so that PostgreSQL can cast the :key bind to the key column's type.
            probe_key = str(first[0]) if first else "0"
            for where, query, needed in probes:
                try:
                    result = conn.execute(sa.text(query), {"key": probe_key})
                    columns = set(result.keys())
                    result.close()
                except sa.exc.DBAPIError as exc:
                    conn.rollback()
                    raise MappingError(
                        f"{where}: the database refused the query: {_first_line(exc)}"
                    ) from None
                missing = sorted(needed - columns)
                if missing:
                    raise MappingError(
                        f"{where}: the query returns no column(s) {missing}; "
                        f"it returns {sorted(columns)}"
                    )

    def subjects(self) -> Iterator[SubjectRow]:
        """Every record's local key and identifier, streamed."""
        key = self._subjects.c[self.mapping.key_column]
        ident = self._subjects.c[self.mapping.id_column]
        query = sa.select(key, ident).where(ident.is_not(None)).order_by(key)
        with self._reading() as conn:
            for local_key, value in conn.execute(query.execution_options(yield_per=1000)):
                yield SubjectRow(str(local_key), self.mapping.id_type, str(value).strip())

    def _present(self, keys: Sequence[str]) -> list[str]:
        """Which of ``keys`` still exist in the source (records can vanish after indexing)."""
        key = self._subjects.c[self.mapping.key_column]
        with self._reading() as conn:
            # An untyped expanding bind: PostgreSQL then casts the keys to the column's type.
            query = sa.select(key).where(key.in_(sa.bindparam("keys", expanding=True)))
            found = {str(k) for k in conn.scalars(query, {"keys": list(keys)})}
        return [k for k in keys if k in found]

    def known(self, pseudonym_hex: str) -> str | None:
        """The contact handle when the subject is in the source, else None."""
        indexed = self.index.lookup(pseudonym_hex)
        keys = self._present(indexed) if indexed else []
        if not keys:
            return None
        contact = self.mapping.contact
        if contact.query and contact.column:
            with self._reading() as conn:
                for key in keys:
                    row = conn.execute(sa.text(contact.query), {"key": key}).mappings().first()
                    value = row.get(contact.column) if row else None
                    if isinstance(value, str) and value.strip():
                        try:
                            return check_contact(value.strip(), "the contact handle")
                        except FieldValueError as exc:
                            log.warning("contact handle refused", reason=str(exc))
        return contact.handle or None

    def facts(self, pseudonym_hex: str, categories: Sequence[str]) -> list[common_pb2.Fact]:
        """One fact per result row of each mapped category asked for.

        A category without a mapping gives nothing. A NULL value leaves its
        field out; a value that does not fit its declared type is left out
        and logged by category and field name, never by value.
        """
        wanted = [self.mapping.categories[c] for c in categories if c in self.mapping.categories]
        keys = self.index.lookup(pseudonym_hex) if wanted else ()
        facts: list[common_pb2.Fact] = []
        with self._reading() as conn:
            for cat in wanted:
                for key in keys:
                    for row in conn.execute(sa.text(cat.query), {"key": key}).mappings():
                        fact = _fact(cat, row)
                        if fact.fields:
                            facts.append(fact)
        return facts

    def deliver(self, pseudonym_hex: str, task: partner_pb2.PartnerTask) -> None:
        """Hand released facts to the configured handler with the subject's local keys."""
        if self._on_delivery is None:
            log.warning("fact delivery dropped: no delivery handler", task_id=task.task_id)
            return
        self._on_delivery(self.index.lookup(pseudonym_hex), task)


def _fact(cat: CategoryMapping, row: sa.RowMapping) -> common_pb2.Fact:
    fact = common_pb2.Fact(category=cat.category)
    for field in cat.fields:
        raw = row.get(field.column)
        if raw is None:
            continue
        try:
            value = to_fact_value(field.type, raw, f"{cat.category}.{field.name}", field.values)
        except FieldValueError as exc:
            log.warning(
                "fact field left out", category=cat.category, field=field.name, reason=str(exc)
            )
            continue
        fact.fields[field.name].CopyFrom(value)
    return fact


def _first_line(exc: sa.exc.DBAPIError) -> str:
    # The driver's own message names the table or column; later lines may echo parameters.
    return str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
