"""Coding-agent bodies for the tests of the shallow read (proxy/inbound/shallow.py and its
Messages and Responses counterparts), and the outcome of posting one, in either error envelope."""
from __future__ import annotations

import json
import random
import re
from typing import Any, Callable

import aiohttp

from proxy.config.model import UpstreamConfig
from proxy.core.exchange import ProxyRequest, Target
from proxy.inbound.shallow import SHALLOW_FROM_BYTES
from tests.conftest import CLIENT_KEY

# Text that makes a body big enough for the shallow read, wherever it is put.
PAD = "x" * SHALLOW_FROM_BYTES


def chat_turn(role: str, text: str) -> dict:
    return {"role": role, "content": text}


def agent_body(size: int, model: str = "up/gpt-test", big: str = "messages",
               item: Callable[[str, str], dict] = chat_turn, rest: str = '"temperature": 0.2') -> bytes:
    """Many turns of code-like text with unicode, escaped quotes and newlines under `big`, one
    `item(role, text)` each (user first), half written as raw UTF-8 and half \\u-escaped; then
    `model` with spaces around its colon, then `rest`, so the model sits mid-body."""
    rnd = random.Random(7)
    words = ["def", "return", "self.items", "print(\"x\")", "naïve", "日本", "🙂", "a\\b", "{", "}", "[0]", "\t"]
    turns, total = [], 0
    while total < size:
        text = "\n".join(" ".join(rnd.choice(words) for _ in range(10)) for _ in range(40))
        turns.append(item("assistant" if len(turns) % 2 else "user", text))
        total += len(text.encode())
    half = len(turns) // 2
    items = ",\n ".join(part for part in (json.dumps(turns[:half], ensure_ascii=False)[1:-1],
                                           json.dumps(turns[half:])[1:-1]) if part)
    return ('{ "%s": [%s],\n  "model" : "%s", %s }' % (big, items, model, rest)).encode()


def sent_both_ways(encode_native: Callable, api: str, upstream_format: str, model: str, raw: bytes, pivot: dict,
                   spliced: Any) -> bytes:
    """What `encode_native` sends an upstream of `upstream_format` from the object a shallow read
    handed on (`spliced`), checked to be what it sends when it reads the client's body itself."""
    target = Target(UpstreamConfig(name="up", base_url="http://127.0.0.1:9/v1", format=upstream_format), model)
    request = ProxyRequest(request_id="r", method="POST", path=api, api=api, body=pivot, native_body=raw)
    sent = b"".join(encode_native(request.replace(spliced=spliced), target))
    assert sent == b"".join(encode_native(request, target))
    return sent


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, the answer decoded) for `body` posted as it is, with the client's key."""
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers={"Content-Type": "application/json",
                                                         "Authorization": f"Bearer {CLIENT_KEY}", **(headers or {})},
                                timeout=aiohttp.ClientTimeout(total=60)) as response:
            return response.status, json.loads(await response.read())


def outcome(status: int, answer: Any) -> tuple:
    """What a client is told: the status, and for an error its type, code, param and message (in
    OpenAI's envelope or Anthropic's), positions in the body left out of the message."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if status < 400 or not isinstance(error, dict):
        return (status,)
    message = re.sub(r"\d+", "N", str(error.get("message")))
    return status, error.get("type"), error.get("code"), error.get("param"), message
