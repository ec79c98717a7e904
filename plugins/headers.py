"""headers: what the upstream sees besides the body.

- the upstream's own auth (`Authorization: Bearer`, or `x-api-key` plus
  `anthropic-version` for Anthropic-format upstreams);
- configured `headers:` verbatim;
- the client's other headers, minus its credentials and hop-by-hop headers;
- `x-request-id`, kept from the client or made by the server;
- a Messages client's `anthropic-version` when the upstream speaks Messages too (the client's
  `anthropic-beta` is forwarded like any other header).
Auth and configured headers are computed once per upstream at build time.
"""
from __future__ import annotations

from proxy.api import Handler, PluginContext, ProxyRequest, ProxyResponse
from proxy.wire.registry import upstream_headers

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection"})
# The client's credentials are for the proxy; the upstream gets the proxy's own.
CLIENT_CREDENTIALS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie",
                                "openai-organization", "openai-project", "anthropic-version"})
# Framing and routing belong to this hop and are recomputed by the transport.
PER_HOP = frozenset({"host", "content-length", "content-type", "content-encoding", "accept-encoding", "expect",
                     "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip"})
DROPPED = HOP_BY_HOP | CLIENT_CREDENTIALS | PER_HOP


def forwardable(client_headers: dict[str, str]) -> dict[str, str]:
    named_in_connection = {token.strip().lower() for token in client_headers.get("connection", "").split(",")}
    return {name: value for name, value in client_headers.items()
            if name not in DROPPED and name not in named_in_connection and not name.startswith("x-byok-")}


class HeadersMiddleware:
    def __init__(self, context: PluginContext):
        self._static = {name: upstream_headers(upstream)
                        for name, upstream in context.config.upstreams.items()}

    async def __call__(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        upstream = request.target.upstream
        headers = forwardable(request.client_headers)  # lower-case names
        for name, value in (self._static.get(upstream.name) or upstream_headers(upstream)).items():
            headers.pop(name.lower(), None)
            headers[name] = value
        version = request.client_headers.get("anthropic-version")
        if version and request.passes_through(upstream):
            headers["anthropic-version"] = version  # a Messages client's own version reaches Anthropic
        headers["x-request-id"] = request.request_id
        return await call_next(request.replace(upstream_headers=headers))


def create(context: PluginContext) -> HeadersMiddleware:
    return HeadersMiddleware(context)
