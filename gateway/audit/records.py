"""Audit records: validation, the exact leaf bytes, and the indexed query columns.

A record is the ``schakel.v1.AuditRecord`` message (LDV 1.0 shaped). Its leaf
bytes are the deterministic protobuf serialisation taken once, at append
time; they are stored and hashed as they are and never re-serialised,
because protobuf serialisation is not canonical across implementations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from google.protobuf.message import DecodeError
from schakel.v1 import audit_pb2, common_pb2

from gateway.audit import tables
from policy.pseudonyms import is_valid_bsn

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_PSEUDONYM = re.compile(r"^[0-9a-f]{64}$")
# Nine digits not embedded in a longer hex or digit run: a BSN written out,
# but not a stretch of digits inside a uuid or hash (those are not BSNs and
# refusing them would fail audit writes at random).
_NINE_DIGITS = re.compile(r"(?<![0-9a-fA-F])[0-9]{9}(?![0-9a-fA-F])")
# Any nine digits in a row: a necessary condition for _NINE_DIGITS that the
# regex engine finds several times faster (written out, not as {9}, and
# without the look-arounds), so the exact check runs only when it can match.
_DIGIT_RUN = re.compile("[0-9]" * 9)
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
PSEUDONYM_TYPE = "schakel-pseudonym/v1"
"""The ``data_subject_id_type`` of a node-domain pseudonym."""
# The range protobuf's Timestamp allows (0001-01-01 .. 9999-12-31 UTC): its
# conversions raise outside it, and microseconds within it fit a BIGINT.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799
# Subclasses first: BigInteger and SmallInteger are Integers too.
_INTEGER_BITS = {sa.SmallInteger: 16, sa.BigInteger: 64, sa.Integer: 32}
# The record field each query column is taken from, for messages.
_FIELD = {"peer": "foreign_operation_processor", "start_us": "start_time"}
_OUTCOMES = frozenset(common_pb2.DecisionOutcome.values())


class RecordError(ValueError):
    """An audit record is malformed; the message names the field, never its value."""


def is_pseudonym(text: str) -> bool:
    """True for a node-domain pseudonym: 64 lowercase hex characters."""
    return bool(_PSEUDONYM.match(text))


def is_bsn_shaped(text: str) -> bool:
    """True when ``text`` holds a standalone run of nine digits that is a valid BSN.

    Valid as the pseudonym scheme defines it (:func:`policy.pseudonyms.is_valid_bsn`),
    so the log refuses exactly the numbers a partner could have encrypted.
    """
    return any(is_valid_bsn(match.group()) for match in _NINE_DIGITS.finditer(text))


def _strings(record: audit_pb2.AuditRecord) -> list[tuple[str, str]]:
    """(field name, value) of every free-form string the record carries."""
    decision = record.decision
    out = [
        ("name", record.name),
        ("processing_activity_id", record.processing_activity_id),
        ("data_subject_id_type", record.data_subject_id_type),
        ("foreign_operation_processor", record.foreign_operation_processor),
        ("purpose", record.purpose),
        ("requester", record.requester),
        ("provider", record.provider),
        ("case_ref.node_id", record.case_ref.node_id),
        ("case_ref.case_id", record.case_ref.case_id),
        ("decision.legal_basis.code", decision.legal_basis.code),
    ]
    out += [("categories_asked", c) for c in record.categories_asked]
    out += [("decision.released", c) for c in decision.released]
    out += [("decision.rule_ids", c) for c in decision.rule_ids]
    for w in decision.withheld:
        out += [("decision.withheld.category", w.category), ("decision.withheld.reason", w.reason)]
    return out


def _check_no_bsn(record: audit_pb2.AuditRecord) -> None:
    decision = record.decision
    texts = [
        record.name,
        record.processing_activity_id,
        record.data_subject_id_type,
        record.foreign_operation_processor,
        record.purpose,
        record.requester,
        record.provider,
        record.case_ref.node_id,
        record.case_ref.case_id,
        decision.legal_basis.code,
    ]
    # Extended in place: a generator per repeated field cost more than the search.
    texts += record.categories_asked
    texts += decision.released
    texts += decision.rule_ids
    for withheld in decision.withheld:
        texts += (withheld.category, withheld.reason)
    joined = "\n".join(texts)
    # Almost every record has no nine-digit run at all; field names are only
    # looked up when one is there.
    if not _DIGIT_RUN.search(joined) or not is_bsn_shaped(joined):
        return
    for field, value in _strings(record):
        if is_bsn_shaped(value):
            raise RecordError(f"{field} holds a BSN-shaped value; audit records carry pseudonyms")


def validate(record: audit_pb2.AuditRecord) -> Columns:
    """Raise :class:`RecordError` when ``record`` may not enter the log; else its query columns.

    Besides the LDV shape (trace and span ids, a name, a processing activity,
    a pseudonym that is 32 bytes of lowercase hex), this refuses any string
    that looks like a BSN: the log holds pseudonyms, never identifiers.
    """
    trace_id, span_id = record.trace_id, record.span_id
    if not _HEX32.match(trace_id) or trace_id == _ZERO_TRACE:
        raise RecordError("trace_id must be 32 lowercase hex characters, not all zero")
    if not _HEX16.match(span_id) or span_id == _ZERO_SPAN:
        raise RecordError("span_id must be 16 lowercase hex characters, not all zero")
    if record.parent_span_id and not _HEX16.match(record.parent_span_id):
        raise RecordError("parent_span_id must be empty or 16 lowercase hex characters")
    if not record.name:
        raise RecordError("name (the operation) is required")
    if not record.processing_activity_id:
        raise RecordError("processing_activity_id is required")
    if not record.HasField("start_time") or not record.HasField("end_time"):
        raise RecordError("start_time and end_time are required")
    start, end = record.start_time, record.end_time
    for name, stamp in (("start_time", start), ("end_time", end)):
        if not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS or not 0 <= stamp.nanos < 10**9:
            raise RecordError(f"{name} must be a valid time between the years 1 and 9999")
    if (end.seconds, end.nanos) < (start.seconds, start.nanos):
        raise RecordError("end_time is before start_time")
    if record.data_subject_id:
        if not _PSEUDONYM.match(record.data_subject_id):
            raise RecordError(
                "data_subject_id must be a node-domain pseudonym: 64 lowercase hex characters"
            )
        if not record.data_subject_id_type:
            raise RecordError("data_subject_id_type is required with a data_subject_id")
    bundle_hash = record.decision.bundle_hash
    if bundle_hash and not _PSEUDONYM.match(bundle_hash):
        raise RecordError("decision.bundle_hash must be 64 lowercase hex characters")
    if record.log_index:
        raise RecordError("log_index is assigned by the log; leave it unset")
    if record.decision.outcome not in _OUTCOMES:
        raise RecordError("decision.outcome is not a known decision outcome")
    _check_no_bsn(record)
    cols = columns(record)
    check_columns(cols)
    return cols


def check_columns(cols: Columns) -> None:
    """Raise :class:`RecordError` when a query column does not fit its database column.

    The limits are read from the table itself (length, integer width), and a
    string must be storable on every supported database: UTF-8 without NUL
    characters. A record that passes never makes a shared group commit fail.
    """
    for name, field, length, bits in _COLUMN_LIMITS:
        value = getattr(cols, name)
        if value is None:
            continue
        if bits is None:
            _check_text(field, value, length)
        elif not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise RecordError(f"{field} does not fit its {bits}-bit column")


def _check_text(name: str, value: str, length: int | None) -> None:
    if length is not None and len(value) > length:
        raise RecordError(f"{name} is longer than {length} characters")
    if "\x00" in value:
        raise RecordError(f"{name} holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RecordError(f"{name} is not valid UTF-8 text") from None


@dataclass(frozen=True, slots=True)
class Columns:
    """The indexed query columns of one leaf, taken from its record."""

    data_subject_id: str | None
    processing_activity_id: str
    peer: str
    start_us: int
    outcome: int


def _column_limits() -> tuple[tuple[str, str, int | None, int | None], ...]:
    """(column, record field, text length or None, integer bits or None) of each column."""
    limits: list[tuple[str, str, int | None, int | None]] = []
    for name in Columns.__slots__:
        kind = tables.leaf.c[name].type
        field = _FIELD.get(name, name)
        if isinstance(kind, sa.String):
            limits.append((name, field, kind.length, None))
        else:
            bits = next(b for t, b in _INTEGER_BITS.items() if isinstance(kind, t))
            limits.append((name, field, None, bits))
    return tuple(limits)


_COLUMN_LIMITS = _column_limits()
"""Read from the table once, not per record."""


def columns(record: audit_pb2.AuditRecord) -> Columns:
    """The query columns of ``record``."""
    return Columns(
        data_subject_id=record.data_subject_id or None,
        processing_activity_id=record.processing_activity_id,
        peer=record.foreign_operation_processor,
        start_us=record.start_time.ToMicroseconds(),
        outcome=int(record.decision.outcome),
    )


def index_suffix(index: int) -> bytes:
    """The deterministic encoding of ``log_index = index`` (field 19, varint).

    Field 19 is the record's highest field number and records with unknown
    fields are refused, so deterministic serialisation of the placed record
    is exactly the unplaced bytes followed by this suffix (nothing for 0).
    """
    if index == 0:
        return b""
    out = bytearray(b"\x98\x01")
    while index > 0x7F:
        out.append((index & 0x7F) | 0x80)
        index >>= 7
    out.append(index)
    return bytes(out)


def leaf_bytes(record: audit_pb2.AuditRecord, index: int) -> bytes:
    """The exact bytes to hash for ``record`` at log position ``index``."""
    placed = audit_pb2.AuditRecord()
    placed.CopyFrom(record)
    placed.log_index = index
    return placed.SerializeToString(deterministic=True)


def decode(data: bytes) -> audit_pb2.AuditRecord:
    """Parse leaf bytes; raise :class:`RecordError` when they are not a record."""
    record = audit_pb2.AuditRecord()
    try:
        record.ParseFromString(data)
    except DecodeError as exc:
        raise RecordError("leaf bytes are not an AuditRecord") from exc
    return record
