"""The OpenAI Chat Completions API inbound (`POST /v1/chat/completions`): the chain's own
vocabulary, so a request is only validated, and the answer leaves as the chain made it."""
from __future__ import annotations

from proxy.config.model import LimitsConfig
from proxy.core.errors import ProxyError
from proxy.core.exchange import ProxyRequest, ProxyResponse
from proxy.core.services import Services
from proxy.inbound import Parsed, validation


class ChatAPI:
    name = "chat"

    async def parse(self, raw: bytes, limits: LimitsConfig, services: Services) -> Parsed:
        body = validation.parse_json_object(raw, limits)
        validation.check_chat(body, limits)
        return Parsed(body, None)

    async def render(self, response: ProxyResponse, context: None, request: ProxyRequest) -> ProxyResponse:
        return response

    def error(self, error: ProxyError) -> tuple[int, bytes, dict[str, str]]:
        return error.status, error.body(), dict(error.headers)


API = ChatAPI()
