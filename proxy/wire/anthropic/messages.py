"""OpenAI chat messages -> Anthropic Messages turns.

system/developer text is hoisted into `system`; consecutive same-role turns are
merged (tool results first in their user turn); user parts become text, image and
document blocks; assistant tool calls become tool_use blocks, preceded by the
signed thinking the client sent back; tool messages become tool_result blocks.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from proxy.core import jsonutil
from proxy.core.errors import InvalidRequest

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_ID_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)((?:;[\w.+-]+=[\w.+-]+)*);base64,(.*)$", re.DOTALL)
_THINKING_TYPES = ("thinking", "redacted_thinking")
OPENING_PLACEHOLDER = "(conversation start)"


def translate_messages(messages: Iterable[Mapping[str, Any]], keep_thinking: bool) -> tuple[Any, list[dict]]:
    """(system, messages): system/developer text hoisted, turns merged, tools as blocks."""
    system_parts: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            system_parts.extend(_text_blocks(message.get("content"), f"messages[{index}].content"))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), index)
        elif role == "assistant":
            blocks = _assistant_blocks(message, index, keep_thinking)
        elif role == "tool":
            blocks = [_tool_result(message, index)]
            role = "user"
        else:
            raise InvalidRequest(f"messages[{index}].role '{role}' cannot be sent to an Anthropic upstream",
                                 param=f"messages[{index}].role")
        if blocks:
            _append_turn(turns, role, blocks)
    _trim_prefill(turns)
    if turns and turns[0]["role"] == "assistant":
        # Anthropic refuses a conversation that opens with an assistant turn ("first message must
        # use the user role"); an app's opening greeting gets a placeholder user turn before it.
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": OPENING_PLACEHOLDER}]})
    return _system(system_parts), [_compact(turn) for turn in turns]


def _append_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if turns and turns[-1]["role"] == role:  # Anthropic merges consecutive turns; we send them merged
        turns[-1]["content"].extend(blocks)
        if role == "user":  # tool_result blocks must open a user turn
            turns[-1]["content"].sort(key=lambda block: block.get("type") != "tool_result")
    else:
        turns.append({"role": role, "content": list(blocks)})


def _compact(turn: dict[str, Any]) -> dict[str, Any]:
    content = turn["content"]
    if len(content) == 1 and content[0].get("type") == "text" and len(content[0]) == 2:
        return {"role": turn["role"], "content": content[0]["text"]}
    return turn


def _trim_prefill(turns: list[dict[str, Any]]) -> None:
    """A final assistant turn is a prefill; Anthropic refuses one ending in whitespace."""
    if not turns or turns[-1]["role"] != "assistant":
        return
    content = turns[-1]["content"]
    last = content[-1]
    if last.get("type") == "text":
        trimmed = last["text"].rstrip()
        if trimmed:
            content[-1] = {**last, "text": trimmed}
        else:
            content.pop()
            if not content:
                turns.pop()


def _system(parts: list[dict[str, Any]]) -> Any:
    if not parts:
        return None
    if any("cache_control" in part for part in parts):
        return parts
    return "\n\n".join(part["text"] for part in parts)


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array of parts", param=where)
    blocks = []
    for position, part in enumerate(content):
        if not isinstance(part, Mapping) or part.get("type") not in ("text", "refusal"):
            raise InvalidRequest(f"{where}[{position}] must be a text part", param=f"{where}[{position}]")
        block = _text_part(part)
        if block is not None:
            blocks.append(block)
    return blocks


def _text_part(part: Mapping[str, Any]) -> dict[str, Any] | None:
    text = part.get("text") if part.get("type") == "text" else part.get("refusal")
    if not isinstance(text, str) or not text:
        return None  # Anthropic refuses empty text blocks
    block: dict[str, Any] = {"type": "text", "text": text}
    if isinstance(part.get("cache_control"), Mapping):
        block["cache_control"] = dict(part["cache_control"])
    return block


def _user_blocks(content: Any, index: int) -> list[dict[str, Any]]:
    where = f"messages[{index}].content"
    if isinstance(content, str) or content is None:
        return _text_blocks(content, where)
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array of parts", param=where)
    blocks = []
    for position, part in enumerate(content):
        block = _user_part(part, f"{where}[{position}]")
        if block is not None:
            blocks.append(block)
    return blocks


def _user_part(part: Any, where: str) -> dict[str, Any] | None:
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind == "text":
        return _text_part(part)
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        return {"type": "image", "source": image_source(url, where)}
    if kind == "file":
        return _document(part.get("file"), where)
    raise InvalidRequest(f"{where}: a '{kind}' part cannot be sent to an Anthropic upstream "
                         f"(text, image_url and PDF file parts can)", param=where)


def image_source(url: Any, where: str) -> dict[str, Any]:
    """data: URLs become base64 sources, http(s) URLs url sources."""
    if not isinstance(url, str):
        raise InvalidRequest(f"{where}.image_url.url must be a string", param=where)
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    match = _DATA_URL.match(url)
    if match is None:
        raise InvalidRequest(f"{where}: an image must be an https URL or a base64 data: URL", param=where)
    media_type = match.group(1).lower().replace("image/jpg", "image/jpeg")
    if media_type not in IMAGE_MEDIA_TYPES:
        raise InvalidRequest(f"{where}: Anthropic accepts JPEG, PNG, GIF and WebP images, not {media_type}",
                             param=where)
    return {"type": "base64", "media_type": media_type, "data": match.group(3)}


def _document(file: Any, where: str) -> dict[str, Any]:
    data = file.get("file_data") if isinstance(file, Mapping) else None
    match = _DATA_URL.match(data) if isinstance(data, str) else None
    if match is None or match.group(1).lower() != "application/pdf":
        raise InvalidRequest(f"{where}: only PDF files given inline as a base64 data: URL can be sent "
                             f"to an Anthropic upstream (file ids cannot)", param=where)
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                           "data": match.group(3)}}


def _assistant_blocks(message: Mapping[str, Any], index: int, keep_thinking: bool) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = thinking_blocks_of(message) if keep_thinking else []
    blocks.extend(_text_blocks(message.get("content"), f"messages[{index}].content"))
    tool_calls = message.get("tool_calls")
    if tool_calls is not None and not isinstance(tool_calls, list):
        raise InvalidRequest(f"messages[{index}].tool_calls must be an array", param=f"messages[{index}].tool_calls")
    for position, call in enumerate(tool_calls or ()):
        blocks.append(_tool_use(call, f"messages[{index}].tool_calls[{position}]"))
    if blocks and all(block["type"] in _THINKING_TYPES for block in blocks):
        return []  # thinking alone is not a turn Anthropic accepts back
    return blocks


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise InvalidRequest(f"{where} must have function.name", param=where)
    arguments = function.get("arguments")
    if arguments in (None, ""):
        parsed: Any = {}
    elif isinstance(arguments, Mapping):
        parsed = dict(arguments)
    else:
        try:
            parsed = jsonutil.loads(arguments) if isinstance(arguments, str) else None
        except ValueError:
            parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequest(f"{where}.function.arguments must be a JSON object; Anthropic stores tool "
                             f"input as an object", param=f"{where}.function.arguments")
    return {"type": "tool_use", "id": tool_id(call.get("id"), where), "name": function["name"], "input": parsed}


def _tool_result(message: Mapping[str, Any], index: int) -> dict[str, Any]:
    where = f"messages[{index}]"
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(message.get("tool_call_id"), where)}
    content = message.get("content")
    if isinstance(content, list):
        parts = _text_blocks(content, f"{where}.content")
        if parts:
            block["content"] = parts
    elif isinstance(content, str) and content:
        block["content"] = content
    elif content not in (None, ""):
        raise InvalidRequest(f"{where}.content must be a string or an array of text parts", param=f"{where}.content")
    return block


def tool_id(value: Any, where: str) -> str:
    """Anthropic ids match ^[a-zA-Z0-9_-]+$; other providers' ids are made to fit, the same way each time."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{where}: a tool call id is required", param=where)
    return _TOOL_ID_INVALID.sub("_", value)


