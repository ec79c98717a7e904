"""A JSON object read at its top level only, and written back by splicing its own bytes.

A passthrough rewrites a handful of top-level fields (model, stream_options, the reasoning
fields) in a body of megabytes. Decoding the whole body to change them, and encoding it again,
costs far more than the relay itself, and the upstream would get our encoder's bytes instead
of the client's. Here the object is decoded one level deep (msgspec: every nested value stays
a `Raw` slice of the input, skipped and syntax-checked at C speed), each member's position is
found, and `RawObject.encode` copies every member nobody changed byte for byte, re-encoding
only the values that were replaced and dropping the members that were removed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import msgspec
from msgspec import Raw

from proxy.core import jsonutil

_TOP_LEVEL = msgspec.json.Decoder(dict[str, Raw])
_WHITESPACE = re.compile(rb"[ \t\n\r]*")
# A member's key and colon, from the whitespace before the key to the whitespace after the colon.
_KEY = re.compile(rb'[ \t\n\r]*"((?:[^"\\]|\\.)*)"[ \t\n\r]*:[ \t\n\r]*', re.DOTALL)


class RepeatedKey(ValueError):
    """The object names one key twice at its top level."""

    def __init__(self, key: str):
        super().__init__(f"the key {key!r} appears twice")
        self.key = key


@dataclass(frozen=True, slots=True)
class Member:
    key: str
    key_start: int  # the key's opening quote
    value_start: int
    value_end: int  # one past the value's last byte


@dataclass(frozen=True, slots=True)
class TopLevel:
    """The object's bytes, its members in order, and each value as an undecoded `Raw`."""

    raw: bytes
    members: tuple[Member, ...]
    values: dict[str, Raw]
    body_start: int  # just after the opening brace (where an empty object's members would go)


def read_top_level(raw: bytes) -> TopLevel:
    """Raises ValueError for anything but one JSON object (msgspec.DecodeError, or RepeatedKey for
    a top-level key given twice), RecursionError when it nests deeper than the decoder's guard."""
    values = _TOP_LEVEL.decode(raw)
    position = _WHITESPACE.match(raw).end() + 1  # msgspec checked it is an object: this is its `{`
    body_start, members, seen = position, [], set()
    if not values:
        return TopLevel(raw, (), values, body_start)
    while True:
        member = _member_at(raw, position, values)
        if member.key in seen:
            raise RepeatedKey(member.key)
        seen.add(member.key)
        members.append(member)
        position = _WHITESPACE.match(raw, member.value_end).end()
        following = raw[position:position + 1]
        if following == b"}":
            return TopLevel(raw, tuple(members), values, body_start)
        if following != b",":
            # The kept value is only a prefix of this one (1 of 1.5): the key's other occurrence won.
            raise RepeatedKey(member.key)
        position += 1


def _member_at(raw: bytes, position: int, values: dict[str, Raw]) -> Member:
    match = _KEY.match(raw, position)
    if match is None:
        raise ValueError("not a JSON object member")  # cannot happen after msgspec accepted it
    key = _key_text(match.group(1))
    value, start = values.get(key), match.end()
    # msgspec keeps the last value of a repeated key: this occurrence is that value only if the
    # bytes at its position are that value's bytes (one memcmp, no copy).
    if value is None or not raw.startswith(value, start):
        raise RepeatedKey(key)
    return Member(key, match.start(1) - 1, start, start + len(value))


def _key_text(escaped: bytes) -> str:
    if b"\\" not in escaped:
        return escaped.decode("utf-8")
    return msgspec.json.decode(b'"' + escaped + b'"', type=str)


@dataclass(frozen=True, slots=True)
class RawObject:
    """An object kept as its bytes, and the values first handed out from it (`origin`: decoded
    or still `Raw`): a value still identical (`is`) to its origin is written as its own bytes."""

    top: TopLevel
    origin: Mapping[str, Any]

    def encode(self, body: Mapping[str, Any]) -> bytes:
        """`body` as bytes: the original ones, except members replaced, removed or added since `origin`."""
        return b"".join(self.pieces(body))

    def pieces(self, body: Mapping[str, Any]) -> list[Any]:
        """What `encode` joins: views of the original bytes between the re-encoded parts, so a
        writer that takes several buffers (one `writelines`) sends megabytes without a copy."""
        top, origin = self.top, self.origin
        raw = memoryview(top.raw)
        pieces: list[Any] = []
        previous: Member | None = None
        last_end = top.body_start
        for index, member in enumerate(top.members):
            last_end = member.value_end
            if member.key not in body:
                continue
            if previous is not None:  # the client's own separator when the two were neighbours
                adjacent = top.members[index - 1] is previous
                pieces.append(raw[previous.value_end:member.key_start] if adjacent else b",")
            value = body[member.key]
            if value is origin.get(member.key, _ABSENT):
                pieces.append(raw[member.key_start:member.value_end])
            else:
                pieces.extend((raw[member.key_start:member.value_start], encode_value(value)))
            previous = member
        written = previous is not None
        for key, value in body.items():
            if key not in top.values:
                pieces.extend((b"," if written else b"", jsonutil.dumps(key), b":", encode_value(value)))
                written = True
        head = raw[:top.members[0].key_start] if top.members else raw[:top.body_start]
        return [head, *pieces, raw[last_end:]]


_ABSENT = object()


def encode_value(value: Any) -> bytes:
    return bytes(value) if isinstance(value, Raw) else jsonutil.dumps(value)


def without(raw: bytes, key: str) -> bytes:
    """The object's bytes minus its top-level `key` member (the same bytes when it has none)."""
    top = read_top_level(raw)
    if key not in top.values:
        return raw
    return RawObject(top, top.values).encode({name: value for name, value in top.values.items() if name != key})


def decode(value: Any) -> Any:
    """A top-level value as Python, whether still `Raw` or already decoded."""
    return jsonutil.loads(bytes(value)) if isinstance(value, Raw) else value
