"""A body read only as deep as the chain needs, for a passthrough to upstreams that speak the
client's API: the chat body here; Messages' and Responses' in their packages, with the same parts.

The chain owns a handful of top-level fields (model, stream, the reasoning fields, the output
caps); one member carries nearly every byte of a coding agent's body (chat's and Messages'
`messages`, Responses' `input`) and is the upstream's to read. So that member stays the client's
bytes (a msgspec `Raw`), syntax-checked at C speed, and only its shape is checked: an array of
at most `limits.max_messages` items (`items_fit`) in valid UTF-8. Every other top-level field is
small and takes the thorough checks as before (repeated keys at any depth, 64-bit integers,
nesting depth, types): `read_around`.

Whatever a shallow read finds wrong it hands to the thorough path (`None`), whose answer (the
400, its code and param) is the one the client gets: hostile input is answered as it always was.
What changes is only what this path never looks at: inside that member, see docs/security.md.
"""
from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple, Optional

import msgspec

from proxy.config.model import LimitsConfig
from proxy.core import splice
from proxy.core.errors import InvalidRequest
from proxy.inbound import validation

# Below this size the whole body is decoded: for a small body the one C-speed decode is cheaper
# than the shallow read's two passes and the splice (measured with `python -m bench`).
SHALLOW_FROM_BYTES = 64 * 1024
# UTF-8 is checked in blocks: decoding megabytes at once builds one wide string out of cache.
_UTF8_BLOCK = 256 * 1024
_NULL = msgspec.Raw(b"null")


def big_enough(raw: bytes) -> bool:
    """Whether a body is worth reading shallowly (SHALLOW_FROM_BYTES)."""
    return len(raw) >= SHALLOW_FROM_BYTES


class ReadAround(NamedTuple):
    rest: dict[str, Any]     # every other top-level member, decoded and checked as the thorough path does
    kept: msgspec.Raw        # the member left unread: the client's bytes
    top: splice.TopLevel     # the object, to splice the fields the chain changes into


def read_around(raw: bytes, limits: LimitsConfig, name: str,
                fits: Callable[[msgspec.Raw], bool]) -> Optional[ReadAround]:
    """The body with its member `name` left unread, once `fits` accepts that member's bytes; None
    when the body needs the thorough path, for its answer or because it is unusual."""
    try:
        top = splice.read_top_level(raw)
    except (ValueError, RecursionError):
        return None
    kept = top.values.get(name)
    if kept is None or not fits(kept) or not _valid_utf8(memoryview(kept)):
        return None
    rest = splice.RawObject(top, top.values).encode({key: value for key, value in top.values.items() if key != name})
    try:
        return ReadAround(validation.parse_json_object(rest, limits), kept, top)
    except InvalidRequest:
        return None


def items_fit(value: msgspec.Raw, heads: msgspec.json.Decoder, limits: LimitsConfig,
              content_starts: frozenset[int] | None = None) -> bool:
    """Whether `value` is an array of 1 to `limits.max_messages` items that `heads` decodes (each
    item's checked fields, read in C; the rest skipped unread), each head's `content` starting
    with one of `content_starts` when given (its JSON type, from its first byte)."""
    try:
        items = heads.decode(value)
    except (msgspec.DecodeError, RecursionError):  # ValidationError included: not objects, an unknown role
        return False
    if not items or len(items) > limits.max_messages:
        return False
    return content_starts is None or {memoryview(item.content)[0] for item in items} <= content_starts


# ---- chat ---------------------------------------------------------------------------------------

class _MessageHead(msgspec.Struct):
    """What the proxy checks of a chat message (the role in C, as it decodes); the rest is skipped unread."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: msgspec.Raw = _NULL


_MESSAGE_HEADS = msgspec.json.Decoder(list[_MessageHead])
_CONTENT_STARTS = frozenset(b'"[n')  # a string, an array of parts, or null


def read_chat(raw: bytes, limits: LimitsConfig) -> tuple[dict[str, Any], splice.RawObject] | None:
    """(the body with `messages` undecoded, the object its bytes are spliced from), or None when
    the body needs the thorough path, for its answer or because it is unusual (an escaped role)."""
    read = read_around(raw, limits, "messages", lambda messages: items_fit(messages, _MESSAGE_HEADS, limits,
                                                                          _CONTENT_STARTS))
    if read is None:
        return None
    body = read.rest
    body["messages"] = read.kept
    try:
        validation.check_chat(body, limits, messages_checked=True)
    except InvalidRequest:
        return None
    return body, splice.RawObject(read.top, dict(body))


def _valid_utf8(view: memoryview) -> bool:
    start, end = 0, len(view)
    while start < end:
        stop = min(start + _UTF8_BLOCK, end)
        for _ in range(3):  # never cut inside a character (a longer run of continuations is invalid anyway)
            if stop < end and 0x80 <= view[stop] < 0xC0:
                stop -= 1
        try:
            str(view[start:stop], "utf-8")
        except UnicodeDecodeError:
            return False
        start = stop
    return True
