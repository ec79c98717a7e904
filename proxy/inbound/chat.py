"""The OpenAI Chat Completions API inbound (`POST /v1/chat/completions`): the chain's own
vocabulary, so a request is only validated, and the answer leaves as the chain made it."""
from __future__ import annotations

from typing import Any

from proxy.config.model import LimitsConfig
from proxy.core.errors import ProxyError
from proxy.core.exchange import ProxyRequest, ProxyResponse
from proxy.inbound import validation


class ChatAPI:
    name = "chat"

    def parse(self, raw: bytes, limits: LimitsConfig) -> tuple[dict[str, Any], None]:
        body = validation.parse_json_object(raw, limits)
        validation.check_chat(body, limits)
        return body, None

    def render(self, response: ProxyResponse, context: None, request: ProxyRequest) -> ProxyResponse:
        return response

    def error(self, error: ProxyError) -> tuple[int, bytes, dict[str, str]]:
        return error.status, error.body(), dict(error.headers)


API = ChatAPI()
