"""Keeping each finished Response in the store (`store: true`, the Responses default).

A whole answer is kept before it is returned; a stream is never collected for it: the
translated events pass on one by one, and the Response the terminal event already carries
(`response.completed` lists every output item) is kept before that event is passed on, so a
client that continues at once finds it. A store that cannot be reached at that point costs the
record, not the answer: the client still gets its response, and the failure is logged (by id,
never by content).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional

from proxy.core.errors import ProxyError
from proxy.inbound.responses.answer import items_from_chat
from proxy.inbound.responses.request import ENCRYPTED_REASONING, ResponsesContext
from proxy.inbound.responses.stored import StoredResponse
from proxy.state.store import ResponseStore
from proxy.streams.sse import SSEEvent
from proxy.streams.wrapper import StreamWatcher

log = logging.getLogger("byok.responses.store")
KEPT_STATUSES = ("completed", "incomplete")
_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})


@dataclass(frozen=True, slots=True)
class Turn:
    """One create request: its context, and what keeping its response needs."""

    context: ResponsesContext
    store: Optional[ResponseStore] = None        # None: nothing is kept (store: false)
    input_items: tuple[dict[str, Any], ...] = ()  # the earlier turns' items, then this request's input


async def keep(turn: Turn, response: dict[str, Any], carried: dict[str, str]) -> None:
    if turn.store is None or response.get("status") not in KEPT_STATUSES:
        return
    record = StoredResponse(response, list(turn.input_items), dict(carried)).encode()
    try:
        kept = await turn.store.put(response["id"], record)
    except ProxyError:  # the store is down: already logged by the store
        log.warning("response %s was not stored: the responses store cannot be reached", response["id"])
        return
    if not kept:
        log.warning("response %s was not stored: its record (%d bytes) is larger than responses.store.max_bytes",
                    response["id"], len(record))


def carried_from_chat(completion: Any, context: ResponsesContext, response_id: str) -> dict[str, str]:
    """The encrypted reasoning of a whole answer's reasoning items, for a client that did not
    ask for it (the same items, built as if it had: ids are the same)."""
    if context.wants_encrypted_reasoning:
        return {}
    choices = completion.get("choices") if isinstance(completion, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    full = dataclasses.replace(context, include=(*context.include, ENCRYPTED_REASONING))
    return {item["id"]: item["encrypted_content"] for item in items_from_chat(message, full, response_id)
            if item["type"] == "reasoning" and item.get("encrypted_content")}


class KeepOnCompletion(StreamWatcher):
    """The translated stream, passed on event by event; its final Response kept on the way."""

    __slots__ = ("_turn", "_carried")

    def __init__(self, inner: AsyncIterator[SSEEvent], turn: Turn, carried: dict[str, str]):
        super().__init__(inner)
        self._turn = turn
        self._carried = carried  # filled by the translator as reasoning items finish

    async def __anext__(self) -> SSEEvent:
        # StreamWatcher's step written out (one coroutine per event, not two)
        try:
            event = await self._inner.__anext__()
        except BaseException as exc:
            raised = await self._ended(exc)
            if raised is exc:
                raise
            raise raised from None
        raw = event.raw  # a terminal event's name is in its bytes: the others are not read
        if (raw.find(b"response.completed") >= 0 or raw.find(b"response.incomplete") >= 0) \
                and event.event in _TERMINAL_EVENTS:
            payload = event.json()
            if isinstance(payload, dict) and isinstance(payload.get("response"), dict):
                await keep(self._turn, payload["response"], self._carried)
        return event
