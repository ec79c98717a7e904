"""Automatic prompt-caching breakpoints for translated requests.

Anthropic caches a prompt prefix only up to a block marked with `cache_control`. A Messages
client marks its own (and is passed through untouched); a Responses client has no way to
spell it, and most chat clients never do. For them the proxy marks the three places a
coding agent's prefix grows from, as Anthropic's guide recommends: the last tool definition,
the end of the system prompt, and the last block of the last turn, so each turn reads what
the previous one wrote. A request that already carries any `cache_control` is left as the
client made it. Short prompts are simply not cached: a breakpoint costs nothing then.

`upstreams.<name>.prompt_caching`: `auto` (the default) marks requests from Responses
clients, `all` also chat clients that marked nothing, `off` never marks.
"""
from __future__ import annotations

from typing import Any

EPHEMERAL = {"type": "ephemeral"}


def wants_breakpoints(setting: str, inbound_api: str) -> bool:
    return setting == "all" or (setting == "auto" and inbound_api == "responses")


def add_breakpoints(native: dict[str, Any]) -> None:
    """Marks the native Messages body in place, unless the client marked it already."""
    if _marked(native):
        return
    tools = native.get("tools")
    if tools:
        tools[-1]["cache_control"] = dict(EPHEMERAL)
    system = native.get("system")
    if isinstance(system, str) and system:
        native["system"] = [{"type": "text", "text": system, "cache_control": dict(EPHEMERAL)}]
    elif isinstance(system, list) and system:
        system[-1]["cache_control"] = dict(EPHEMERAL)
    messages = native.get("messages")
    if messages:
        _mark_last_block(messages[-1])


def _mark_last_block(message: dict[str, Any]) -> None:
    content = message.get("content")
    if isinstance(content, str) and content:
        message["content"] = [{"type": "text", "text": content, "cache_control": dict(EPHEMERAL)}]
    elif isinstance(content, list) and content and content[-1].get("type") not in ("thinking", "redacted_thinking"):
        content[-1]["cache_control"] = dict(EPHEMERAL)  # thinking blocks cannot carry a breakpoint


def _marked(native: dict[str, Any]) -> bool:
    blocks = [*(native.get("tools") or ()), *(native["system"] if isinstance(native.get("system"), list) else ())]
    for message in native.get("messages") or ():
        if isinstance(message.get("content"), list):
            blocks.extend(message["content"])
    return any(isinstance(block, dict) and "cache_control" in block for block in blocks)
