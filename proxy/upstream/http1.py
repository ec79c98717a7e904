"""One HTTP/1.1 client connection to an upstream, on a raw asyncio protocol, and the answer
read from it. proxy/upstream/pool.py pools these connections and sends requests on them; it is
the one client to upstreams (traffic, model discovery, health checks and `check`).

Why not aiohttp's client: on the proxy's hot path it cost more CPU than all of the
proxy's own work per request (profiled in bench/), most of it generality we do not use:
cookies, redirects, proxies, multipart, tracing signals, per-request URL objects. Here:

- one timer per read (the `read_timeout` between any two reads, capped by the attempt's
  `deadline`) instead of nested asyncio.timeout scopes;
- strict parsing of the response head and of Content-Length / chunked framing (anything
  else is `MalformedResponse`, never a hang). As RFC 9112 asks of a client, a head with a
  bare CR, LF or NUL (or any other control character but HTAB), a header without a colon
  or with a name that is not a token, or an obsolete line fold is refused, not repaired:
  such a value would otherwise travel on to the client, where aiohttp refuses to write it;
- gzip/deflate decoding, since the client asks for them as aiohttp did, at most
  DECODED_PER_READ bytes per read: a small compressed body that inflates to gigabytes
  comes out a bounded piece at a time, so the reader's own limits apply before memory grows;
- the attempt's deadline checked on every read, also when data is always waiting;
- back-pressure: reading from the upstream pauses while the unread body exceeds a bound.

Failures are this module's small set of exceptions (ClientFailure and subclasses);
proxy/upstream/transport.py maps them into the proxy's error tree, and nothing here knows that tree.
"""
from __future__ import annotations

import asyncio
import re
import zlib
from typing import Any

from multidict import CIMultiDict

MAX_HEAD_BYTES = 64 * 1024          # a response head beyond this is not an API answer
MAX_CHUNK_LINE = 4 * 1024           # chunk size line, extensions included
PAUSE_ABOVE = 1024 * 1024           # unread body bytes at which we stop reading (resumed once read)
DECODED_PER_READ = 256 * 1024       # decompressed bytes one read returns at most

_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_NO_BODY_STATUSES = frozenset({204, 304})
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field names
# Control characters but HTAB: in a head whose CRLFs are removed, a bare CR, LF or NUL shows here.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class ClientFailure(Exception):
    """Base of everything this client raises."""


class ConnectTimeout(ClientFailure):
    def __init__(self, by_deadline: bool):
        super().__init__("connect timed out")
        self.by_deadline = by_deadline


class ConnectFailed(ClientFailure):
    """The TCP/TLS connection could not be made; `os_error` says why (DNS, refused, TLS)."""

    def __init__(self, os_error: OSError):
        super().__init__(str(os_error))
        self.os_error = os_error


class ReadTimeout(ClientFailure):
    """Nothing arrived within the read timeout (`by_deadline` False) or the deadline came."""

    def __init__(self, by_deadline: bool, got_head: bool):
        super().__init__("read timed out")
        self.by_deadline, self.got_head = by_deadline, got_head


class ConnectionDropped(ClientFailure):
    """The upstream closed or reset the connection before the answer was complete. `early`: on
    a fresh connection, before any byte of the answer (over TLS: right after the handshake)."""

    def __init__(self, got_head: bool, cause: BaseException | None = None, early: bool = False):
        super().__init__(type(cause).__name__ if cause is not None else "closed by the upstream")
        self.got_head, self.cause, self.early = got_head, cause, early


class MalformedResponse(ClientFailure):
    """The bytes received are not an HTTP/1.x answer we can frame."""


class ResponseTooLarge(ClientFailure):
    """The body (after decompression) is longer than the reader accepts."""

    def __init__(self, limit: int):
        super().__init__(f"the body is larger than {limit} bytes")
        self.limit = limit


# ---- one connection ------------------------------------------------------------------------

