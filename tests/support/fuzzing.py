"""Hypothesis strategies for any protobuf message, built from its descriptor.

Every field may be absent or set. Strings range from empty through the
lengths columns and checks care about (63, 64, 65, 255, 256, 1025) to
100 kB, in any script; bytes from empty to 100 kB; enums go beyond their
last value and below zero; integers reach their type's ends; repeated and
map fields hold a few entries; nested messages go three levels deep.

Random values alone are refused at the first check, so :class:`Seeds` mixes
in values that pass it: this node's and its peer's ids, the policy bundle's
activities and categories, existing case and task ids, and ready-made valid
messages (a whole valid request per RPC, a subject encrypted the right way,
a case reference). A message of a type with ready-made ones is drawn as one
of them, one of them with one or two fields replaced by drawn values, or
drawn field by field. That lets the fuzzer reach the checks deeper in each
flow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

BIG = 100_000
"""A string or bytes field of 100 kB."""
LENGTHS = (63, 64, 65, 255, 256, 1025, BIG)
MAX_DEPTH = 3

_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


@dataclass
class Seeds:
    """Values that pass a flow's first checks, mixed in with random ones."""

    strings: Sequence[str] = ()
    blobs: Sequence[bytes] = ()
    messages: Mapping[str, Sequence[Message]] = field(default_factory=dict)
    """Message full name -> ready-made messages of that type."""


def _text() -> st.SearchStrategy[str]:
    # Any code point a protobuf string can carry (no lone surrogates).
    return st.text(st.characters(exclude_categories=("Cs",)), max_size=24)


def strings(seeds: Seeds) -> st.SearchStrategy[str]:
    """Seeded, random, and long strings (ASCII, accented, right-to-left, NUL)."""
    long = st.tuples(st.sampled_from(LENGTHS), st.sampled_from(["a", "é", "\u202e", "\x00", "9"]))
    options = [_text(), long.map(lambda nc: nc[1] * nc[0])]
    if seeds.strings:
        options.insert(0, st.sampled_from(list(seeds.strings)))
    return st.one_of(options)


def blobs(seeds: Seeds) -> st.SearchStrategy[bytes]:
    """Seeded, random, and 100 kB byte strings."""
    options = [st.binary(max_size=96), st.just(b"\x00" * BIG)]
    if seeds.blobs:
        options.insert(0, st.sampled_from(list(seeds.blobs)))
    return st.one_of(options)


def _scalar(f: FieldDescriptor, seeds: Seeds) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_STRING:
        return strings(seeds)
    if f.type == FieldDescriptor.TYPE_BYTES:
        return blobs(seeds)
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type == FieldDescriptor.TYPE_ENUM:
        values = sorted(v.number for v in f.enum_type.values)
        return st.one_of(st.sampled_from(values), st.integers(-3, values[-1] + 3))
    if f.type in _INTS:
        low, high = _INTS[f.type]
        edges = [
            v for v in (0, 1, -1, 99, 100, 1000, 30_000, 30_001, low, high) if low <= v <= high
        ]
        return st.one_of(st.sampled_from(edges), st.integers(low, high))
    if f.type == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if f.type == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    raise TypeError(f"no strategy for field type {f.type} ({f.full_name})")


class MessageStrategies:
    """Strategies per message type, made once and shared by every field of that type."""

    def __init__(self, seeds: Seeds) -> None:
        self.seeds = seeds
        self._made: dict[tuple[str, int], st.SearchStrategy[Message]] = {}

    def of(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        """Messages of ``descriptor``'s type, ``depth`` levels below the request."""
        key = (descriptor.full_name, depth)
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = self._build(descriptor, depth)
        return made

    def _build(self, descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        cls = message_factory.GetMessageClass(descriptor)
        optional: dict[str, st.SearchStrategy[Any]] = {}
        for f in descriptor.fields:
            made = self._field(f, depth)
            if made is not None:
                optional[f.name] = made
        built = st.fixed_dictionaries({}, optional=optional).map(
            lambda values: _message(cls, descriptor, values)
        )
        ready = list(self.seeds.messages.get(descriptor.full_name, ()))
        if not ready or not optional:
            return st.one_of(st.sampled_from(ready), built) if ready else built
        changed = st.tuples(
            st.sampled_from(ready),
            st.lists(
                st.sampled_from(sorted(optional)), min_size=1, max_size=2, unique=True
            ).flatmap(lambda names: st.fixed_dictionaries({n: optional[n] for n in names})),
        ).map(lambda base_values: _changed(descriptor, *base_values))
        return st.one_of(st.sampled_from(ready), changed, changed, built)

    def _value(self, f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
        if f.type != FieldDescriptor.TYPE_MESSAGE:
            return _scalar(f, self.seeds)
        if depth >= MAX_DEPTH:
            return None
        return self.of(f.message_type, depth + 1)

    def _field(self, f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key = _scalar(f.message_type.fields_by_name["key"], self.seeds)
            value = self._value(f.message_type.fields_by_name["value"], depth)
            return None if value is None else st.dictionaries(key, value, max_size=3)
        value = self._value(f, depth)
        if value is None:
            return None
        if f.is_repeated:
            return st.lists(value, max_size=4)
        return value


def _message(cls: type[Message], descriptor: Descriptor, values: Mapping[str, Any]) -> Message:
    out = cls()
    for name, value in values.items():
        _set(out, descriptor.fields_by_name[name], value)
    return out


def _changed(descriptor: Descriptor, base: Message, values: Mapping[str, Any]) -> Message:
    """A copy of ``base`` with the fields in ``values`` replaced."""
    out = type(base)()
    out.CopyFrom(base)
    for name, value in values.items():
        out.ClearField(name)
        _set(out, descriptor.fields_by_name[name], value)
    return out


def _set(out: Message, f: FieldDescriptor, value: Any) -> None:
    target = getattr(out, f.name) if f.is_repeated else None
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        assert target is not None
        for k, v in value.items():
            if isinstance(v, Message):
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif target is not None:
        target.extend(value)
    elif isinstance(value, Message):
        getattr(out, f.name).CopyFrom(value)
    else:
        setattr(out, f.name, value)


__all__ = ["BIG", "MessageStrategies", "Seeds", "blobs", "strings"]
