"""A Messages body read only at its top level, for a passthrough to Anthropic upstreams.

`messages` carries nearly every byte of Claude Code's body and only Anthropic reads it, so it
stays the client's bytes (proxy/inbound/shallow.py): an array of at most `limits.max_messages`
turns, each `user` or `assistant` with a string or an array of content, in valid UTF-8, checked
at C speed. Every other field (`system` and `tools` included: the tool choice is read against the
tools' names) is decoded and takes the checks and translation of the thorough path
(request.to_chat_around_messages), so the chain sees the pivot it always saw, but for `messages`.
Whatever is found wrong is answered by the thorough path (`None`).
"""
from __future__ import annotations

from typing import Any, Literal

import msgspec

from proxy.config.model import LimitsConfig
from proxy.core.errors import InvalidRequest
from proxy.core.splice import RawObject
from proxy.inbound import shallow, validation
from proxy.inbound.messages.request import MessagesContext, chat_body, to_chat_around_messages


class _TurnHead(msgspec.Struct):
    """What the proxy checks of a turn (the role in C, as it decodes); the rest is skipped unread."""

    role: Literal["user", "assistant"]
    content: msgspec.Raw


_TURN_HEADS = msgspec.json.Decoder(list[_TurnHead])
_CONTENT_STARTS = frozenset(b'"[')  # a string, or an array of content blocks


def read_messages(raw: bytes, limits: LimitsConfig) -> tuple[dict[str, Any], MessagesContext, RawObject] | None:
    """(the pivot, the context, the client's object to splice into), or None for the thorough path."""
    read = shallow.read_around(raw, limits, "messages",
                               lambda turns: shallow.items_fit(turns, _TURN_HEADS, limits, _CONTENT_STARTS))
    if read is None:
        return None
    try:
        pivot, context = chat_body({**read.rest, "messages": read.kept}, to_chat_around_messages)
        validation.check_chat(pivot, limits, messages_checked=True)
    except InvalidRequest:
        return None
    return pivot, context, RawObject(read.top, read.top.values)
