"""`POST /v1/messages/count_tokens` as an inbound API (see proxy/inbound/__init__.py).

Exact where it can be: when the model's first target is an Anthropic upstream, the client's
body is passed through the chain to that upstream's own count_tokens (its auth, the client's
anthropic-version and anthropic-beta; only `model` rewritten) and Anthropic's answer comes back
as it is. Otherwise no upstream can count this model's tokens, so the proxy answers with the
offline estimate of count.py, without a call. Errors leave in Anthropic's envelope.
"""
from __future__ import annotations

from typing import Any

from proxy.config.model import LimitsConfig
from proxy.core import jsonutil
from proxy.core.exchange import ProxyRequest, ProxyResponse
from proxy.core.services import Services
from proxy.inbound import Parsed, validation
from proxy.inbound.messages.api import MessagesAPI
from proxy.inbound.messages.count import estimate_input_tokens
from proxy.inbound.messages.request import chat_body


class CountTokensAPI(MessagesAPI):
    async def parse(self, raw: bytes, limits: LimitsConfig, services: Services, whole: bool = False) -> Parsed:
        """The body is checked as a Messages request would be (a count has no max_tokens, so one is
        assumed); the context is the client's body, for the estimate. Always read whole: a count is
        estimated from every turn when no Anthropic upstream leads."""
        body = validation.parse_json_object(raw, limits)
        pivot, _ = chat_body({"max_tokens": 1, **body})
        pivot.pop("stream", None)  # a count is one JSON answer, whatever the body says
        validation.check_chat(pivot, limits)
        return Parsed(pivot, body)

    def route(self, request: ProxyRequest, body: dict[str, Any]) -> ProxyRequest | ProxyResponse:
        """The request narrowed to the Anthropic upstreams that lead its targets (a chat upstream
        cannot count), or the estimate when none does."""
        counting = request.leading_native_targets()
        if not counting:
            return ProxyResponse(body=jsonutil.dumps({"input_tokens": estimate_input_tokens(body)}))
        return request.replace(targets=counting, target=counting[0])

    async def render(self, response: ProxyResponse, context: Any, request: ProxyRequest) -> ProxyResponse:
        return response  # Anthropic's own count, or the estimate: already in Anthropic's shape


API = CountTokensAPI()
