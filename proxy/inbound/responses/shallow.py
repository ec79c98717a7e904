"""A Responses body read only at its top level, for a passthrough to Responses upstreams: every
request but one that continues a response the proxy stored (a `previous_response_id` of the
proxy's own, whose conversation the proxy replays). A passed-through answer is the upstream's, kept
in the upstream's own store when the client asks for `store`; the proxy's store never sees it.

`input` carries nearly every byte of an agent's body and only the upstream reads it, so it stays
the client's bytes (proxy/inbound/shallow.py): a non-empty string, or an array of at most
`limits.max_messages` items that are objects, in valid UTF-8, checked at C speed. Every other
field is decoded and takes the checks and translation of the thorough path
(request.to_chat_around_input), so the chain sees the pivot it always saw, but for `messages`;
a field only a Responses upstream takes (a hosted tool) gives the routing-only pivot, as there.
A body that continues a stored response, or that anything here doubts, is read whole (`None`).
"""
from __future__ import annotations

from typing import Any

import msgspec

from proxy.config.model import LimitsConfig
from proxy.core.errors import InvalidRequest
from proxy.core.splice import RawObject
from proxy.inbound import shallow, validation
from proxy.inbound.responses.request import ResponsesContext, routing_only, to_chat_around_input
from proxy.inbound.responses.stored import is_proxy_id


class _Item(msgspec.Struct):
    """An input item: an object, its members skipped unread."""


_ITEMS = msgspec.json.Decoder(list[_Item])


def read_responses(raw: bytes, limits: LimitsConfig) -> tuple[dict[str, Any], ResponsesContext, RawObject] | None:
    """(the pivot, the context, the client's object to splice into), or None for the thorough path."""
    read = shallow.read_around(raw, limits, "input", lambda value: _input_fits(value, limits))
    if read is None or is_proxy_id(read.rest.get("previous_response_id")):
        return None
    body = {**read.rest, "input": read.kept}
    try:
        pivot, context = to_chat_around_input(body)
        validation.check_chat(pivot, limits, messages_checked=True)
    except InvalidRequest:  # the thorough path's answer too: it goes to the Responses upstream as it is
        pivot, context = routing_only(body)
    return pivot, context, RawObject(read.top, read.top.values)


def _input_fits(value: msgspec.Raw, limits: LimitsConfig) -> bool:
    if memoryview(value)[0] == ord('"'):
        return len(value) > len('""')  # a string, but not an empty one
    return shallow.items_fit(value, _ITEMS, limits)