_HEAD, _LENGTH, _CHUNK_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE, _IDLE = range(9)


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time. The protocol callbacks parse as bytes
    arrive; `read_head` / `read_body` wait for what they need with one timer per wait."""

    __slots__ = ("_loop", "transport", "closed", "reused", "idle_since", "_state", "_pending", "_chunks",
                 "_buffered", "_paused", "_remaining", "_keep_alive", "_head", "_head_only", "received", "_error",
                 "_waiter")  # one per upstream connection, thousands with many streams open

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False           # served an earlier request: a failure may be a stale socket
        self.idle_since = 0.0         # kept by the pool
        self._state = _IDLE
        self._pending = b""           # bytes not yet parsed (part of a head or chunk line)
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._remaining = 0
        self._keep_alive = True
        self._head: tuple[int, str, CIMultiDict] | None = None
        self._head_only = False
        self.received = False         # any byte of the current answer arrived
        self._error: ClientFailure | None = None
        self._waiter: asyncio.Future | None = None

    # -- protocol callbacks --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
        elif self._state not in (_DONE, _IDLE) and self._error is None:
            self._error = ConnectionDropped(self._head is not None, exc, self._early)
        self._wake()

    def eof_received(self) -> None:
        self._keep_alive = False  # the upstream will send no more: never reuse this connection
        return None  # let the transport close; connection_lost decides what the EOF meant

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self._state in (_DONE, _IDLE) or self._error is not None:
            self._keep_alive = False  # bytes nobody asked for: this connection is not reusable
            self.abort()
            return
        if self._pending:
            data, self._pending = self._pending + data, b""
        try:
            self._parse(data)
        except MalformedResponse as exc:
            self._error = exc
            self.abort()
        if self._buffered > PAUSE_ABOVE and not self._paused and not self.closed:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    # -- sending --

    def send(self, payload: bytes, head_only: bool) -> None:
        self._state = _HEAD
        self._head, self._head_only, self.received = None, head_only, False
        self._error = None
        self._chunks, self._buffered = [], 0
        self.transport.write(payload)

    # -- reading --

    async def read_head(self, read_timeout: float, deadline: float) -> tuple[int, str, CIMultiDict]:
        while self._head is None:
            self._raise_error()
            await self._wait(read_timeout, deadline)
        return self._head

    async def read_body(self, read_timeout: float, deadline: float) -> bytes:
        """The body bytes that arrived since the last call; b"" once the answer is complete."""
        while True:
            if self._chunks:
                chunks, self._chunks, self._buffered = self._chunks, [], 0
                if self._paused and not self.closed:
                    self._paused = False
                    self.transport.resume_reading()
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if self._state == _DONE:
                return b""
            self._raise_error()
            await self._wait(read_timeout, deadline)

    @property
    def reusable(self) -> bool:
        """Whether the answer ended cleanly, nothing of it is left unread, and the connection
        can still carry another request."""
        return (self._state == _DONE and not self._chunks and not self._pending and self._error is None
                and self.usable)

    @property
    def usable(self) -> bool:
        """Whether this idle connection can carry a new request: open, and not half-closed by
        the upstream (its EOF arrives before the close does)."""
        return not self.closed and self._keep_alive and not self.transport.is_closing()

    def finish(self) -> None:
        """The answer was read to its end and the connection goes back to the pool."""
        self._state, self.reused = _IDLE, True

    def abort(self) -> None:
        self._keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.abort()
            self.closed = True

    @property
    def _early(self) -> bool:
        return not self.reused and not self.received

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error
        if self.closed:
            raise ConnectionDropped(self._head is not None, early=self._early)

    async def _wait(self, read_timeout: float, deadline: float) -> None:
        loop = self._loop
        at = loop.time() + read_timeout
        by_deadline = deadline < at
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(deadline if by_deadline else at, self._time_out, waiter, by_deadline)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _time_out(self, waiter: asyncio.Future, by_deadline: bool) -> None:
        if not waiter.done():
            waiter.set_exception(ReadTimeout(by_deadline, self._head is not None))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- parsing --

    def _parse(self, data: bytes) -> None:
        position, size = 0, len(data)
        while position < size:
            state = self._state
            if state == _HEAD:
                position = self._parse_head(data, position)
            elif state == _LENGTH:
                take = min(self._remaining, size - position)
                self._body(data[position:position + take] if (position or take < size) else data)
                position += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DONE
            elif state == _CHUNK_DATA:
                take = min(self._remaining, size - position)
                self._body(data[position:position + take])
                position += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_END
            elif state in (_CHUNK_LINE, _CHUNK_END, _TRAILER):
                position = self._parse_chunk_line(data, position)
            elif state == _UNTIL_CLOSE:
                self._body(data[position:] if position else data)
                position = size
            else:  # _DONE: more bytes than the framing announced
                self._keep_alive = False
                return
            if position < 0:  # needs more bytes
                return

    def _parse_head(self, data: bytes, position: int) -> int:
        end = data.find(b"\r\n\r\n", position)
        if end < 0:
            if len(data) - position > MAX_HEAD_BYTES:
                raise MalformedResponse(f"response head larger than {MAX_HEAD_BYTES} bytes")
            self._pending = data[position:]
            return -1
        if end - position > MAX_HEAD_BYTES:
            raise MalformedResponse(f"response head larger than {MAX_HEAD_BYTES} bytes")
        status, reason, headers, version = _split_head(data[position:end])
        position = end + 4
        if 100 <= status < 200:  # 100 Continue and friends: the real answer follows
            return position
        self._frame(status, headers, version)
        self._head = (status, reason, headers)
        return position

    def _frame(self, status: int, headers: CIMultiDict, version: bytes) -> None:
        connection = headers.get("Connection", "").lower()
        self._keep_alive = "close" not in connection and (version == b"HTTP/1.1" or "keep-alive" in connection)
        if self._head_only or status in _NO_BODY_STATUSES:
            self._state = _DONE
            return
        encoding = headers.get("Transfer-Encoding")
        if encoding is not None:
            if encoding.rsplit(",", 1)[-1].strip().lower() == "chunked":
                self._state = _CHUNK_LINE
            else:
                self._state, self._keep_alive = _UNTIL_CLOSE, False
            return
        lengths = set(headers.getall("Content-Length", ()))
        if not lengths:
            self._state, self._keep_alive = _UNTIL_CLOSE, False
            return
        length = lengths.pop().strip()
        if lengths or not length.isdigit() or not length.isascii():
            raise MalformedResponse("invalid Content-Length")
        self._remaining = int(length)
        self._state = _LENGTH if self._remaining else _DONE

    def _parse_chunk_line(self, data: bytes, position: int) -> int:
        end = data.find(b"\r\n", position)
        if end < 0:
            if len(data) - position > MAX_CHUNK_LINE:
                raise MalformedResponse("chunk size line too long")
            self._pending = data[position:]
            return -1
        line = data[position:end]
        state = self._state
        if state == _CHUNK_END:
            if line:
                raise MalformedResponse("chunk data longer than its size")
            self._state = _CHUNK_LINE
        elif state == _TRAILER:
            if not line:  # the blank line after the (ignored) trailers
                self._state = _DONE
        else:
            digits = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(digits):
                raise MalformedResponse("invalid chunk size")
            self._remaining = int(digits, 16)
            self._state = _CHUNK_DATA if self._remaining else _TRAILER
        return end + 2

    def _body(self, piece: bytes) -> None:
        if piece:
            self._chunks.append(piece)
            self._buffered += len(piece)


def _split_head(head: bytes) -> tuple[int, str, CIMultiDict, bytes]:
    if _CONTROL.search(head.replace(b"\r\n", b"")):
        raise MalformedResponse("a control character (bare CR, LF or NUL) in the response head")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or len(parts[1]) != 3 \
            or not parts[1].isdigit():
        # Quoted short: it is only a diagnostic, and whatever follows the status may be a key.
        raise MalformedResponse(f"not an HTTP/1.x status line: {lines[0][:16]!r}")
    headers: CIMultiDict = CIMultiDict()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):  # also an obsolete line fold (a leading space)
            raise MalformedResponse("malformed header line")
        headers.add(name.decode("latin-1"), value.strip(b" \t").decode("latin-1"))
    reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    return int(parts[1]), reason, headers, parts[0]


# ---- decoding gzip / deflate ---------------------------------------------------------------

class _Decoder:
    """Inflates at most DECODED_PER_READ bytes per call; the input not yet inflated waits in
    zlib's `unconsumed_tail` until the reader asks for more (`pending`)."""

    __slots__ = ("_encoding", "_inflate", "_started", "pending")

    def __init__(self, encoding: str):
        self._encoding = encoding
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
        self._started = False
        self.pending = False  # more output can come without more input

    def feed(self, data: bytes) -> bytes:
        try:
            out = self._inflate.decompress(data, DECODED_PER_READ)
        except zlib.error:
            if self._encoding != "deflate" or self._started:
                raise MalformedResponse(f"invalid {self._encoding} body") from None
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send
            out = self._decompress_raw(data)
        self._started = True
        # A full piece may leave output inside zlib even when all input was taken.
        self.pending = bool(out) and (bool(self._inflate.unconsumed_tail) or len(out) == DECODED_PER_READ)
        return out

    def more(self) -> bytes:
        """The next piece of what the input already fed inflates to."""
        return self.feed(self._inflate.unconsumed_tail)

    def _decompress_raw(self, data: bytes) -> bytes:
        try:
            return self._inflate.decompress(data, DECODED_PER_READ)
        except zlib.error:
            raise MalformedResponse("invalid deflate body") from None

    def flush(self) -> bytes:
        return self._inflate.flush()