def thinking_blocks_of(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Signed thinking a client sent back on an assistant turn, as native blocks in their order.

    Read from `thinking_blocks` (what this proxy returns), OpenRouter's `reasoning_details`,
    or `reasoning_content` with a `reasoning_signature`/`signature`. Unsigned reasoning
    cannot be verified by Anthropic and is left out.
    """
    blocks = message.get("thinking_blocks")
    if isinstance(blocks, list) and blocks:
        return _signed_blocks(blocks, message.get("reasoning_content"))
    details = message.get("reasoning_details")
    if isinstance(details, list) and details:
        return _from_reasoning_details(details)
    text = message.get("reasoning_content")
    signature = message.get("reasoning_signature") or message.get("signature")
    if isinstance(text, str) and isinstance(signature, str) and signature:
        return [{"type": "thinking", "thinking": text, "signature": signature}]
    return []


def _signed_blocks(blocks: list[Any], reasoning_text: Any) -> list[dict[str, Any]]:
    out = []
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "thinking" and isinstance(block.get("signature"), str) and block["signature"]:
            text = block.get("thinking")
            out.append({"type": "thinking", "thinking": text if isinstance(text, str) else "",
                        "signature": block["signature"]})
        elif block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            out.append({"type": "redacted_thinking", "data": block["data"]})
    thinking = [block for block in out if block["type"] == "thinking"]
    # A client that kept only the signature: the one block's text is the message's reasoning.
    if len(thinking) == 1 and not thinking[0]["thinking"] and isinstance(reasoning_text, str):
        thinking[0]["thinking"] = reasoning_text
    return out


def _from_reasoning_details(details: list[Any]) -> list[dict[str, Any]]:
    out = []
    for item in details:
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "reasoning.text" and isinstance(item.get("signature"), str) and item["signature"]:
            text = item.get("text")
            out.append({"type": "thinking", "thinking": text if isinstance(text, str) else "",
                        "signature": item["signature"]})
        elif item.get("type") == "reasoning.encrypted" and isinstance(item.get("data"), str):
            out.append({"type": "redacted_thinking", "data": item["data"]})
    return out
