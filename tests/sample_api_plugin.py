"""A user plugin that imports nothing from proxy but proxy.api: it counts the events of each
stream with a StreamWrapper, refuses one model with an error from the tree, and reads the
typed services it was given."""
from typing import Optional

from proxy.api import Handler, InvalidRequest, PluginContext, ProxyRequest, ProxyResponse, SSEEvent, StreamWrapper


class CountEvents(StreamWrapper):
    __slots__ = ("_response", "_seen")

    def __init__(self, response: ProxyResponse):
        super().__init__(response.events)
        self._response, self._seen = response, 0

    def transform(self, event: SSEEvent) -> Optional[SSEEvent]:
        self._seen += 1
        return event

    def on_close(self) -> None:
        CountingPlugin.finished_streams.append(self._seen)


class CountingPlugin:
    finished_streams: list[int] = []

    def __init__(self, context: PluginContext):
        self.refused = context.options.get("refuse", "")
        self.has_metrics = context.services.metrics is not None

    async def __call__(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        if isinstance(request.body, dict) and request.body.get("model") == self.refused:
            raise InvalidRequest(f"model '{self.refused}' is refused by policy", param="model", code="refused")
        response = await call_next(request)
        response.headers["x-plugin-metrics"] = str(self.has_metrics).lower()
        if response.events is not None:
            response.events = CountEvents(response)
        return response
