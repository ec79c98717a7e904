"""Messages `system` and `messages` -> chat messages.

A user turn's tool_result blocks become `tool` messages placed before the rest of
that turn (chat requires the answers to an assistant's tool calls to follow it
directly); an assistant turn's blocks become one assistant message carrying text,
tool_calls, and the signed thinking as `thinking_blocks` plus `reasoning_content`.
Blocks a chat upstream cannot take are refused with a 400 naming
`messages[i].content[j].type` rather than dropped, so the client knows its
conversation was not sent as written.
"""
from __future__ import annotations

from typing import Any

from proxy.core import jsonutil
from proxy.core.errors import InvalidRequest

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# tool_result.is_error has no chat counterpart; the model reads the failure from this prefix.
TOOL_ERROR_PREFIX = "Error: "
# A tool message whose images were moved to the following user message says so.
TOOL_IMAGES_MOVED = "(the image output of this tool call follows in the next message)"
# ...and that message names the call each group of images came from.
TOOL_IMAGES_LABEL = "Image output of tool call {id}:"
_ANTHROPIC_ONLY = "can only be sent to an Anthropic upstream; this model is served by a chat-completions upstream"


class AnthropicOnly(InvalidRequest):
    """A feature only an Anthropic upstream can serve (documents, server tools and their blocks,
    Files API images, MCP servers, containers): such a request is passed through to Anthropic, and
    refused with this error only when routing finds no Anthropic upstream to send it to."""


def system_message(system: Any) -> dict[str, Any] | None:
    """`system` (a string or text blocks) -> one system message, or None when empty."""
    if system is None:
        return None
    if isinstance(system, str):
        return {"role": "system", "content": system} if system else None
    if not isinstance(system, list):
        raise InvalidRequest("system must be a string or an array of text blocks", param="system")
    parts = [_text_part(block, f"system[{j}]") for j, block in enumerate(system)]
    return _message("system", [part for part in parts if part is not None], join="\n\n")


def chat_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty array", param="messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where} must be an object", param=where)
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, (str, list)):
            raise InvalidRequest(f"{where}.content must be a string or an array of content blocks",
                                 param=f"{where}.content")
        if role == "user":
            out.extend(_user_turn(content, where))
        elif role == "assistant":
            out.append(_assistant_turn(content, where))
        elif role == "system":  # newer API versions take system turns inline
            system = system_message(content) if isinstance(content, str) else _inline_system(content, where)
            if system is not None:
                out.append(system)
        else:
            raise InvalidRequest(f"{where}.role must be 'user' or 'assistant'", param=f"{where}.role")
    return out


def _inline_system(content: list[Any], where: str) -> dict[str, Any] | None:
    parts = [_text_part(block, f"{where}.content[{j}]") for j, block in enumerate(content)]
    return _message("system", [part for part in parts if part is not None], join="\n\n")


# ---- user turns ------------------------------------------------------------------------------

def _user_turn(content: str | list[Any], where: str) -> list[dict[str, Any]]:
    """Tool messages first, then one user message: images tool results returned, then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    moved_images: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = _block_type(block, at)
        if kind == "text":
            part = _text_part(block, at)
            if part is not None:
                parts.append(part)
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            message, images = _tool_result(block, at)
            tools.append(message)
            moved_images.extend(images)
        else:
            raise _refused(kind, at, "a user")
    out = list(tools)
    if moved_images or parts:
        out.append(_message("user", moved_images + parts, join=None))
    return out or [{"role": "user", "content": ""}]  # a turn of empty text still holds its place


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A `tool` message, and the images the result held.

    Chat tool messages hold text only, so images move to the user message that
    follows the tool messages, after a label naming the call, and the tool message
    says so. `is_error: true` has no chat field: the text is prefixed with
    TOOL_ERROR_PREFIX. A cache_control (on the result or on its text) makes the
    content one text part carrying it, so prompt caching keeps its breakpoint;
    otherwise the content is a plain string (text blocks joined by newlines).
    """
    tool_id = block.get("tool_use_id")
    if not isinstance(tool_id, str) or not tool_id:
        raise InvalidRequest(f"{where}.tool_use_id must be a non-empty string", param=f"{where}.tool_use_id")
    texts, images, cache_control = _tool_result_content(block.get("content"), f"{where}.content")
    text = "\n".join(texts)
    if images:
        text = f"{text}\n{TOOL_IMAGES_MOVED}" if text else TOOL_IMAGES_MOVED
        images = [{"type": "text", "text": TOOL_IMAGES_LABEL.format(id=tool_id)}, *images]
    if block.get("is_error") is True:
        text = TOOL_ERROR_PREFIX + text if text else TOOL_ERROR_PREFIX.rstrip(": ")
    cache_control = _cache_control(block, where) or cache_control
    content: Any = [{"type": "text", "text": text, "cache_control": cache_control}] if cache_control else text
    return {"role": "tool", "tool_call_id": tool_id, "content": content}, images


def _tool_result_content(content: Any, where: str) -> tuple[list[str], list[dict[str, Any]], Any]:
    if content is None:
        return [], [], None
    if isinstance(content, str):
        return [content], [], None
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array of text and image blocks", param=where)
    texts, images, cache_control = [], [], None
    for k, block in enumerate(content):
        at = f"{where}[{k}]"
        kind = _block_type(block, at)
        if kind == "text":
            part = _text_part(block, at)
            if part is not None:
                texts.append(part["text"])
                cache_control = part.get("cache_control") or cache_control
        elif kind == "image":
            images.append(_image_part(block, at))
        else:
            raise _refused(kind, at, "a tool_result")
    return texts, images, cache_control


