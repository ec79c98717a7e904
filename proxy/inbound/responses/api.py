"""The Responses API as an inbound API of the chain (see proxy/inbound/__init__.py): a Responses
request becomes a chat pivot body, and the chain's chat answer or stream becomes a Response
object or Responses events. Stored responses are not kept yet: `previous_response_id` is refused
with a 400 that says so, and `store: true` is accepted with nothing kept."""
from __future__ import annotations

import time
import uuid
from typing import Any

from proxy.config.model import LimitsConfig
from proxy.core import jsonutil
from proxy.core.errors import InvalidRequest, ProxyError
from proxy.core.exchange import ProxyRequest, ProxyResponse
from proxy.inbound import validation
from proxy.inbound.responses.answer import from_chat
from proxy.inbound.responses.request import ResponsesContext, to_chat
from proxy.inbound.responses.stream import ChatToResponsesStream, failed_event
from proxy.streams.wrapper import FailureAsEvent


class ResponsesAPI:
    name = "responses"

    def parse(self, raw: bytes, limits: LimitsConfig) -> tuple[dict[str, Any], ResponsesContext]:
        body = validation.parse_json_object(raw, limits)
        if body.get("previous_response_id") is not None:
            raise InvalidRequest("previous_response_id needs stored responses, which this proxy does not keep yet; "
                                 "send the whole conversation in 'input' (as with store: false)",
                                 param="previous_response_id", code="previous_response_not_found")
        pivot, context = to_chat(body)
        validation.check_chat(pivot, limits)
        return pivot, context

    def render(self, response: ProxyResponse, context: ResponsesContext, request: ProxyRequest) -> ProxyResponse:
        if response.dialect is not None and response.dialect.name == self.name:
            return response  # an upstream that speaks Responses: its own answer, as it is
        response_id, created_at = "resp_" + uuid.uuid4().hex, int(time.time())
        upstream = response.upstream or "upstream"
        if response.events is not None:
            stream = ChatToResponsesStream(response.events, context, response_id, created_at, upstream)
            response.events = FailureAsEvent(stream, lambda exc: _failed(stream, exc))
            response.dialect = None
            return response
        response.body = jsonutil.dumps(from_chat(response.json_body(), context, response_id, created_at))
        response.content_type = "application/json"
        return response

    def error(self, error: ProxyError) -> tuple[int, bytes, dict[str, str]]:
        return error.status, error.body(), dict(error.headers)


def _failed(stream: ChatToResponsesStream, exc: Exception):
    if not isinstance(exc, ProxyError):
        return None
    return failed_event(stream.state, exc)


API = ResponsesAPI()
