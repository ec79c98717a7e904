"""A loopback upstream answering each path with a scripted reply, in the provider's own shape.

Catalog, health and check tests use it to stand in for OpenAI, Anthropic,
OpenRouter, vLLM, Ollama and LM Studio: the test puts the documented JSON (or
an error body, a delay, an HTML page, a non-SSE answer) on a path and reads
back what was asked. It can also serve TLS with a certificate made at test time.
"""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aiohttp import web


MODEL_LIST = {"object": "list", "data": [{"id": "m", "object": "model"}]}


def chat_completion(content: str) -> dict[str, Any]:
    """A minimal Chat Completions answer from model `m` saying `content`."""
    return {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}


@dataclass
class Reply:
    status: int = 200
    body: Any = None                  # dict/list -> JSON; str/bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    delay: float = 0.0                # seconds before the answer starts
    sse: list[Any] | None = None      # stream these events (dicts as JSON `data:` lines, str verbatim)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class ScriptedUpstream:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Reply | Callable[[Seen], Reply]] = {}
        self.seen: list[Seen] = []
        self.url = ""
        self.port = 0
        self._runner: web.AppRunner | None = None

    def on(self, method: str, path: str, reply: Reply | Callable[["Seen"], Reply]) -> "ScriptedUpstream":
        """Answer `method path` with `reply`, or with what `reply(seen_request)` returns."""
        self.routes[(method.upper(), path)] = reply
        return self

    def seen_paths(self, method: str = "GET") -> list[str]:
        return [s.path for s in self.seen if s.method == method]

    async def start(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> "ScriptedUpstream":
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=ssl_context, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.path, dict(request.query), dict(request.headers), body)
        self.seen.append(seen)
        reply = self.routes.get((request.method, request.path))
        if callable(reply):
            reply = reply(seen)
        if reply is None:
            return web.json_response({"error": {"message": f"no route {request.method} {request.path}",
                                                "type": "invalid_request_error"}}, status=404)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.sse is not None:
            return await _stream(request, reply)
        data = reply.body
        if isinstance(data, (dict, list)):
            data = json.dumps(data)
        return web.Response(status=reply.status, body=data if isinstance(data, bytes) else (data or "").encode(),
                            headers={"Content-Type": reply.content_type, **reply.headers})


async def _stream(request: web.Request, reply: Reply) -> web.StreamResponse:
    response = web.StreamResponse(status=reply.status, headers={"Content-Type": "text/event-stream", **reply.headers})
    await response.prepare(request)
    for event in reply.sse or ():
        payload = event if isinstance(event, str) else "data: " + json.dumps(event) + "\n\n"
        await response.write(payload.encode())
    return response


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a certificate for 127.0.0.1 that nobody trusts (made now, with cryptography)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "byok-test-self-signed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context
