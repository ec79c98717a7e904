"""observe: the outermost middleware — one request's metrics and access log line.

Both are written once, when the response is complete: for a plain answer when
it comes back, for a stream when the stream ends (finished, failed, or the
client went away). Everything is read from the request's trace, which the
inner middleware filled in: attempts in order with their fallback reasons,
first-token time, token usage, queue wait, dispatch time.

The server enters each request into the drain registry (proxy/server/lifecycle.py);
this middleware only turns the drain's interruption into the error the client is told about.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from proxy.api import Handler, PluginContext, ProxyError, ProxyRequest, ProxyResponse, SSEEvent
from proxy.observability.logs import RequestLog, log_request
from proxy.streams.wrapper import StreamWatcher

CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer was complete


class Observe:
    def __init__(self, metrics: Any, drain: Any, log_requests: bool):
        self.metrics, self.drain, self.log_requests = metrics, drain, log_requests

    async def __call__(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        record = _Record(self, request)
        try:
            response = await call_next(request)
        except ProxyError as error:
            record.finish(error.status, error)
            raise
        except asyncio.CancelledError:
            error = record.cancelled()
            if error is None:
                raise
            raise error from None
        except BaseException:
            record.finish(500)  # a bug; the server logs it and answers 500
            raise
        if response.is_stream:
            response.events = _WatchedStream(response.events, record, response.status)
        else:
            record.finish(response.status)
        return response


class _Record:
    """One request on its way: finished exactly once, by whichever end comes first."""

    __slots__ = ("observer", "request", "task", "done")

    def __init__(self, observer: Observe, request: ProxyRequest):
        self.observer, self.request, self.done = observer, request, False
        self.task = asyncio.current_task()  # the server entered it into the drain; a drain cancels this task

    def cancelled(self) -> ProxyError | None:
        """After a CancelledError: the drain's error to raise instead, or None when the
        client went away (the cancellation then goes on)."""
        drain = self.observer.drain
        error = drain.interrupted(self.task) if drain is not None else None
        self.finish(CLIENT_CLOSED if error is None else error.status, error)
        return error

    def finish(self, status: int, error: ProxyError | None = None) -> None:
        if self.done:
            return
        self.done = True
        observer = self.observer
        now = time.monotonic()
        if observer.metrics is not None:
            observer.metrics.observe_finished(self.request, status, error, now)
        if observer.log_requests:
            log_request(RequestLog.finished(self.request, status, error, now))


class _WatchedStream(StreamWatcher):
    """Passes events through untouched; finishes the record when the stream ends."""

    __slots__ = ("_record", "_status")

    def __init__(self, inner: AsyncIterator[SSEEvent], record: _Record, status: int):
        super().__init__(inner)
        self._record, self._status = record, status

    def on_end(self) -> None:
        self._record.finish(self._status)

    def on_error(self, exc: BaseException) -> BaseException | None:
        if isinstance(exc, ProxyError):
            self._record.finish(exc.status, exc)
        elif isinstance(exc, asyncio.CancelledError):
            return self._record.cancelled()  # the drain's error instead, or None: the client went away
        else:
            self._record.finish(500)
        return None

    def on_close(self) -> None:
        self._record.finish(CLIENT_CLOSED)  # a no-op when the stream already ended: the consumer stopped reading


def create(context: PluginContext) -> Observe:
    services = context.services
    return Observe(getattr(services, "metrics", None), getattr(services, "drain", None),
                   context.config.logging.requests)
