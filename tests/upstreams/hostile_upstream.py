"""A hostile upstream on loopback, raw asyncio, scripted per test.

It speaks OpenAI's chat format when it behaves (a JSON completion, or an SSE stream when the
request asks for one), so every inbound API can be served through it. A test queues
misbehaviours with `then(...)`: each takes the next request and writes whatever bytes it
likes, as slowly or as endlessly as it likes; once the queue is empty the upstream behaves
again, which is how each test proves the proxy still serves a normal request afterwards.
Only POSTs take a scripted behaviour; a GET (the model listing) is always answered.
"""
from __future__ import annotations

import asyncio
import functools
import json
import zlib
from dataclasses import dataclass
from typing import Awaitable, Callable

# A misbehaviour: given the request and the connection, write anything; return False to close.
Behaviour = Callable[["Request", asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class Request:
    head: bytes
    body: bytes

    @property
    def wants_stream(self) -> bool:
        try:
            return json.loads(self.body).get("stream") is True
        except ValueError:
            return False


class HostileUpstream:
    def __init__(self) -> None:
        self.script: list[Behaviour] = []
        self.requests: list[Request] = []
        self.handlers: set[asyncio.Task] = set()
        self.misbehaving = 0  # scripted behaviours still running (an endless stream nobody stopped)

    async def start(self) -> "HostileUpstream":
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"
        return self

    def then(self, *behaviours: Behaviour) -> "HostileUpstream":
        self.script.extend(behaviours)
        return self

    async def close(self) -> None:
        self.server.close()
        for task in list(self.handlers):
            task.cancel()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handlers.add(asyncio.current_task())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = Request(head, await reader.readexactly(length))
                if head.startswith(b"GET "):  # the proxy's model listing: not what a test scripts
                    writer.write(answer(b'{"object": "list", "data": []}'))
                    continue
                self.requests.append(request)
                if not self.script:
                    await behave(request, writer)
                    continue
                self.misbehaving += 1
                try:
                    if not await self.script.pop(0)(request, writer):
                        break
                finally:
                    self.misbehaving -= 1
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.handlers.discard(asyncio.current_task())
            writer.close()


# ---- behaving ----------------------------------------------------------------------------------

COMPLETION = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-test",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "all is well"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}


def chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    payload = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def normal_stream() -> bytes:
    return chunk("all") + chunk(" is well") + chunk(None, "stop") + b"data: [DONE]\n\n"


def answer(body: bytes, content_type: bytes = b"application/json", status: bytes = b"200 OK",
           extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type + b"\r\n" + extra +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def behave(request: Request, writer: asyncio.StreamWriter) -> bool:
    if request.wants_stream:
        writer.write(answer(normal_stream(), b"text/event-stream"))
    else:
        writer.write(answer(json.dumps(COMPLETION).encode()))
    await writer.drain()
    return True


# ---- misbehaving ---------------------------------------------------------------------------------

def raw(data: bytes, keep_open: float = 0.0) -> Behaviour:
    """Write `data` as it is; then hold the connection `keep_open` seconds and close it."""
    async def behaviour(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        await writer.drain()
        if keep_open:
            await asyncio.sleep(keep_open)
        return False
    return behaviour


def with_head(head: bytes) -> Behaviour:
    """A normal answer (JSON or SSE, as asked) under the given status line and headers."""
    async def behaviour(request: Request, writer: asyncio.StreamWriter) -> bool:
        body = normal_stream() if request.wants_stream else json.dumps(COMPLETION).encode()
        content_type = b"text/event-stream" if request.wants_stream else b"application/json"
        writer.write(head + b"Content-Type: " + content_type + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        return False
    return behaviour


def silent(seconds: float = 60.0) -> Behaviour:
    async def behaviour(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(seconds)
        return False
    return behaviour


def endless(head: bytes, piece: bytes, encode: Callable[[bytes], bytes] | None = None) -> Behaviour:
    """`head`, then chunked `piece` after `piece` as fast as the proxy reads, until it hangs up."""
    async def behaviour(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(head)
        data = encode(piece) if encode else piece
        frame = b"%x\r\n" % len(data) + data + b"\r\n"
        while not writer.is_closing():
            writer.write(frame * 16)
            await writer.drain()
        return False
    return behaviour


@functools.lru_cache(maxsize=4)
def gzipped(prefix: bytes, filler: bytes, inflated: int) -> bytes:
    """`prefix`, then `filler` repeated to `inflated` bytes, gzipped (about 1000 to 1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts, block = [compressor.compress(prefix)], filler * (1024 * 1024 // len(filler))
    for _ in range(inflated // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.flush())
    return b"".join(parts)


def gzip_bomb(prefix: bytes, filler: bytes, inflated: int, content_type: bytes) -> Behaviour:
    """A small gzip body that inflates to `inflated` bytes."""
    body = gzipped(prefix, filler, inflated)

    async def behaviour(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\nContent-Encoding: gzip\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        return False
    return behaviour
