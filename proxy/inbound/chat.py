"""The OpenAI Chat Completions API inbound (`POST /v1/chat/completions`): the chain's own
vocabulary, so a request is only validated, and the answer leaves as the chain made it.

A body of SHALLOW_FROM_BYTES or more is read shallowly (proxy/inbound/shallow.py: `messages`
left as the client's bytes, the context the object to splice them from); the server asks for
the whole body (`parse_fully`) when a target would read the messages: a translating or
in-process upstream, or a user plugin."""
from __future__ import annotations

from typing import Any

from proxy.config.model import LimitsConfig
from proxy.core.errors import ProxyError
from proxy.core.exchange import ProxyRequest, ProxyResponse
from proxy.core.services import Services
from proxy.core.splice import RawObject
from proxy.inbound import Parsed, shallow, validation

# Below this size the whole body is decoded: for a small body the one C-speed decode is cheaper
# than the shallow read's two passes and the splice (measured with `python -m bench`).
SHALLOW_FROM_BYTES = 64 * 1024


class ChatAPI:
    name = "chat"

    async def parse(self, raw: bytes, limits: LimitsConfig, services: Services) -> Parsed:
        shallow_read = shallow.read_chat(raw, limits) if len(raw) >= SHALLOW_FROM_BYTES else None
        if shallow_read is not None:
            body, spliceable = shallow_read
            return Parsed(body, spliceable)
        return Parsed(self.parse_fully(raw, limits), None)

    def parse_fully(self, raw: bytes, limits: LimitsConfig) -> dict[str, Any]:
        body = validation.parse_json_object(raw, limits)
        validation.check_chat(body, limits)
        return body

    async def render(self, response: ProxyResponse, context: RawObject | None, request: ProxyRequest) -> ProxyResponse:
        return response

    def error(self, error: ProxyError) -> tuple[int, bytes, dict[str, str]]:
        return error.status, error.body(), dict(error.headers)


API = ChatAPI()
