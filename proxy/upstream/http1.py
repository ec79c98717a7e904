"""One HTTP/1.1 client connection to an upstream, on a raw asyncio protocol, and the answer
read from it. proxy/upstream/pool.py pools these connections and sends requests on them; it is
the one client to upstreams (traffic, model discovery, health checks and `check`).

Why not aiohttp's client: on the proxy's hot path it cost more CPU than all of the
proxy's own work per request (profiled in bench/), most of it generality we do not use:
cookies, redirects, proxies, multipart, tracing signals, per-request URL objects. Here:

- one timer per read (the `read_timeout` between any two reads, capped by the attempt's
  `deadline`) instead of nested asyncio.timeout scopes;
- the response is parsed by llhttp (httptools), the parser behind Node.js, aiohttp and
  uvicorn, fuzzed continuously, in its strict mode: a status line that is not HTTP/1.x,
  a bare CR, LF or NUL (or any other control character but HTAB) in the head, a header
  without a colon or with a name that is not a token, an obsolete line fold, a duplicate or
  invalid Content-Length, Content-Length with Transfer-Encoding, or a broken chunk is
  `MalformedResponse`, never a hang, and is refused, not repaired: such a value would
  otherwise travel on to the client, where aiohttp refuses to write it. A head larger than
  MAX_HEAD_BYTES is refused too (llhttp itself sets no bound);
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
from typing import Any, Sequence

import httptools
from multidict import CIMultiDict

MAX_HEAD_BYTES = 64 * 1024          # a response head beyond this is not an API answer
PAUSE_ABOVE = 1024 * 1024           # unread body bytes at which we stop reading (resumed once read)
DECODED_PER_READ = 256 * 1024       # decompressed bytes one read returns at most

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

_HEAD, _BODY, _DONE, _IDLE = range(4)


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time. llhttp (httptools) parses as bytes
    arrive and calls back into this protocol; `read_head` / `read_body` wait for what they need
    with one timer per wait."""

    __slots__ = ("_loop", "transport", "closed", "reused", "idle_since", "_state", "_parser", "_chunks",
                 "_buffered", "_paused", "_until_close", "_keep_alive", "_head", "_head_only", "received",
                 "_error", "_waiter", "_reason", "_headers", "_head_seen", "_head_size")
    # one per upstream connection, thousands with many streams open

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False           # served an earlier request: a failure may be a stale socket
        self.idle_since = 0.0         # kept by the pool
        self._state = _IDLE
        self._parser: httptools.HttpResponseParser | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._until_close = False     # the body ends when the connection does (no length, not chunked)
        self._keep_alive = True
        self._head: tuple[int, str, CIMultiDict] | None = None
        self._head_only = False
        self.received = False         # any byte of the current answer arrived
        self._error: ClientFailure | None = None
        self._waiter: asyncio.Future | None = None
        self._reason = b""
        self._headers: CIMultiDict = CIMultiDict()
        self._head_seen: list[bytes] = []  # the bytes fed while the head was incomplete (its size, diagnostics)
        self._head_size = 0

    # -- transport callbacks --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._state == _BODY and self._until_close:
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
        in_head = self._state == _HEAD
        if in_head:
            self._head_seen.append(data)
            self._head_size += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(MalformedResponse("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            if self._state == _DONE:  # bytes past the end of the answer: only the connection is spoiled
                self._keep_alive = False
            else:
                self._fail(_malformed(exc, b"".join(self._head_seen) if in_head else None))
        if self._state == _HEAD and self._head_size > MAX_HEAD_BYTES and self._error is None:
            self._fail(MalformedResponse(f"response head larger than {MAX_HEAD_BYTES} bytes"))
        if self._buffered > PAUSE_ABOVE and not self._paused and not self.closed:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    # -- parser callbacks (llhttp) --

    def on_status(self, reason: bytes) -> None:
        if self._state == _HEAD:
            self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state == _HEAD:  # not a trailer
            self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        if self._state != _HEAD:
            return
        parser, headers, reason = self._parser, self._headers, self._reason
        status = parser.get_status_code()
        self._headers, self._reason = CIMultiDict(), b""
        if 100 <= status < 200:  # 100 Continue and friends: the real answer follows
            return
        if parser.get_http_version() not in ("1.1", "1.0"):
            self._fail(MalformedResponse(f"not an HTTP/1.x status line: HTTP/{parser.get_http_version()}"))
            return
        if _CONTROL.search(reason):  # llhttp lets a reason phrase carry them; it would travel on
            self._fail(MalformedResponse("a control character (bare CR, LF or NUL) in the response head"))
            return
        self._head_seen, self._head_size = [], 0
        self._keep_alive = parser.should_keep_alive()
        self._head = (status, reason.decode("latin-1"), headers)
        if self._head_only:
            self._state = _DONE
            return
        encoding = headers.get("Transfer-Encoding")
        self._until_close = "Content-Length" not in headers and (
            encoding is None or encoding.rsplit(",", 1)[-1].strip().lower() != "chunked")
        self._state = _BODY

    def on_body(self, body: bytes) -> None:
        if self._state == _BODY:
            self._chunks.append(body)
            self._buffered += len(body)

    def on_message_begin(self) -> None:
        if self._state == _DONE:  # a second answer nobody asked for
            self._keep_alive = False

    def on_message_complete(self) -> None:
        if self._state == _BODY or (self._state == _HEAD and self._head is not None):
            self._state = _DONE

    def _fail(self, error: ClientFailure) -> None:
        if self._error is None:
            self._error = error
        self.abort()

    # -- sending --

    def send(self, payload: Sequence[Any], head_only: bool) -> None:
        """`payload`: the request's buffers, written at once (uvloop writes them without joining)."""
        self._state = _HEAD
        # A parser per answer: after a HEAD, llhttp would still wait for the body its length announced.
        self._parser = httptools.HttpResponseParser(self)
        self._head, self._head_only, self.received = None, head_only, False
        self._error = None
        self._chunks, self._buffered = [], 0
        self.transport.writelines(payload)

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
        return self._state == _DONE and not self._chunks and self._error is None and self.usable

    @property
    def usable(self) -> bool:
        """Whether this idle connection can carry a new request: open, and not half-closed by
        the upstream (its EOF arrives before the close does)."""
        return not self.closed and self._keep_alive and not self.transport.is_closing()

    def finish(self) -> None:
        """The answer was read to its end and the connection goes back to the pool."""
        self._state, self.reused, self._parser = _IDLE, True, None

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


# llhttp's words for what it refused -> ours (the classes a reader of MalformedResponse knows).
_LLHTTP_WORDS = (
    ("Content-Length", "invalid Content-Length"),
    ("Transfer-Encoding", "invalid Content-Length or Transfer-Encoding"),
    ("chunk size", "invalid chunk size"),
    ("after chunk data", "chunk data longer than its size"),
    ("chunk", "malformed chunked body"),
    ("header", "malformed header line"),
)


def _malformed(error: httptools.HttpParserError, head: bytes | None) -> MalformedResponse:
    """What llhttp refused, in this client's words. `head`: the bytes of a head it stopped in,
    where a control character (a bare CR or LF, a NUL) is named as such, whatever llhttp saw first."""
    said = str(error)
    if head is not None and _CONTROL.search(head.replace(b"\r\n", b"")):
        return MalformedResponse("a control character (bare CR, LF or NUL) in the response head")
    for words, ours in _LLHTTP_WORDS:
        if words in said:
            return MalformedResponse(f"{ours} ({said})")
    if head is not None:
        # Quoted short: it is only a diagnostic, and whatever follows the status may be a key.
        first_line = head.split(b"\r\n", 1)[0][:16]
        return MalformedResponse(f"not an HTTP/1.x status line: {first_line!r} ({said})")
    return MalformedResponse(f"malformed response ({said})")


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
