"""The Responses API as an inbound API of the chain (see proxy/inbound/__init__.py): a Responses
request becomes a chat pivot body, and the chain's chat answer or stream becomes a Response
object or Responses events.

Stored responses (stored.py, keeping.py): a `previous_response_id` the proxy made is continued
by replaying the stored conversation before the new input, so it works on every upstream format;
with `store: true` (the default) each finished response is kept for the next turn and for
GET /v1/responses/{id}. An id the proxy did not make belongs to an upstream's own store and is
left in the request for a Responses-format upstream. A large body the store has no part in is
read only at its top level (shallow.py) unless the server asks for it whole, which it does when
a target would translate it."""
from __future__ import annotations

import time
from typing import Any, AsyncIterator

from proxy.config.model import LimitsConfig
from proxy.core import jsonutil
from proxy.core.errors import InvalidRequest, ProxyError
from proxy.core.exchange import ProxyRequest, ProxyResponse
from proxy.core.services import Services
from proxy.inbound import Parsed, shallow, validation
from proxy.inbound.responses.answer import from_chat
from proxy.inbound.responses.keeping import KeepOnCompletion, Turn, carried_from_chat, keep
from proxy.inbound.responses.request import routing_only, to_chat
from proxy.inbound.responses.shallow import read_responses
from proxy.inbound.responses.stored import input_item_list, is_proxy_id, load_previous, new_response_id
from proxy.inbound.responses.stream import ChatToResponsesStream, failed_event
from proxy.state.store import ResponseStore, StoreUnavailable
from proxy.streams.sse import SSEEvent
from proxy.streams.wrapper import FailureAsEvent, StreamWrapper


class ResponsesAPI:
    name = "responses"

    async def parse(self, raw: bytes, limits: LimitsConfig, services: Services, whole: bool = False) -> Parsed:
        store = services.responses_store
        read = read_responses(raw, limits) if not whole and shallow.big_enough(raw) else None
        if read is not None:
            pivot, context, spliced = read
            return Parsed(pivot, Turn(context), spliced=spliced)
        return await _parse_whole(raw, limits, store)

    async def render(self, response: ProxyResponse, turn: Turn, request: ProxyRequest) -> ProxyResponse:
        if response.dialect is not None and response.dialect.name == self.name:
            if response.events is not None:  # after the stream began, a failure is one `error` event
                numbered = _Numbered(response.events)
                response.events = FailureAsEvent(numbered, lambda exc: _error_event(exc, numbered.next_number()))
            response.dialect = None
            return response  # an upstream that speaks Responses: its own answer, as it is
        context = turn.context
        response_id, created_at = new_response_id(), int(time.time())
        upstream = response.upstream or "upstream"
        if response.events is not None:
            stream = ChatToResponsesStream(response.events, context, response_id, created_at, upstream)
            events = KeepOnCompletion(stream, turn, stream.state.carried) if turn.store is not None else stream
            response.events = FailureAsEvent(events, lambda exc: _failed(stream, exc))
            response.dialect = None
            return response
        completion = response.json_body()
        answer = from_chat(completion, context, response_id, created_at)
        if turn.store is not None:
            await keep(turn, answer, carried_from_chat(completion, context, response_id))
        response.body = jsonutil.dumps(answer)
        response.content_type = "application/json"
        return response

    def error(self, error: ProxyError) -> tuple[int, bytes, dict[str, str]]:
        return error.status, error.body(), dict(error.headers)


async def _parse_whole(raw: bytes, limits: LimitsConfig, store: ResponseStore | None) -> Parsed:
    body = validation.parse_json_object(raw, limits)
    previous = body.get("previous_response_id")
    history = (await load_previous(store, previous)).conversation() if is_proxy_id(previous) else []
    native = None
    if history:
        body = {**body, "input": history + input_item_list(body.get("input"))}
        # A Responses upstream never saw the proxy's id: it is sent the conversation in full.
        native = jsonutil.dumps({name: value for name, value in body.items() if name != "previous_response_id"})
    try:
        pivot, context = to_chat(body)
        validation.check_chat(pivot, limits)
    except InvalidRequest as refusal:
        # What only a Responses upstream takes (hosted tools and their items): passed through
        # to one, answered with this refusal by any other.
        pivot, context = routing_only(body)
        return Parsed(pivot, Turn(context), native, refusal)
    keeps = context.store and store is not None
    outage = None
    if keeps and not store.available():
        # Only a translated answer goes to the proxy's store; a Responses upstream keeps its own.
        keeps, outage = False, StoreUnavailable("the responses store cannot be reached; send store: false to go "
                                                "without it")
    items = tuple(body["input"] if history else input_item_list(body.get("input"))) if keeps else ()
    turn = Turn(context, store if keeps else None, items)
    if isinstance(previous, str) and not history:  # an upstream's id: only its own store has it
        return Parsed(pivot, turn, native, _not_stored_here(previous))
    return Parsed(pivot, turn, native, outage)


def _not_stored_here(response_id: str) -> InvalidRequest:
    return InvalidRequest(f"Previous response with id '{response_id}' not found. It was not made by this proxy, so "
                          f"only the format: responses upstream that made it can continue it",
                          param="previous_response_id", code="previous_response_not_found")


class _Numbered(StreamWrapper):
    """An upstream's Responses events passed on as they are, the last one remembered: the `error`
    event that ends a broken stream takes the next sequence number."""

    __slots__ = ("_last",)

    def __init__(self, inner: AsyncIterator[SSEEvent]):
        super().__init__(inner)
        self._last: SSEEvent | None = None

    def transform(self, event: SSEEvent) -> SSEEvent:
        self._last = event
        return event

    def next_number(self) -> int:
        number = self._last.json_object().get("sequence_number") if self._last is not None else None
        return number + 1 if isinstance(number, int) else 0


def _error_event(exc: Exception, sequence_number: int) -> Any:
    if not isinstance(exc, ProxyError):
        return None
    error = exc.envelope()["error"]
    return SSEEvent.from_json({"type": "error", "code": error["code"], "message": error["message"],
                               "param": error["param"], "sequence_number": sequence_number}, event="error")


def _failed(stream: ChatToResponsesStream, exc: Exception) -> Any:
    if not isinstance(exc, ProxyError):
        return None
    return failed_event(stream.state, exc)


API = ResponsesAPI()
