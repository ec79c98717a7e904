"""A fast fake LLM upstream for the benchmark: OpenAI and Anthropic wire formats on one port.

It is a raw asyncio protocol (no framework) so that it is never the bottleneck:
a request costs a header scan, one small JSON decode (of the steering fields only, for a
big body) and one write.

Routes
  POST /v1/chat/completions   OpenAI Chat Completions, `stream` true or false
  POST /v1/messages           Anthropic Messages, `stream` true or false
  POST /v1/responses          OpenAI Responses, `stream` true or false (one message item)
  GET  /v1/models             a one-model catalog (Anthropic's shape when the request has
                              `anthropic-version` or `x-api-key`, else OpenAI's)

The model name steers a stream: `s<chunks>x<delay_ms>` (for example `s20x20`) sends that
many content chunks that many milliseconds apart; any other name uses the defaults given on
the command line. Every content chunk's text is `t<monotonic_ns> `: the upstream's send time
on the machine-wide monotonic clock, so a client on the same machine can compute exactly how
long each chunk took to reach it, whatever translated or re-encoded it on the way.

Run: python -m bench.upstream --port 9100
"""
from __future__ import annotations

import argparse
import asyncio
import re
import time

import msgspec
import orjson

MODEL_PATTERN = re.compile(r"s(\d+)x(\d+)$")
CREATED = 1_700_000_000
NON_STREAM_TEXT = "Hello! This is the benchmark upstream answering your question in a few words."


class _Steering(msgspec.Struct):
    """The fields a request steers the answer with; the rest of a big body is skipped unread."""

    model: str = "bench"
    stream: bool = False
    stream_options: dict | None = None

    def get(self, name: str, default=None):
        return getattr(self, name, default)


_STEERING = msgspec.json.Decoder(_Steering)
# A body past this size (the big-body phase's conversations) is read for its steering fields
# only, so the upstream's own decode does not weigh on the load generator's shared core.
_DECODE_WHOLE_BELOW = 64 * 1024


def _decoded(body: bytes):
    return orjson.loads(body) if len(body) < _DECODE_WHOLE_BELOW else _STEERING.decode(body)


def stream_shape(model: str, default_chunks: int, default_delay_ms: float) -> tuple[int, float]:
    """(chunks, seconds between chunks) for a model name."""
    match = MODEL_PATTERN.search(model)
    if match is None:
        return default_chunks, default_delay_ms / 1000
    return int(match.group(1)), int(match.group(2)) / 1000


def stamp() -> str:
    return f"t{time.monotonic_ns()} "


# ---- OpenAI wire format -------------------------------------------------------------------

def openai_completion(model: str) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": NON_STREAM_TEXT},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 16, "total_tokens": 28},
    })


