"""What a user plugin may import. Everything else in `proxy` is internal and may move.

A plugin is named in the config as `plugins: [mypackage.module:Factory]`; the factory is
called once per config generation with a PluginContext and returns a Middleware:

    from proxy.api import Handler, PluginContext, ProxyRequest, ProxyResponse

    class AddTeamHeader:
        def __init__(self, context: PluginContext):
            self.team = context.options.get("team", "default")

        async def __call__(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
            response = await call_next(request)
            response.headers["x-team"] = self.team
            return response

A plugin that wants to see or change a stream wraps `response.events` in a StreamWrapper
subclass (transform, on_end, on_error, on_close); raising a ProxyError subclass answers the
client in the envelope of the API it came in on. tests/test_plugin_api.py pins these names.
"""
from proxy.core.chain import Handler, Middleware, PluginContext
from proxy.core.errors import (AuthenticationFailed, InvalidRequest, ModelNotFound, NotFound, ProxyError, RateLimited,
                               RequestTooLarge, ServiceUnavailable, UpstreamAuthError, UpstreamError, UpstreamHTTPError,
                               UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable)
from proxy.core.exchange import ProxyRequest, ProxyResponse, Target
from proxy.core.services import Services
from proxy.streams.sse import SSEEvent
from proxy.streams.wrapper import StreamWrapper

__all__ = [
    # the contract
    "Middleware", "Handler", "PluginContext", "Services",
    # what flows through it
    "ProxyRequest", "ProxyResponse", "Target", "SSEEvent", "StreamWrapper",
    # the one error tree
    "ProxyError", "InvalidRequest", "AuthenticationFailed", "NotFound", "ModelNotFound", "RequestTooLarge",
    "RateLimited", "ServiceUnavailable", "UpstreamError", "UpstreamUnreachable", "UpstreamTimeout",
    "UpstreamProtocolError", "UpstreamAuthError", "UpstreamHTTPError",
]
