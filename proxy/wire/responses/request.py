"""A Chat Completions body (the pivot) -> a Responses API request.

The conversation becomes `input` items: system and developer messages stay messages with their
role, an assistant turn becomes its reasoning (encrypted reasoning a Responses client handed
back), its message and one `function_call` item per tool call, and a tool message a
`function_call_output`. Chat-only knobs with no Responses counterpart (n, stop, seed, penalties,
logprobs) are left out rather than sent to be refused. `store: false`: a chat client keeps its
own history, so nothing is left in the upstream's store.
"""
from __future__ import annotations

from typing import Any, Mapping

from proxy.core import jsonutil
from proxy.core.errors import InvalidRequest

# OpenAI refuses a max_output_tokens below this (the 1-token probe of `check` asks for less).
MIN_OUTPUT_TOKENS = 16
_COPIED = ("temperature", "top_p", "parallel_tool_calls", "metadata", "service_tier", "prompt_cache_key",
           "safety_identifier", "user", "stream", "top_logprobs")


def encode_request(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    native: dict[str, Any] = {"model": model, "input": input_items(body.get("messages") or []), "store": False}
    for name in _COPIED:
        if body.get(name) is not None:
            native[name] = body[name]
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(cap, int) and not isinstance(cap, bool):
        native["max_output_tokens"] = max(cap, MIN_OUTPUT_TOKENS)
    if body.get("tools"):
        native["tools"] = [_tool(tool) for tool in body["tools"] if isinstance(tool, Mapping)]
        if body.get("tool_choice") is not None:
            native["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("reasoning_effort") is not None:
        native["reasoning"] = {"effort": body["reasoning_effort"]}  # summaries: `options: {reasoning: {summary: auto}}`
    text = _text(body.get("response_format"), body.get("verbosity"))
    if text:
        native["text"] = text
    return native


# ---- messages -> input items ---------------------------------------------------------------------------

def input_items(messages: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        if role == "tool":
            items.append({"type": "function_call_output", "call_id": str(message.get("tool_call_id") or ""),
                          "output": _plain_text(message.get("content"))})
        elif role == "assistant":
            items.extend(_assistant(message))
        elif role in ("user", "system", "developer"):
            items.append({"role": role, "content": _content(message.get("content"), role)})
    return items


def _assistant(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for token in message.get("reasoning_encrypted") or ():
        if isinstance(token, str):
            items.append({"type": "reasoning", "summary": [], "encrypted_content": token})
    text = _plain_text(message.get("content"))
    if text:
        items.append({"role": "assistant", "content": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            continue
        arguments = function.get("arguments")
        items.append({"type": "function_call", "call_id": str(call.get("id") or ""),
                      "name": str(function.get("name") or ""),
                      "arguments": arguments if isinstance(arguments, str) else jsonutil.dumps_str(arguments or {})})
    return items


def _content(content: Any, role: str) -> Any:
    if not isinstance(content, list):
        return content if isinstance(content, str) else ""
    if role != "user":
        return _plain_text(content)
    return [_part(part) for part in content if isinstance(part, Mapping)]


def _part(part: Mapping[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "input_text", "text": str(part.get("text") or "")}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        detail = image.get("detail") if isinstance(image, Mapping) else None
        return {"type": "input_image", "image_url": url, "detail": detail or "auto"}
    if kind == "file":
        file = part.get("file") if isinstance(part.get("file"), Mapping) else {}
        return {"type": "input_file", **{k: v for k, v in file.items() if k in ("file_id", "file_data", "filename")}}
    raise InvalidRequest(f"a '{kind}' content part cannot be sent to a Responses upstream", param="messages")


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, Mapping) and isinstance(part.get("text"), str))
    return ""


# ---- tools and formats -----------------------------------------------------------------------------------

def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    kind = tool.get("type")
    if kind == "function" and isinstance(tool.get("function"), Mapping):
        function = tool["function"]
        native = {"type": "function", "name": function.get("name"),
                  "parameters": function.get("parameters") or {"type": "object", "properties": {}},
                  "strict": function.get("strict", False)}
        if function.get("description") is not None:
            native["description"] = function["description"]
        return native
    if kind == "custom" and isinstance(tool.get("custom"), Mapping):
        return {"type": "custom", **tool["custom"]}
    return dict(tool)  # a hosted tool, as it was written


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, Mapping) and choice.get("type") == "function" and isinstance(choice.get("function"), Mapping):
        return {"type": "function", "name": choice["function"].get("name")}
    return choice


def _text(response_format: Any, verbosity: Any) -> dict[str, Any]:
    text: dict[str, Any] = {}
    if isinstance(response_format, Mapping):
        kind = response_format.get("type")
        if kind == "json_schema" and isinstance(response_format.get("json_schema"), Mapping):
            text["format"] = {"type": "json_schema", **response_format["json_schema"]}
        elif kind in ("json_object", "text"):
            text["format"] = {"type": kind}
    if verbosity is not None:
        text["verbosity"] = verbosity
    return text
