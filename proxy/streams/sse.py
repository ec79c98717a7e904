"""Incremental Server-Sent Events parsing and encoding.

An :class:`SSEEvent` keeps the exact bytes it was parsed from, so a passthrough
stream can forward them untouched while a middleware that needs to look inside
an event parses its data lazily, once.
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Iterable

from proxy.core import jsonutil
from proxy.core.errors import UpstreamProtocolError

DONE_DATA = "[DONE]"


class SSEEvent:
    """One event: its wire bytes plus lazily decoded fields."""

    __slots__ = ("raw", "_event", "_data", "_json", "_parsed")

    def __init__(self, raw: bytes):
        self.raw = raw
        self._parsed = False
        self._event: str | None = None
        self._data: str | None = None
        self._json: Any = _UNSET

    @classmethod
    def from_data(cls, data: str, event: str | None = None) -> "SSEEvent":
        lines = [] if event is None else [f"event: {event}"]
        lines.extend(f"data: {line}" for line in data.split("\n"))
        built = cls(("\n".join(lines) + "\n\n").encode())
        built._event, built._data, built._parsed = event, data, True
        return built

    @classmethod
    def from_json(cls, payload: Any, event: str | None = None) -> "SSEEvent":
        """JSON as written here never holds a line break (one inside a string is escaped), so it is
        one `data:` line: the bytes are built directly, and the fields read from them if asked."""
        data = jsonutil.dumps(payload)
        built = cls(b"data: " + data + b"\n\n" if event is None else
                    b"event: " + event.encode() + b"\ndata: " + data + b"\n\n")
        built._json = payload
        return built

    @property
    def event(self) -> str | None:
        self._parse()
        return self._event

    @property
    def data(self) -> str | None:
        """The joined `data:` lines, or None for a comment-only event."""
        self._parse()
        return self._data

    @property
    def has_data(self) -> bool:
        """Whether the event carries data (a comment or keep-alive does not); at a glance when the
        event begins with its data line, as a chat chunk does."""
        return self.raw.startswith(b"data:") or self.data is not None

    @property
    def is_done(self) -> bool:
        raw = self.raw
        if raw == DONE_EVENT_BYTES:
            return True
        return b"[DONE]" in raw and self.data == DONE_DATA  # the data is made of these bytes

    def json(self) -> Any:
        """Decoded data; raises ValueError when it is not JSON."""
        if self._json is _UNSET:
            raw = self.raw
            if raw.startswith(b"data: ") and raw.find(b"\n") == len(raw) - 2 and raw[-1] == 10 \
                    and raw.find(b"\r") < 0:  # one data line and its blank line: decoded from its bytes
                try:
                    self._json = jsonutil.loads(raw[6:-2])
                    return self._json
                except ValueError:
                    pass  # what is not UTF-8 reads as U+FFFD below, as in `data`
            data = self.data
            if data is None:
                raise ValueError("event carries no data")
            self._json = jsonutil.loads(data)
        return self._json

    def json_object(self) -> dict[str, Any]:
        """Decoded data when it is a JSON object, else {} (for a watcher that only looks)."""
        try:
            payload = self.json()
        except ValueError:
            return {}
        return payload if isinstance(payload, dict) else {}

    def _parse(self) -> None:
        if self._parsed:
            return
        self._parsed = True
        if not self._parse_one_line():
            self._parse_lines()

    def _parse_one_line(self) -> bool:
        """The shape nearly every event has, `[event: NAME\n]data: DATA\n\n`, read by slicing;
        False for any other (several lines, comments, a field without its space, a CR)."""
        raw = self.raw
        data_at = raw.find(b"\n") + 1 if raw.startswith(b"event: ") else 0
        if not raw.startswith(b"data: ", data_at) or raw.find(b"\n", data_at) != len(raw) - 2 \
                or raw[-1] != 10 or raw.find(b"\r") >= 0:  # 10: the blank line's "\n"
            return False
        if data_at:
            self._event = _text(raw[7:data_at - 1])
        self._data = _text(raw[data_at + 6:-2])
        return True

    def _parse_lines(self) -> None:
        data_lines: list[str] = []
        text = self.raw.decode("utf-8", errors="replace")
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data_lines.append(value)
            elif name == "event":
                self._event = value
        self._data = "\n".join(data_lines) if data_lines else None

    def __repr__(self) -> str:
        return f"SSEEvent({self.raw[:80]!r})"


_UNSET = object()


def _text(field: bytes) -> str:
    """A field's value as text, invalid UTF-8 read as U+FFFD (tried strictly first: much faster)."""
    try:
        return field.decode()
    except UnicodeDecodeError:
        return field.decode("utf-8", "replace")


