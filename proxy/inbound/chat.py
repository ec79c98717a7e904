"""The OpenAI Chat Completions API inbound (`POST /v1/chat/completions`): the chain's own
vocabulary, so a request is only validated, and the answer leaves as the chain made it.

A body of SHALLOW_FROM_BYTES or more is read shallowly when allowed (proxy/inbound/shallow.py:
`messages` left as the client's bytes, `Parsed.spliced` the object to splice them from); the
server asks for the whole body (`whole=True`) when a target would read the messages: a
translating or in-process upstream, or a user plugin."""
from __future__ import annotations

from typing import Any

from proxy.config.model import LimitsConfig
from proxy.core.errors import ProxyError
from proxy.core.exchange import ProxyRequest, ProxyResponse
from proxy.core.services import Services
from proxy.inbound import Parsed, shallow, validation


class ChatAPI:
    name = "chat"

    async def parse(self, raw: bytes, limits: LimitsConfig, services: Services, whole: bool = False) -> Parsed:
        read = shallow.read_chat(raw, limits) if not whole and shallow.big_enough(raw) else None
        if read is not None:
            body, spliced = read
            return Parsed(body, None, spliced=spliced)
        return Parsed(self.parse_fully(raw, limits), None)

    def parse_fully(self, raw: bytes, limits: LimitsConfig) -> dict[str, Any]:
        body = validation.parse_json_object(raw, limits)
        validation.check_chat(body, limits)
        return body

    async def render(self, response: ProxyResponse, context: None, request: ProxyRequest) -> ProxyResponse:
        return response

    def error(self, error: ProxyError) -> tuple[int, bytes, dict[str, str]]:
        return error.status, error.body(), dict(error.headers)


API = ChatAPI()