class OpenAIStream:
    """The events of one OpenAI chat.completion.chunk stream, in order."""

    def __init__(self, model: str, include_usage: bool):
        self.prefix = (b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":'
                       + str(CREATED).encode() + b',"model":' + orjson.dumps(model) + b',"choices":')
        self.include_usage = include_usage

    def opening(self) -> list[bytes]:
        return [self.prefix + b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n']

    def content(self, text: str) -> bytes:
        return (self.prefix + b'[{"index":0,"delta":{"content":' + orjson.dumps(text)
                + b'},"finish_reason":null}]}\n\n')

    def closing(self, chunks: int) -> list[bytes]:
        events = [self.prefix + b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n']
        if self.include_usage:
            usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
            events.append(self.prefix + b'[],"usage":' + orjson.dumps(usage) + b"}\n\n")
        events.append(b"data: [DONE]\n\n")
        return events


# ---- Anthropic wire format ----------------------------------------------------------------

def anthropic_message(model: str) -> bytes:
    return orjson.dumps({
        "id": "msg_bench", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": NON_STREAM_TEXT}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 16},
    })


def anthropic_event(name: str, payload: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class AnthropicStream:
    def __init__(self, model: str, include_usage: bool):
        self.model = model

    def opening(self) -> list[bytes]:
        message = {"id": "msg_bench", "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 12, "output_tokens": 1}}
        return [anthropic_event("message_start", {"type": "message_start", "message": message}),
                anthropic_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                        "content_block": {"type": "text", "text": ""}})]

    def content(self, text: str) -> bytes:
        return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                b'"delta":{"type":"text_delta","text":' + orjson.dumps(text) + b"}}\n\n")

    def closing(self, chunks: int) -> list[bytes]:
        return [anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
                anthropic_event("message_delta", {"type": "message_delta",
                                                  "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                                  "usage": {"output_tokens": chunks}}),
                anthropic_event("message_stop", {"type": "message_stop"})]


# ---- OpenAI Responses wire format ---------------------------------------------------------

_MESSAGE_ITEM = {"id": "msg_bench", "type": "message", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": NON_STREAM_TEXT, "annotations": []}]}


def responses_object(model: str, status: str = "completed", output: list | None = None,
                     output_tokens: int = 16) -> dict:
    return {"id": "resp_bench", "object": "response", "created_at": CREATED, "status": status,
            "model": model, "output": [_MESSAGE_ITEM] if output is None else output, "error": None,
            "incomplete_details": None, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": 12, "output_tokens": output_tokens, "total_tokens": 12 + output_tokens,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}}}


def openai_response(model: str) -> bytes:
    return orjson.dumps(responses_object(model))


class ResponsesStream:
    """The documented event sequence of one streamed Response with one message item."""

    def __init__(self, model: str, include_usage: bool):
        self.model = model
        self.sequence = 0

    def _event(self, name: str, payload: dict) -> bytes:
        self.sequence += 1
        return anthropic_event(name, {"type": name, "sequence_number": self.sequence, **payload})

    def opening(self) -> list[bytes]:
        item = {"id": "msg_bench", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        return [self._event("response.created", {"response": responses_object(self.model, "in_progress", [])}),
                self._event("response.in_progress", {"response": responses_object(self.model, "in_progress", [])}),
                self._event("response.output_item.added", {"output_index": 0, "item": item}),
                self._event("response.content_part.added", {"item_id": "msg_bench", "output_index": 0,
                                                            "content_index": 0, "part": {
                                                                "type": "output_text", "text": "", "annotations": []}})]

    def content(self, text: str) -> bytes:
        self.sequence += 1
        return (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":'
                + str(self.sequence).encode() + b',"item_id":"msg_bench","output_index":0,"content_index":0,'
                b'"delta":' + orjson.dumps(text) + b',"logprobs":[]}\n\n')

    def closing(self, chunks: int) -> list[bytes]:
        done = dict(_MESSAGE_ITEM, content=[{"type": "output_text", "text": "", "annotations": []}])
        return [self._event("response.output_text.done", {"item_id": "msg_bench", "output_index": 0,
                                                          "content_index": 0, "text": "", "logprobs": []}),
                self._event("response.content_part.done", {"item_id": "msg_bench", "output_index": 0,
                                                           "content_index": 0, "part": done["content"][0]}),
                self._event("response.output_item.done", {"output_index": 0, "item": done}),
                self._event("response.completed", {"response": responses_object(self.model, output=[done],
                                                                                 output_tokens=chunks)})]


# ---- HTTP ---------------------------------------------------------------------------------

def http_head(status: str, content_type: bytes, length: int | None) -> bytes:
    framing = b"Transfer-Encoding: chunked\r\n" if length is None else b"Content-Length: %d\r\n" % length
    return (b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + content_type + b"\r\n" + framing
            + b"Connection: keep-alive\r\n\r\n")


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class UpstreamProtocol(asyncio.Protocol):
    """One client connection; requests are answered in order (a stream holds the connection)."""

    def __init__(self, server: "UpstreamServer"):
        self.server = server
        self.buffer = bytearray()
        # The size the buffer must reach for the request whose head was seen (0: none yet): a big
        # body arrives in many reads, and searching it again for the head on each costs milliseconds.
        self.awaited = 0
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a stream is being written; later requests wait in the buffer
        self.closed = False
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections += 1

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.writable.set()
        self.server.connections -= 1

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) < self.awaited:
            return
        if not self.busy:
            self.process()

    def process(self) -> None:
        while not self.busy and not self.closed:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buffer[:head_end]).decode("latin-1")
            request_line, _, header_text = head.partition("\r\n")
            headers = {}
            for line in header_text.split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if "chunked" in headers.get("transfer-encoding", ""):
                self.reply(b"411 Length Required", b"text/plain", b"send a Content-Length")
                self.transport.close()
                return
            end = head_end + 4 + length
            if len(self.buffer) < end:
                self.awaited = end
                return
            self.awaited = 0
            body = bytes(self.buffer[head_end + 4:end])
            del self.buffer[:end]
            method, _, rest = request_line.partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            self.route(method, path, headers, body)

    def reply(self, status: bytes, content_type: bytes, body: bytes) -> None:
        self.server.requests += 1
        self.transport.write(http_head(status.decode(), content_type, len(body)) + body)

    def route(self, method: str, path: str, headers: dict, body: bytes) -> None:
        if method == "GET" and path.endswith("/models"):
            anthropic = "anthropic-version" in headers or "x-api-key" in headers
            self.reply(b"200 OK", b"application/json", self.server.catalog(anthropic))
            return
        if method != "POST" or not path.endswith(("/chat/completions", "/messages", "/responses")):
            self.reply(b"404 Not Found", b"application/json",
                       b'{"error":{"message":"no such route","type":"invalid_request_error"}}')
            return
        try:
            request = _decoded(body)
            model = str(request.get("model", "bench"))
        except (orjson.JSONDecodeError, msgspec.DecodeError, AttributeError):
            self.reply(b"400 Bad Request", b"application/json",
                       b'{"error":{"message":"body is not a JSON object","type":"invalid_request_error"}}')
            return
        wire = "anthropic" if path.endswith("/messages") else "responses" if path.endswith("/responses") else "openai"
        if not request.get("stream"):
            self.reply(b"200 OK", b"application/json", _WHOLE_ANSWERS[wire](model))
            return
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        events = _STREAMS[wire](model, include_usage)
        self.busy = True
        asyncio.ensure_future(self.stream(events, *stream_shape(model, self.server.chunks, self.server.delay_ms)))

    async def stream(self, events, chunks: int, delay: float) -> None:
        self.server.requests += 1
        self.server.streams += 1
        try:
            write = self.transport.write
            write(http_head("200 OK", b"text/event-stream", None)
                  + b"".join(http_chunk(event) for event in events.opening()) + http_chunk(events.content(stamp())))
            start = time.monotonic()
            for index in range(1, chunks):
                if delay:
                    # Chunk i is due at start + i*delay: no drift accumulates over a long stream.
                    await asyncio.sleep(max(0.0, start + index * delay - time.monotonic()))
                if not self.writable.is_set():
                    await self.writable.wait()
                if self.closed:
                    return
                write(http_chunk(events.content(stamp())))
            write(b"".join(http_chunk(event) for event in events.closing(chunks)) + b"0\r\n\r\n")
        finally:
            self.server.streams -= 1
            self.busy = False
        if self.buffer and not self.closed:
            self.process()


_WHOLE_ANSWERS = {"openai": openai_completion, "anthropic": anthropic_message, "responses": openai_response}
_STREAMS = {"openai": OpenAIStream, "anthropic": AnthropicStream, "responses": ResponsesStream}


class UpstreamServer:
    def __init__(self, chunks: int = 20, delay_ms: float = 20.0):
        self.chunks = chunks
        self.delay_ms = delay_ms
        self.requests = 0
        self.streams = 0
        self.connections = 0
        self._catalogs = {
            False: orjson.dumps({"object": "list", "data": [
                {"id": "bench", "object": "model", "created": CREATED, "owned_by": "bench", "context_length": 128000}]}),
            True: orjson.dumps({"data": [{"type": "model", "id": "bench", "display_name": "bench",
                                          "created_at": "2025-01-01T00:00:00Z", "max_input_tokens": 200000}],
                                "has_more": False, "first_id": "bench", "last_id": "bench"}),
        }

    def catalog(self, anthropic: bool) -> bytes:
        return self._catalogs[anthropic]

    async def start(self, host: str = "127.0.0.1", port: int = 0, backlog: int = 16384) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: UpstreamProtocol(self), host, port, backlog=backlog, reuse_address=True)


def install_fast_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(port: int, chunks: int, delay_ms: float) -> None:
    server = await UpstreamServer(chunks, delay_ms).start("127.0.0.1", port)
    print(f"bench upstream on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream when the model does not say")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="milliseconds between chunks when the model does not say")
    args = parser.parse_args()
    # A provider's server is not what is measured: its big bodies must not cost it page faults
    # (see proxy/server/heap.py), which would slow direct and proxied runs alike and load the shared core.
    from proxy.server.heap import keep_freed_memory
    keep_freed_memory()
    install_fast_loop()
    try:
        asyncio.run(serve(args.port, args.chunks, args.delay_ms))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
