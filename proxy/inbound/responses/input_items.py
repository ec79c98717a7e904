"""Responses `input` items -> chat messages (the pivot).

Chat keeps one assistant turn as one message (text, tool calls and the reasoning that led to
them); Responses spreads it over items. So consecutive function/custom tool calls join one
assistant message (the assistant message just before them too), and a reasoning item is held
until the assistant message or tool call it precedes, which it is attached to. A reasoning
item followed by nothing it could belong to is dropped: a chat upstream has no place for it.

Images and files in tool outputs cannot sit in a chat `tool` message; they go into one user
message right after the run of tool messages (chat requires tool messages to follow their
assistant message without anything between).
"""
from __future__ import annotations

from typing import Any, Callable

from proxy.config.secrets import quote
from proxy.core import jsonutil
from proxy.core.errors import InvalidRequest
from proxy.inbound.responses.thinking_token import decode_thinking_blocks, is_own_token

MESSAGE_ROLES = ("user", "assistant", "system", "developer")
# Output items of OpenAI-hosted tools: only a Responses-native upstream can take them back.
HOSTED_ITEM_TYPES = frozenset({
    "file_search_call", "web_search_call", "computer_call", "computer_call_output", "image_generation_call",
    "code_interpreter_call", "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
    "apply_patch_call", "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output", "compaction",
    "compaction_trigger", "additional_tools", "program", "program_output"})
_PARTS_BY_ROLE = {"user": ("input_text", "input_image", "input_file"), "system": ("input_text",),
                  "assistant": ("output_text", "refusal", "input_text")}
_IMAGE_DETAILS = ("auto", "low", "high")
TOOL_MEDIA_NOTE = "(the tool's image and file output follows in the next message)"


