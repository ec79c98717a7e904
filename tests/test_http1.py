"""The upstream client (proxy/upstream/http1.py, proxy/upstream/pool.py) against raw loopback servers
that write exact bytes: framing (Content-Length, chunked, until close), decoding, pooling and
the stale-socket retry, timeouts, back-pressure, and refusal of malformed answers."""
from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest

from proxy.upstream import http1
from proxy.upstream import pool as upstream_client


class RawServer:
    """Accepts connections; for each request head read, writes what `answer(n)` returns
    (n counts requests across connections). `None` closes the connection instead."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> "RawServer":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.pool = upstream_client.Pool(f"http://127.0.0.1:{self.port}/v1")
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                reply = self.answer(len(self.requests))
                if asyncio.iscoroutine(reply):
                    reply = await reply
                if reply is None:
                    writer.close()
                    return
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def close(self) -> None:
        self.pool.close()
        for writer in self.writers:
            writer.close()
        self.server.close()


@pytest.fixture
async def raw_server():
    servers = []

    async def start(answer):
        server = await RawServer(answer).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def _deadline(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def _request(server: RawServer, body: bytes = b'{"a":1}', read_timeout: float = 5.0,
                   deadline: float | None = None, method: str = "POST", headers=None) -> http1.Response:
    return await upstream_client.send(server.pool, method, server.pool.target("chat/completions"),
                            headers or {"content-type": "application/json"}, body, connect_timeout=2.0,
                            read_timeout=read_timeout, deadline=deadline or _deadline())


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra + \
        b"Content-Length: %d\r\n\r\n" % len(body) + body


async def test_content_length_answer_and_the_connection_is_reused(raw_server):
    server = await raw_server(lambda n: _ok(b'{"n":%d}' % n))
    for n in (1, 2, 3):
        response = await _request(server)
        assert (response.status, response.content_type) == (200, "application/json")
        assert await response.read() == b'{"n":%d}' % n
        response.release()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:%d\r\n" % server.port in first
    assert b"\r\nContent-Length: 7\r\n" in first and first.endswith(b'\r\n\r\n{"a":1}')


async def test_chunked_answer_with_extensions_and_trailers(raw_server):
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
    server = await raw_server(lambda n: answer)
    for _ in range(2):
        response = await _request(server)
        assert await response.read() == b"hello world"
        response.release()
    assert server.connections == 1  # chunked framing ended exactly: reusable


async def test_chunked_answer_split_into_single_bytes(raw_server):
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")

    async def trickle(n):
        writer = server.writers[-1]
        for byte in answer[:-1]:
            writer.write(bytes([byte]))
            await writer.drain()
        return answer[-1:]

    server = await raw_server(trickle)
    response = await _request(server)
    assert await response.read() == b"abcdefg"


@pytest.mark.parametrize("encoding,compress", [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send it
])
async def test_compressed_bodies_are_decoded(raw_server, encoding, compress):
    body = b'{"text": "' + b"repeated words " * 500 + b'"}'
    server = await raw_server(lambda n: _ok(compress(body), b"Content-Encoding: %s\r\n" % encoding.encode()))
    response = await _request(server)
    assert await response.read() == body
    assert b"Accept-Encoding: gzip, deflate" in server.requests[0]


async def test_body_until_close_is_read_to_the_end_and_not_pooled(raw_server):
    async def answer(n):
        server.writers[-1].write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        return None  # then close

    server = await raw_server(answer)
    response = await _request(server)
    assert await response.read() == b"all of it"
    response.release()
    response = await _request(server)  # a new connection: the first one ended the body by closing
    assert await response.read() == b"all of it"
    assert server.connections == 2


async def test_interim_100_continue_is_skipped_and_204_has_no_body(raw_server):
    answers = {1: b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(b"{}"), 2: b"HTTP/1.1 204 No Content\r\n\r\n",
               3: _ok(b"again")}
    server = await raw_server(lambda n: answers[n])
    for expected_status, expected_body in ((200, b"{}"), (204, b""), (200, b"again")):
        response = await _request(server)
        assert response.status == expected_status
        assert await response.read() == expected_body
        response.release()
    assert server.connections == 1


async def test_a_pooled_connection_closed_by_the_upstream_while_idle_is_not_used(raw_server):
    server = await raw_server(lambda n: _ok(b"fine"))
    response = await _request(server)
    await response.read()
    response.release()
    for writer in server.writers:  # the upstream drops its idle keep-alive connection
        writer.transport.abort()
    await asyncio.sleep(0.05)
    response = await _request(server)
    assert await response.read() == b"fine"
    assert (server.connections, len(server.requests)) == (2, 2)


async def test_a_connection_the_upstream_half_closed_is_not_reused(raw_server):
    async def answer_then_eof(n):
        server.writers[-1].write(_ok(b"bye"))
        server.writers[-1].write_eof()  # FIN now; the full close would come later
        await asyncio.sleep(0.5)
        return None

    server = await raw_server(answer_then_eof)
    response = await _request(server)
    assert await response.read() == b"bye"
    await asyncio.sleep(0.05)
    first = response._connection
    response.release()
    assert await server.pool.acquire(2.0, _deadline()) is not first


async def test_a_pooled_connection_that_closes_as_it_is_reused_is_retried_once_fresh(raw_server):
    # The race the previous test avoids: the close arrives only after the request was written.
    server = await raw_server(lambda n: None if n == 2 else _ok(b"answer %d" % n))
    response = await _request(server)
    assert await response.read() == b"answer 1"
    response.release()
    response = await _request(server)
    assert await response.read() == b"answer 3"
    assert (server.connections, len(server.requests)) == (2, 3)


async def test_a_fresh_connection_closed_before_answering_is_not_retried(raw_server):
    server = await raw_server(lambda n: None)
    with pytest.raises(http1.ConnectionDropped) as caught:
        await _request(server)
    assert caught.value.got_head is False
    assert len(server.requests) == 1  # sent once: a request that may have been read is never repeated


async def test_drop_in_the_middle_of_a_body(raw_server):
    async def answer(n):
        server.writers[-1].write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        return None

    server = await raw_server(answer)
    response = await _request(server)
    with pytest.raises(http1.ConnectionDropped) as caught:
        await response.read()
    assert caught.value.got_head is True


async def test_read_timeout_before_the_head_and_the_deadline_between_chunks(raw_server):
    # The server's silences (30 s) dwarf the limits under test (0.5 s read timeout, 2 s deadline),
    # so a slow connect on a loaded machine cannot turn one limit into the other.
    async def slow(n):
        if n == 1:
            await asyncio.sleep(30)
            return _ok(b"late")
        server.writers[-1].write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n")
        await asyncio.sleep(30)
        return b"0\r\n\r\n"

    server = await raw_server(slow)
    with pytest.raises(http1.ReadTimeout) as caught:
        await _request(server, read_timeout=0.5)
    assert (caught.value.by_deadline, caught.value.got_head) == (False, False)
    response = await _request(server, read_timeout=30.0, deadline=_deadline(2.0))
    assert await response.read_chunk() == b"hi"
    with pytest.raises(http1.ReadTimeout) as caught:
        await response.read_chunk()
    assert (caught.value.by_deadline, caught.value.got_head) == (True, True)


@pytest.mark.parametrize("answer,problem", [
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than its size"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx", "Content-Encoding"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope", "gzip"),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\r2\r\nContent-Length: 0\r\n\r\n", "control character"),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\n2\r\nContent-Length: 0\r\n\r\n", "control character"),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\x002\r\nContent-Length: 0\r\n\r\n", "control character"),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\x7f\r\nContent-Length: 0\r\n\r\n", "control character"),
    (b"HTTP/1.1 200 OK\r\nX\rA: 1\r\nContent-Length: 0\r\n\r\n", "control character"),
    (b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n", "control character"),
    (b"HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 0\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\n: empty name\r\nContent-Length: 0\r\n\r\n", "header line"),
])
async def test_malformed_answers_are_refused(raw_server, answer, problem):
    server = await raw_server(lambda n: answer)
    with pytest.raises(http1.MalformedResponse, match=problem):
        response = await _request(server)
        await response.read()


async def test_a_tab_in_a_header_value_is_kept(raw_server):
    server = await raw_server(lambda n: _ok(b"{}", b"X-Note: a\tb\r\n"))
    response = await _request(server)
    assert response.headers["X-Note"] == "a\tb"
    response.close()


async def test_the_deadline_holds_when_data_is_always_waiting(raw_server):
    piece = b"x" * 4096

    async def endless(n):
        writer = server.writers[-1]
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while not writer.is_closing():
            writer.write(b"1000\r\n" + piece + b"\r\n")
            await writer.drain()

    server = await raw_server(endless)
    response = await _request(server, read_timeout=30.0, deadline=_deadline(1.0))
    started = asyncio.get_running_loop().time()
    with pytest.raises(http1.ReadTimeout) as caught:
        while await response.read_chunk():
            pass
    assert caught.value.by_deadline and asyncio.get_running_loop().time() - started < 10


async def test_a_gzip_bomb_inflates_a_bounded_piece_per_read_and_is_refused_past_the_cap(raw_server):
    bomb = gzip.compress(b"0" * (64 * 1024 * 1024), 9)  # 64 MiB from about 64 KiB
    server = await raw_server(lambda n: _ok(bomb, b"Content-Encoding: gzip\r\n"))
    response = await _request(server)
    sizes = [len(await response.read_chunk()) for _ in range(20)]
    assert max(sizes) <= http1.DECODED_PER_READ and sum(sizes) > 0
    response.close()
    response = await _request(server)
    with pytest.raises(http1.ResponseTooLarge):
        await response.read(refuse_beyond=1024 * 1024)
    response.close()
    response = await _request(server)
    assert len(await response.read()) == 64 * 1024 * 1024  # read whole when nothing caps it
    response.release()


async def test_an_endless_head_is_refused_not_buffered(raw_server):
    server = await raw_server(lambda n: b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * (http1.MAX_HEAD_BYTES + 10))
    with pytest.raises(http1.MalformedResponse, match="head larger"):
        await _request(server)


async def test_a_slow_reader_pauses_the_upstream_instead_of_buffering(raw_server):
    size = 32 * 1024 * 1024
    server = await raw_server(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
    response = await _request(server)
    await asyncio.sleep(0.5)  # nobody reads: the client must stop reading the socket
    connection = response._connection
    assert connection._buffered <= http1.PAUSE_ABOVE + 1024 * 1024
    assert server.writers[0].transport.get_write_buffer_size() > 0  # the rest waits at the upstream
    total = 0
    while chunk := await response.read_chunk():
        total += len(chunk)
    assert total == size


async def test_header_with_a_line_break_is_refused_before_sending(raw_server):
    server = await raw_server(lambda n: _ok(b"{}"))
    with pytest.raises(ValueError):
        await _request(server, headers={"x-note": "a\r\nInjected: yes"})
    assert server.requests == []


async def test_refused_connection_is_connect_failed():
    pool = upstream_client.Pool("http://127.0.0.1:9/v1")  # discard port: nothing listens
    with pytest.raises(http1.ConnectFailed) as caught:
        await upstream_client.send(pool, "GET", pool.target("models"), {}, b"", connect_timeout=2.0, read_timeout=2.0,
                         deadline=_deadline())
    assert isinstance(caught.value.os_error, ConnectionRefusedError)


async def test_idle_connections_are_closed_after_the_idle_time(raw_server, monkeypatch):
    monkeypatch.setattr(upstream_client, "IDLE_SECONDS", 0.1)
    server = await raw_server(lambda n: _ok(b"{}"))
    response = await _request(server)
    await response.read()
    response.release()
    connection = server.pool._idle[0]
    await asyncio.sleep(0.3)
    assert connection.closed and server.pool._idle == []


def test_request_targets_keep_the_base_path_and_encode_what_is_unsafe():
    pool = upstream_client.Pool("https://api.example.com/openai/v1")
    assert pool.host_header == "api.example.com" and pool.port == 443
    assert pool.target("chat/completions") == "/openai/v1/chat/completions"
    assert pool.target("models", "a=1&b=two") == "/openai/v1/models?a=1&b=two"
    assert pool.target("files", "q=a b") == "/openai/v1/files?q=a%20b"
    assert upstream_client.Pool("http://[::1]:8000/v1").host_header == "[::1]:8000"