def upstream_event_json(event: SSEEvent, upstream: str) -> Any:
    """An upstream's stream event, decoded; data that is not JSON is a protocol error naming it."""
    try:
        return event.json()
    except ValueError:
        raise UpstreamProtocolError(upstream, "sent a stream event whose data is not JSON") from None


class SSEParser:
    """Splits a byte stream into events as soon as each one is complete.

    Only boundaries are found here; fields are decoded on demand by SSEEvent.
    The fast path handles the common `\\n\\n` separator with one `find`; any
    carriage return switches to a line-by-line scan that honours CRLF and CR.
    """

    __slots__ = ("_buffer", "max_event_bytes")

    def __init__(self, max_event_bytes: int = 16 * 1024 * 1024):
        self._buffer = b""
        self.max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SSEEvent] = []
        start = 0
        if b"\r" not in buffer:
            while True:
                while buffer.startswith(b"\n", start):  # blank lines between events carry nothing,
                    start += 1                            # as in _split_mixed: no empty events
                end = buffer.find(b"\n\n", start)
                if end < 0:
                    break
                events.append(SSEEvent(buffer[start:end + 2]))
                start = end + 2
        else:
            start = self._split_mixed(buffer, events)
        self._buffer = buffer[start:]
        if len(self._buffer) > self.max_event_bytes:
            self._buffer = b""
            raise ValueError("an SSE event exceeded the size limit")
        return events

    @staticmethod
    def _split_mixed(buffer: bytes, events: list[SSEEvent]) -> int:
        start = position = 0
        length = len(buffer)
        while position < length:
            line_end = _line_end(buffer, position)
            if line_end is None:
                break
            content_end, next_line = line_end
            if content_end == position:  # blank line: event boundary
                if position > start:
                    events.append(SSEEvent(buffer[start:next_line]))
                start = next_line
            position = next_line
        return start

    def flush(self) -> list[SSEEvent]:
        """Whatever is left when the stream ends (a final event missing its blank line)."""
        rest, self._buffer = self._buffer, b""
        if not rest.strip():
            return []
        # Terminated with a blank line, so a client forwarded these bytes dispatches the event too.
        ending = b"\n" if rest.endswith(b"\n") else b"\r" if rest.endswith(b"\r") else b"\n\n"
        return [SSEEvent(rest + ending)]


def _line_end(buffer: bytes, position: int) -> tuple[int, int] | None:
    """(end of line content, start of next line), or None if the line is incomplete."""
    newline = buffer.find(b"\n", position)
    carriage = buffer.find(b"\r", position)
    if carriage < 0 or (0 <= newline < carriage):
        return None if newline < 0 else (newline, newline + 1)
    if carriage + 1 >= len(buffer):
        return None  # a CR at the very end might be the first half of CRLF
    if buffer[carriage + 1:carriage + 2] == b"\n":
        return carriage, carriage + 2
    return carriage, carriage + 1


async def parse_stream(chunks: AsyncIterator[bytes], parser: SSEParser | None = None) -> AsyncIterator[SSEEvent]:
    parser = parser or SSEParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.flush():
        yield event


def encode_events(events: Iterable[SSEEvent]) -> bytes:
    return b"".join(event.raw for event in events)


DONE_EVENT_BYTES = b"data: [DONE]\n\n"


def done_event() -> SSEEvent:
    return SSEEvent(DONE_EVENT_BYTES)