def _decoder_for(headers: CIMultiDict) -> _Decoder | None:
    encoding = headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return _Decoder("gzip")
    if encoding == "deflate":
        return _Decoder("deflate")
    raise MalformedResponse(f"unsupported Content-Encoding '{encoding}' (asked for gzip or deflate)")


# ---- an answer ----------------------------------------------------------------------------

class Response:
    """One upstream answer: status and headers at once, the body read on demand.
    Hand the connection back with `release()` (after reading to the end) or `close()`."""

    __slots__ = ("status", "reason", "headers", "_connection", "_pool", "_read_timeout", "_deadline",
                 "_decoder", "_done")

    def __init__(self, connection: Connection, pool: Any, head: tuple[int, str, CIMultiDict],
                 read_timeout: float, deadline: float):
        self.status, self.reason, self.headers = head
        self._connection, self._pool = connection, pool
        self._read_timeout, self._deadline = read_timeout, deadline
        self._decoder = _decoder_for(self.headers)
        self._done = False

    @property
    def content_type(self) -> str:
        value = self.headers.get("Content-Type")
        if value is None:
            return "application/octet-stream"
        return value.partition(";")[0].strip().lower()

    async def read_chunk(self) -> bytes:
        """Whatever body arrived next (at least one byte, at most DECODED_PER_READ once
        decompressed), or b"" at the end. The deadline holds even when data is always waiting."""
        if self._done:
            return b""
        connection, decoder = self._connection, self._decoder
        while True:
            if connection._loop.time() >= self._deadline:
                raise ReadTimeout(True, True)
            if decoder is not None and decoder.pending:
                data = decoder.more()
                if data:
                    return data
                continue
            data = await connection.read_body(self._read_timeout, self._deadline)
            if not data:
                self._done = True
                return decoder.flush() if decoder is not None else b""
            if decoder is None:
                return data
            data = decoder.feed(data)
            if data:
                return data

    async def read(self, limit: int | None = None, refuse_beyond: int | None = None) -> bytes:
        """The body to its end, or its first `limit` bytes (the rest is not waited for).
        Past `refuse_beyond` bytes (decompressed), ResponseTooLarge instead."""
        parts, size = [], 0
        while limit is None or size < limit:
            data = await self.read_chunk()
            if not data:
                break
            parts.append(data)
            size += len(data)
            if refuse_beyond is not None and size > refuse_beyond:
                raise ResponseTooLarge(refuse_beyond)
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        return body if limit is None else body[:limit]

    def release(self) -> None:
        """Done with this answer: the connection goes back to the pool if the answer arrived
        to its last byte and none of it is left unread (a stream whose reader stopped at
        `[DONE]` usually qualifies), and is closed otherwise."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.reusable:
            connection.finish()
            self._pool.put(connection)
        else:
            connection.abort()

    def close(self) -> None:
        """Closes the connection whatever state the answer is in."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.abort()
