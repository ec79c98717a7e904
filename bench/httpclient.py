"""A minimal HTTP/1.1 keep-alive client on a raw asyncio protocol, for load generation.

Why not aiohttp's client: the load generator shares one core with the upstream, and its own
cost per request must stay far below the proxy's so that what we measure is the proxy.
This client sends prebuilt request bytes and parses just enough of the answer: the status,
Content-Length or chunked framing, and (for streams) SSE event boundaries with their
arrival time.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Callable

# The bench upstream writes its send time into every content chunk as "t<monotonic_ns> ".
STAMP = re.compile(rb'"t(\d{4,}) "')


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             "Authorization: Bearer sk-bench-client", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(slots=True)
class StreamRecord:
    """What one streamed answer looked like from the client's side."""

    keep_delays: bool = True
    sent_ns: int = 0
    first_content_ns: int = 0          # arrival of the first event carrying content
    events: int = 0
    content_events: int = 0
    done: bool = False                 # saw `data: [DONE]` (or Anthropic's message_stop, or response.completed)
    error_event: bool = False          # saw an in-stream error envelope
    # arrival minus upstream send time, per content chunk, in ns (when keep_delays)
    delays_ns: list[int] = field(default_factory=list)
    on_first_content: Callable[[], None] | None = None
    _pending: bytes = b""

    def feed(self, data: bytes, now: int) -> None:
        buffer = self._pending + data if self._pending else data
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            self._event(buffer[start:end], now)
            start = end + 2
        self._pending = buffer[start:]

    def _event(self, event: bytes, now: int) -> None:
        self.events += 1
        if b"[DONE]" in event or b"message_stop" in event or b"event: response.completed" in event:
            self.done = True
            return
        stamp = STAMP.search(event)
        if stamp is not None:
            self.content_events += 1
            if not self.first_content_ns:
                self.first_content_ns = now
                if self.on_first_content is not None:
                    self.on_first_content()
            if self.keep_delays:
                self.delays_ns.append(now - int(stamp.group(1)))
        elif b'"error"' in event:
            self.error_event = True


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    sent_ns: int
    done_ns: int

    @property
    def latency_ns(self) -> int:
        return self.done_ns - self.sent_ns


class ConnectionClosed(Exception):
    pass


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_TRAILER, _UNTIL_CLOSE = range(6)


class ClientConnection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.state = _HEAD
        self.waiter: asyncio.Future | None = None
        self.stream: StreamRecord | None = None
        self.status = 0
        self.remaining = 0
        self.body = bytearray()
        self.sent_ns = 0
        self.keep_alive = True
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> "ClientConnection":
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.state == _UNTIL_CLOSE and self.waiter is not None:
            self._finish()
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionClosed(str(exc) if exc else "closed by peer"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def request(self, payload: bytes, stream: StreamRecord | None = None) -> Response:
        if self.closed:
            raise ConnectionClosed("connection already closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.stream = stream
        self.state = _HEAD
        self.body = bytearray()
        self.sent_ns = time.monotonic_ns()
        if stream is not None:
            stream.sent_ns = self.sent_ns
        self.transport.write(payload)
        return await self.waiter

    # ---- parsing ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buffer = self.buffer + data if self.buffer else data
        self.buffer = b""
        position = 0
        while position < len(buffer) and self.waiter is not None:
            state = self.state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n", position)
                if end < 0:
                    break
                self._head(buffer[position:end])
                position = end + 4
                if self.state == _LENGTH and self.remaining == 0:
                    self._finish()
            elif state == _LENGTH:
                take = min(self.remaining, len(buffer) - position)
                self._body(buffer[position:position + take], now)
                position += take
                self.remaining -= take
                if self.remaining == 0:
                    self._finish()
            elif state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n", position)
                if end < 0:
                    break
                self.remaining = int(buffer[position:end].split(b";")[0], 16)
                position = end + 2
                self.state = _CHUNK_DATA if self.remaining else _CHUNK_TRAILER
            elif state == _CHUNK_DATA:
                take = min(self.remaining, len(buffer) - position)
                self._body(buffer[position:position + take], now)
                position += take
                self.remaining -= take
                if self.remaining == 0:
                    if len(buffer) - position < 2:
                        break
                    position += 2  # the CRLF after the chunk data
                    self.state = _CHUNK_SIZE
            elif state == _CHUNK_TRAILER:
                end = buffer.find(b"\r\n", position)
                if end < 0:
                    break
                empty_line = end == position  # the blank line that ends the (ignored) trailers
                position = end + 2
                if empty_line:
                    self._finish()
            else:  # _UNTIL_CLOSE
                self._body(buffer[position:], now)
                position = len(buffer)
        if position < len(buffer):
            self.buffer = buffer[position:]

    def _head(self, head: bytes) -> None:
        status_line, _, header_block = head.partition(b"\r\n")
        self.status = int(status_line.split(b" ", 2)[1])
        length = None
        chunked = False
        self.keep_alive = not status_line.startswith(b"HTTP/1.0")
        for line in header_block.split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection":
                self.keep_alive = b"close" not in value.lower()
        if chunked:
            self.state = _CHUNK_SIZE
        elif length is not None:
            self.state = _LENGTH
            self.remaining = length
        else:
            self.state = _UNTIL_CLOSE
            self.keep_alive = False

    def _body(self, data: bytes, now: int) -> None:
        if self.stream is not None and self.status == 200:
            self.stream.feed(data, now)
        else:
            self.body += data

    def _finish(self) -> None:
        waiter, self.waiter = self.waiter, None
        self.state = _HEAD
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self.status, bytes(self.body), self.sent_ns, time.monotonic_ns()))
        if not self.keep_alive:
            self.close()
