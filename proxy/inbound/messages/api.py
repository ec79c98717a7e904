"""The Anthropic Messages API as an inbound API of the chain (see proxy/inbound/__init__.py).

To an Anthropic upstream the request passes through as it is (the transport sends the client's
own body and returns the upstream's own events); to any other upstream the Messages request is
translated into the chat pivot and the chat answer or stream back into a Message or Messages
events. Errors leave in Anthropic's envelope with Anthropic's statuses. Documents, server tools,
MCP servers and the other features only Anthropic can serve are passed through when Anthropic
upstreams lead the model's targets, and refused (400, naming the field) when a chat upstream
would have to take them. A large body is read only at its top level (shallow.py) unless the
server asks for it whole, which it does when a target would translate it."""
from __future__ import annotations

from proxy.config.model import LimitsConfig
from proxy.core import jsonutil
from proxy.core.errors import ProxyError
from proxy.core.exchange import ProxyRequest, ProxyResponse
from proxy.core.services import Services
from proxy.inbound import Parsed, shallow, validation
from proxy.inbound.messages.answer import from_chat
from proxy.inbound.messages.errors import envelope, error_event
from proxy.inbound.messages.request import MessagesContext, chat_body
from proxy.inbound.messages.shallow import read_messages
from proxy.inbound.messages.stream import ChatToMessagesStream
from proxy.streams.wrapper import FailureAsEvent


class MessagesAPI:
    name = "messages"

    async def parse(self, raw: bytes, limits: LimitsConfig, services: Services, whole: bool = False) -> Parsed:
        read = read_messages(raw, limits) if not whole and shallow.big_enough(raw) else None
        if read is not None:
            pivot, context, spliced = read
            return Parsed(pivot, context, native_only=context.anthropic_only, spliced=spliced)
        pivot, context = chat_body(validation.parse_json_object(raw, limits))
        validation.check_chat(pivot, limits)
        return Parsed(pivot, context, native_only=context.anthropic_only)

    async def render(self, response: ProxyResponse, context: MessagesContext, request: ProxyRequest) -> ProxyResponse:
        upstream = response.upstream or "upstream"
        if response.events is not None:
            if response.dialect is None or response.dialect.name != self.name:
                response.events = ChatToMessagesStream(response.events, context, upstream=upstream)
            # after the stream began, a failure is one Anthropic `error` event, in either case
            response.events = FailureAsEvent(response.events, _error_event)
            response.dialect = None
            return response
        if response.dialect is not None and response.dialect.name == self.name:
            return response  # an Anthropic upstream's own message, as it is
        response.body = jsonutil.dumps(from_chat(response.json_body(), context, upstream=upstream))
        response.content_type = "application/json"
        return response

    def error(self, error: ProxyError) -> tuple[int, bytes, dict[str, str]]:
        return envelope(error)


def _error_event(exc: Exception):
    return error_event(exc) if isinstance(exc, ProxyError) else None


API = MessagesAPI()