# ---- assistant turns ---------------------------------------------------------------------------

def _assistant_turn(content: str | list[Any], where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = _block_type(block, at)
        if kind == "text":
            part = _text_part(block, at)
            if part is not None:
                parts.append(part)
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind in ("thinking", "redacted_thinking"):
            thinking.append(_thinking_block(block, at, kind))
        else:
            raise _refused(kind, at, "an assistant")
    message = _message("assistant", parts, join="\n\n") or {"role": "assistant", "content": "" if not calls else None}
    if calls:
        message["tool_calls"] = calls
    signed = [block for block in thinking if block.get("signature", True)]
    if signed:
        message["thinking_blocks"] = signed
    reasoning = "".join(block["thinking"] for block in thinking if block["type"] == "thinking")
    if reasoning:
        message["reasoning_content"] = reasoning
    return message


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    for name in ("id", "name"):
        if not isinstance(block.get(name), str) or not block[name]:
            raise InvalidRequest(f"{where}.{name} must be a non-empty string", param=f"{where}.{name}")
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"{where}.input must be an object", param=f"{where}.input")
    try:
        encoded = jsonutil.dumps_str(arguments)
    except ValueError as exc:
        raise InvalidRequest(f"{where}.input cannot be encoded: {exc}", param=f"{where}.input") from None
    return {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": encoded}}


def _thinking_block(block: dict[str, Any], where: str, kind: str) -> dict[str, Any]:
    """A thinking block as the pivot's `thinking_blocks` entry. Only signed ones are kept there
    (the Anthropic wire sends them back; nothing else can verify them); an unsigned one, which
    this proxy made from a chat model's reasoning, lives on as `reasoning_content` alone."""
    fields = ("thinking", "signature") if kind == "thinking" else ("data",)
    for name in fields:
        if not isinstance(block.get(name), str):
            raise InvalidRequest(f"{where}.{name} must be a string", param=f"{where}.{name}")
    return {"type": kind, **{name: block[name] for name in fields}}


# ---- parts -------------------------------------------------------------------------------------

def _block_type(block: Any, where: str) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise InvalidRequest(f"{where} must be a content block object with a type", param=f"{where}.type")
    return block["type"]


def _refused(kind: str, where: str, turn: str) -> InvalidRequest:
    if kind == "document":
        return AnthropicOnly(f"{where}.type: document blocks (PDF and text documents) {_ANTHROPIC_ONLY}",
                             param=f"{where}.type")
    if kind == "server_tool_use" or kind.endswith("_tool_result") or kind in ("search_result", "container_upload"):
        return AnthropicOnly(f"{where}.type: '{kind}' blocks belong to Anthropic's server tools and {_ANTHROPIC_ONLY}",
                             param=f"{where}.type")
    if kind in ("text", "image", "tool_result", "tool_use", "thinking", "redacted_thinking"):
        detail = f"'{kind}' blocks cannot appear in {turn} turn"
    else:
        detail = f"unknown content block type '{kind}'"
    return InvalidRequest(f"{where}.type: {detail}", param=f"{where}.type")


def _text_part(block: Any, where: str) -> dict[str, Any] | None:
    if _block_type(block, where) != "text":
        raise InvalidRequest(f"{where}.type must be 'text' here", param=f"{where}.type")
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}.text must be a string", param=f"{where}.text")
    if not text:
        return None  # Anthropic refuses empty text blocks; a chat upstream gains nothing from one
    part: dict[str, Any] = {"type": "text", "text": text}
    cache_control = _cache_control(block, where)
    if cache_control:
        part["cache_control"] = cache_control
    return part


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    at = f"{where}.source"
    if not isinstance(source, dict):
        raise InvalidRequest(f"{at} must be an object", param=at)
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or media_type not in IMAGE_MEDIA_TYPES:
            raise InvalidRequest(f"{at}.media_type must be one of {', '.join(sorted(IMAGE_MEDIA_TYPES))}",
                                 param=f"{at}.media_type")
        if not isinstance(data, str) or not data:
            raise InvalidRequest(f"{at}.data must be a non-empty base64 string", param=f"{at}.data")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise InvalidRequest(f"{at}.url must be an http(s) URL", param=f"{at}.url")
    elif kind == "file":
        raise AnthropicOnly(f"{at}.type: Files API images {_ANTHROPIC_ONLY}", param=f"{at}.type")
    else:
        raise InvalidRequest(f"{at}.type must be 'base64' or 'url'", param=f"{at}.type")
    part: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
    cache_control = _cache_control(block, where)
    if cache_control:
        part["cache_control"] = cache_control
    return part


def _cache_control(block: dict[str, Any], where: str) -> dict[str, Any] | None:
    value = block.get("cache_control")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}.cache_control must be an object", param=f"{where}.cache_control")
    return dict(value)


def _message(role: str, parts: list[dict[str, Any]], join: str | None) -> dict[str, Any] | None:
    """Parts as one string where nothing is lost by it (a single plain text part, or plain
    text parts with a `join` separator), else as the parts array."""
    if not parts:
        return None
    plain = all(part["type"] == "text" and len(part) == 2 for part in parts)
    if plain and (len(parts) == 1 or join is not None):
        return {"role": role, "content": (join or "").join(part["text"] for part in parts)}
    return {"role": role, "content": parts}
