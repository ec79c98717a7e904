"""Two reference proxies that bound what any Python proxy could do on this machine.

- relay:   a byte pipe (asyncio protocols on uvloop): each client connection gets its own
           upstream connection and bytes are copied both ways without being looked at.
           What remains is the price of an extra process on another core: two more socket
           hops, syscalls and cross-core wake-ups. No proxy can be cheaper.
- aiohttp: the smallest aiohttp server + pooled aiohttp ClientSession that forwards
           `/v1/*` and streams the answer back chunk by chunk: the cost of the framework
           byok-proxy is built on, before any of its own work.
- aiohttp-lean: the same server with a minimal raw-protocol upstream client instead of
           ClientSession (non-streaming only): what the upstream client costs.

    python -m bench.baselines relay --port 9300 --upstream-port 9100
"""
from __future__ import annotations

import argparse
import asyncio

# The largest body the aiohttp floors accept (aiohttp's default, 1 MiB, would refuse the bodies phase's).
MAX_BODY = 64 * 1024 * 1024

# ---- relay --------------------------------------------------------------------------------

class _Pipe(asyncio.Protocol):
    """One side of a relayed connection; writes what it receives to its peer."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.peer: "_Pipe | None" = None
        self.pending: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:  # the peer reads too fast for us: stop reading it
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _ClientSide(_Pipe):
    def __init__(self, upstream_port: int):
        super().__init__()
        self.upstream_port = upstream_port

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        transport.pause_reading()
        asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        try:
            _, upstream = await asyncio.get_running_loop().create_connection(_Pipe, "127.0.0.1", self.upstream_port)
        except OSError:
            self.transport.close()
            return
        upstream.peer, self.peer = self, upstream
        for data in self.pending:
            upstream.transport.write(data)
        self.pending.clear()
        self.transport.resume_reading()


async def serve_relay(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _ClientSide(upstream_port), "127.0.0.1", port, backlog=16384)
    async with server:
        await server.serve_forever()


# ---- the smallest aiohttp proxy -----------------------------------------------------------

def build_aiohttp_app(upstream_port: int):
    import aiohttp
    from aiohttp import web

    base = f"http://127.0.0.1:{upstream_port}"

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-upstream"}
        async with request.app["session"].post(base + request.path, data=body, headers=headers) as upstream:
            if upstream.content_type != "text/event-stream":
                return web.Response(status=upstream.status, body=await upstream.read(),
                                    content_type=upstream.content_type)
            response = web.StreamResponse(status=upstream.status, headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def open_session(app) -> None:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def close_session(app) -> None:
        await app["session"].close()

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/healthz", health)
    app.router.add_post("/v1/{path:.*}", forward)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    return app


def build_lean_app(upstream_port: int):
    """The bare aiohttp server with the smallest possible upstream client instead of ClientSession:
    bench/httpclient.py's keep-alive connections in a pool. Non-streaming answers only; it exists
    to measure what the upstream client costs."""
    from aiohttp import web

    from bench.httpclient import ClientConnection, build_request

    idle: list[ClientConnection] = []

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        connection = idle.pop() if idle else await ClientConnection.open("127.0.0.1", upstream_port)
        answer = await connection.request(build_request("127.0.0.1", upstream_port, request.path, body))
        if not connection.closed and connection.keep_alive:
            idle.append(connection)
        return web.Response(status=answer.status, body=answer.body, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/healthz", health)
    app.router.add_post("/v1/{path:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("relay", "aiohttp", "aiohttp-lean"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args()
    from bench.upstream import install_fast_loop
    install_fast_loop()
    if args.kind == "relay":
        try:
            asyncio.run(serve_relay(args.port, args.upstream_port))
        except KeyboardInterrupt:
            pass
        return
    from aiohttp import web
    build = build_lean_app if args.kind == "aiohttp-lean" else build_aiohttp_app
    web.run_app(build(args.upstream_port), host="127.0.0.1", port=args.port, access_log=None,
                print=None, backlog=16384)


if __name__ == "__main__":
    main()
