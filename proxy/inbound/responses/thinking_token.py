"""The proxy's own reasoning token: Anthropic thinking blocks carried through a Responses client.

A Responses client (Codex with `store: false`, the Agents SDK) keeps a reasoning item's
`encrypted_content` and sends it back on the next turn; that is the only way signed
Anthropic thinking can reach the upstream again. The token is

    "byok1." + base64url(json([block, ...]))        (no padding)

with blocks in the pivot's `thinking_blocks` form: {"type": "thinking", "thinking", "signature"}
(signature absent when an upstream gave reasoning text without one) or
{"type": "redacted_thinking", "data"}. It is an encoding, not encryption: the thinking text
is what the client could already see in the summary, and Anthropic's signatures (and its
already-encrypted redacted data) are what make the blocks tamper-evident upstream.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from proxy.core import jsonutil

TOKEN_PREFIX = "byok1."


def encode_thinking_blocks(blocks: list[dict[str, Any]]) -> str:
    """Blocks -> an opaque `encrypted_content` string a client sends back unchanged."""
    raw = jsonutil.dumps([_clean(block) for block in blocks if _valid(block)])
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_thinking_blocks(token: Any) -> list[dict[str, Any]] | None:
    """A token this proxy made -> its blocks; None for anything else (another issuer, corruption)."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        return None
    body = token[len(TOKEN_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        blocks = jsonutil.loads(raw)
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(blocks, list) or not all(_valid(block) for block in blocks):
        return None
    return [_clean(block) for block in blocks]


def is_own_token(token: Any) -> bool:
    return isinstance(token, str) and token.startswith(TOKEN_PREFIX)


def _valid(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    if block.get("type") == "thinking":
        signature = block.get("signature")
        return isinstance(block.get("thinking"), str) and (signature is None or isinstance(signature, str))
    return block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str)


def _clean(block: dict[str, Any]) -> dict[str, Any]:
    """Only the fields the pivot knows: nothing else rides along in a client-held token."""
    if block["type"] == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block["data"]}
    clean = {"type": "thinking", "thinking": block["thinking"]}
    if block.get("signature"):
        clean["signature"] = block["signature"]
    return clean
