"""A chat body read only as deep as the chain needs, for a passthrough to OpenAI-format upstreams.

The chain owns a handful of top-level fields (model, stream, stream_options, the reasoning
fields, the output caps); `messages` carries nearly every byte of a coding agent's body and is
the upstream's to read. So `messages` stays the client's bytes (a msgspec `Raw` in the body),
syntax-checked at C speed, and only its shape is checked here: an array of at most
`limits.max_messages` objects, each with a known role and a string, array or null content,
in valid UTF-8. Every other top-level field is small and takes the thorough checks as before
(repeated keys at any depth, 64-bit integers, nesting depth, types).

Whatever this path finds wrong it hands to the thorough path (`None`), whose answer (the 400,
its code and param) is the one the client gets: hostile input is answered as it always was.
What changes is only what this path never looks at: inside `messages`, see docs/security.md.
"""
from __future__ import annotations

from typing import Any, Literal

import msgspec

from proxy.config.model import LimitsConfig
from proxy.core import splice
from proxy.core.errors import InvalidRequest
from proxy.inbound import validation

_NULL = msgspec.Raw(b"null")


class _MessageHead(msgspec.Struct):
    """What the proxy checks of a message (the role in C, as it decodes); the rest is skipped unread."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: msgspec.Raw = _NULL


_MESSAGE_HEADS = msgspec.json.Decoder(list[_MessageHead])
_CONTENT_STARTS = frozenset(b'"[n')  # a string, an array of parts, or null
# UTF-8 is checked in blocks: decoding megabytes at once builds one wide string out of cache.
_UTF8_BLOCK = 256 * 1024


def read_chat(raw: bytes, limits: LimitsConfig) -> tuple[dict[str, Any], splice.RawObject] | None:
    """(the body with `messages` undecoded, the object its bytes are spliced from), or None when
    the body needs the thorough path, for its answer or because it is unusual (an escaped role)."""
    try:
        top = splice.read_top_level(raw)
    except (ValueError, RecursionError):
        return None
    messages = top.values.get("messages")
    if messages is None or not _messages_fit(messages, limits) or not _valid_utf8(memoryview(messages)):
        return None
    rest = splice.RawObject(top, top.values).encode(
        {key: value for key, value in top.values.items() if key != "messages"})
    try:
        body = validation.parse_json_object(rest, limits)
        body["messages"] = messages
        validation.check_chat(body, limits, messages_checked=True)
    except InvalidRequest:
        return None
    return body, splice.RawObject(top, dict(body))


def _messages_fit(messages: msgspec.Raw, limits: LimitsConfig) -> bool:
    try:
        heads = _MESSAGE_HEADS.decode(messages)
    except (msgspec.DecodeError, RecursionError):  # ValidationError included: not objects, an unknown role
        return False
    if not heads or len(heads) > limits.max_messages:
        return False
    return {memoryview(head.content)[0] for head in heads} <= _CONTENT_STARTS


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