def fail(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def required_text(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        missing = name not in item
        raise fail(f"'{where}.{name}' is required and must be a string", f"{where}.{name}",
                   "missing_required_parameter" if missing else "invalid_type")
    return value


def chat_tool_name(name: str, namespace: Any) -> str:
    """The name a chat upstream knows a tool by: a namespaced one is `<namespace>__<name>`,
    since chat and Anthropic tool names allow only [A-Za-z0-9_-]."""
    return f"{namespace}__{name}" if isinstance(namespace, str) and namespace else name


def _chat_name(item: dict[str, Any], where: str) -> str:
    namespace = item.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise fail(f"'{where}.namespace' must be a string", f"{where}.namespace", "invalid_type")
    return chat_tool_name(required_text(item, "name", where), namespace)


def input_messages(value: Any, instructions: str | None) -> list[dict[str, Any]]:
    """The chat messages for `instructions` + `input` (a string or a list of items)."""
    builder = _Builder()
    if instructions:
        builder.messages.append({"role": "system", "content": instructions})
    if isinstance(value, str):
        builder.messages.append({"role": "user", "content": value})
    elif isinstance(value, list):
        for index, item in enumerate(value):
            builder.add(item, f"input[{index}]")
        builder.flush_media()
    elif value is not None:
        raise fail("'input' must be a string or an array of items", "input", "invalid_type")
    return builder.messages


class _Builder:
    """Walks the items once, keeping only what the next item may need to join."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.reasoning: dict[str, list[str]] | None = None   # held for the next assistant turn
        self.assistant: dict[str, Any] | None = None          # the message tool calls may join
        self.media: list[dict[str, Any]] = []                 # tool-output images for a user message

    def add(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise fail(f"'{where}' must be an object", where, "invalid_type")
        kind = item.get("type", "message" if "role" in item else None)
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise _unknown_item(kind, where)
        if kind not in ("function_call_output", "custom_tool_call_output"):
            self.flush_media()
        handler(self, item, where)

    def flush_media(self) -> None:
        if self.media:
            self.messages.append({"role": "user", "content": self.media})
            self.media = []

    # ---- items ----------------------------------------------------------------------------------

    def _message(self, item: dict[str, Any], where: str) -> None:
        role = item.get("role")
        if role not in MESSAGE_ROLES:
            raise fail(f"'{where}.role' must be one of {', '.join(MESSAGE_ROLES)}", f"{where}.role")
        role = "system" if role == "developer" else role  # not every chat upstream knows developer
        message = {"role": role, **_content(item, role, where)}
        if role == "assistant":
            self._attach_reasoning(message)
            self.assistant = message
        else:
            self.assistant = self.reasoning = None  # reasoning before a user turn belongs to nothing
        self.messages.append(message)

    def _function_call(self, item: dict[str, Any], where: str) -> None:
        arguments = required_text(item, "arguments", where)
        self._tool_call(required_text(item, "call_id", where), _chat_name(item, where), arguments)

    def _custom_call(self, item: dict[str, Any], where: str) -> None:
        arguments = jsonutil.dumps_str({"input": required_text(item, "input", where)})
        self._tool_call(required_text(item, "call_id", where), _chat_name(item, where), arguments)

    def _tool_call(self, call_id: str, name: str, arguments: str) -> None:
        if self.assistant is None or self.reasoning is not None:
            self.assistant = {"role": "assistant", "content": None}
            self._attach_reasoning(self.assistant)
            self.messages.append(self.assistant)
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        self.assistant.setdefault("tool_calls", []).append(call)

    def _call_output(self, item: dict[str, Any], where: str) -> None:
        call_id = required_text(item, "call_id", where)
        output = item.get("output")
        if isinstance(output, str):
            text = output
        elif isinstance(output, list):
            text = self._output_parts(output, f"{where}.output")
        else:
            raise fail(f"'{where}.output' must be a string or an array of parts", f"{where}.output",
                       "missing_required_parameter" if "output" not in item else "invalid_type")
        self.assistant = self.reasoning = None
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": text})

    def _output_parts(self, parts: list[Any], where: str) -> str:
        texts, media = [], []
        for position, part in enumerate(parts):
            chat_part = _part(part, ("input_text", "input_image", "input_file"), f"{where}[{position}]")
            if chat_part["type"] == "text":
                texts.append(chat_part["text"])
            else:
                media.append(chat_part)
        self.media.extend(media)
        return "\n".join(texts) if texts or not media else TOOL_MEDIA_NOTE

    def _reasoning(self, item: dict[str, Any], where: str) -> None:
        held = self.reasoning or {"texts": [], "blocks": [], "foreign": []}
        text, blocks, foreign = _reasoning_parts(item, where)
        if text:
            held["texts"].append(text)
        held["blocks"].extend(blocks)
        held["foreign"].extend(foreign)
        self.reasoning = held

    def _attach_reasoning(self, message: dict[str, Any]) -> None:
        held, self.reasoning = self.reasoning, None
        if held is None:
            return
        if held["texts"]:
            message["reasoning_content"] = "\n\n".join(held["texts"])
        if held["blocks"]:
            message["thinking_blocks"] = held["blocks"]
        if held["foreign"]:
            message["reasoning_encrypted"] = held["foreign"]

    def _reference(self, item: dict[str, Any], where: str) -> None:
        raise fail(f"'{where}': item_reference is not resolved by this proxy (previous_response_id is); send the "
                   f"item itself", where)


_HANDLERS: dict[str, Callable[[_Builder, dict[str, Any], str], None]] = {
    "message": _Builder._message, "function_call": _Builder._function_call,
    "custom_tool_call": _Builder._custom_call, "function_call_output": _Builder._call_output,
    "custom_tool_call_output": _Builder._call_output, "reasoning": _Builder._reasoning,
    "item_reference": _Builder._reference,
}


def _unknown_item(kind: Any, where: str) -> InvalidRequest:
    if kind is None:
        return fail(f"'{where}' needs a 'type' (or a 'role' for a message)", f"{where}.type",
                    "missing_required_parameter")
    if isinstance(kind, str) and kind in HOSTED_ITEM_TYPES:
        return fail(f"'{where}': a '{kind}' item belongs to an OpenAI-hosted tool and cannot be sent to "
                    f"this model", f"{where}.type")
    return fail(f"'{where}.type' '{quote(str(kind), 40)}' is not an input item type this proxy knows", f"{where}.type")


# ---- message content ----------------------------------------------------------------------------------

def _content(item: dict[str, Any], role: str, where: str) -> dict[str, Any]:
    content = item.get("content")
    if isinstance(content, str):
        return {"content": content}
    if not isinstance(content, list):
        raise fail(f"'{where}.content' must be a string or an array of parts", f"{where}.content",
                   "missing_required_parameter" if "content" not in item else "invalid_type")
    allowed = _PARTS_BY_ROLE["system" if role == "system" else role]
    parts = [_part(part, allowed, f"{where}.content[{position}]") for position, part in enumerate(content)]
    if all(part["type"] == "text" for part in parts) and role != "user":
        return {"content": "".join(part["text"] for part in parts)}
    if len(parts) == 1 and parts[0]["type"] == "text":
        return {"content": parts[0]["text"]}
    return {"content": parts}


def _part(part: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind not in allowed:
        shown = f"'{quote(kind, 40)}'" if isinstance(kind, str) else "a part without a type"
        raise fail(f"'{where}': {shown} is not allowed here (use {', '.join(allowed)})", f"{where}.type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": required_text(part, "text", where)}
    if kind == "refusal":
        return {"type": "refusal", "refusal": required_text(part, "refusal", where)}
    if kind == "input_image":
        return _image(part, where)
    return _file(part, where)


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    if part.get("file_id") is not None:
        raise fail(f"'{where}': images given by file_id need OpenAI's file store; send image_url "
                   f"(an https or data: URL) instead", f"{where}.file_id")
    url = required_text(part, "image_url", where)
    image = {"url": url}
    if part.get("detail") in _IMAGE_DETAILS:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file(part: dict[str, Any], where: str) -> dict[str, Any]:
    for name in ("file_id", "file_url"):
        if part.get(name) is not None:
            raise fail(f"'{where}': files given by {name} cannot be sent to this model; send file_data "
                       f"(a base64 data: URL)", f"{where}.{name}")
    file = {"file_data": required_text(part, "file_data", where)}
    if isinstance(part.get("filename"), str):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


# ---- reasoning ----------------------------------------------------------------------------------------

def _reasoning_parts(item: dict[str, Any], where: str) -> tuple[str, list[dict[str, Any]], list[str]]:
    """(reasoning text, signed/redacted blocks for thinking_blocks, tokens of another issuer)."""
    summary = _texts(item, "summary", "summary_text", where)
    content = _texts(item, "content", "reasoning_text", where)
    token = item.get("encrypted_content")
    if token is not None and not isinstance(token, str):
        raise fail(f"'{where}.encrypted_content' must be a string", f"{where}.encrypted_content", "invalid_type")
    if not token:
        return content or summary, [], []
    if not is_own_token(token):
        return content or summary, [], [token]
    blocks = decode_thinking_blocks(token)
    if blocks is None:
        raise fail(f"'{where}.encrypted_content' was made by this proxy but is damaged; send it back "
                   f"unchanged", f"{where}.encrypted_content")
    thought = "".join(block["thinking"] for block in blocks if block["type"] == "thinking")
    kept = [block for block in blocks if block["type"] == "redacted_thinking" or block.get("signature")]
    return thought or content or summary, kept, []


def _texts(item: dict[str, Any], name: str, part_type: str, where: str) -> str:
    parts = item.get(name)
    if parts is None:
        return ""
    if not isinstance(parts, list):
        raise fail(f"'{where}.{name}' must be an array", f"{where}.{name}", "invalid_type")
    texts = []
    for position, part in enumerate(parts):
        here = f"{where}.{name}[{position}]"
        if not isinstance(part, dict) or part.get("type") != part_type:
            raise fail(f"'{here}' must be a {part_type} part", f"{here}.type")
        texts.append(required_text(part, "text", here))
    return "\n\n".join(text for text in texts if text)
