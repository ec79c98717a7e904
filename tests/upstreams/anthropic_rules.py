"""What the Anthropic Messages API refuses, as the test upstream checks it.

Each rule is one the documentation (or the API's own error messages, quoted in
public bug reports) states; the messages mimic the API's wording so a test can
see which rule fired. `check_request` returns the first problem, or None.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any, Callable

VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")
SAMPLING_REMOVED_IN = "2026-10-21"
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
EFFORTS = {"low", "medium", "high", "xhigh", "max"}
_TOP_LEVEL = {"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "tools",
              "tool_choice", "thinking", "output_config", "service_tier", "cache_control", "container",
              "inference_geo", "speed", "diagnostics", "context_management", "mcp_servers"}
_SAMPLING = {"temperature", "top_p", "top_k"}
# The body of count_tokens: stable fields, then the beta ones the SDK's beta client may send.
_COUNT_TOP_LEVEL = {"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config", "cache_control",
                    "context_management", "mcp_servers", "speed", "output_format"}
_BLOCK_KEYS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "document": {"type", "source", "title", "context", "citations", "cache_control"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
}
_ASSISTANT_ONLY = {"tool_use", "thinking", "redacted_thinking"}
_USER_ONLY = {"tool_result", "image", "document"}
_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_SERVER_TOOL = re.compile(r"^[a-z_]+_\d{8}$")  # web_search_20250305, code_execution_20250825, ...
_SECRET = b"test-upstream-thinking-key"


class Invalid(Exception):
    """A 400 invalid_request_error with the API's kind of message."""


# ---- signatures: thinking blocks must come back exactly as they were sent ---------------------------

def sign(thinking: str) -> str:
    return base64.b64encode(hmac.new(_SECRET, thinking.encode(), hashlib.sha256).digest()).decode()


def redacted_data(seed: str) -> str:
    payload = seed.encode()
    return base64.b64encode(payload + hmac.new(_SECRET, payload, hashlib.sha256).digest()).decode()


def _redacted_ok(data: str) -> bool:
    try:
        raw = base64.b64decode(data.encode(), validate=True)
    except ValueError:
        return False
    return len(raw) > 32 and hmac.compare_digest(raw[-32:], hmac.new(_SECRET, raw[:-32], hashlib.sha256).digest())


# ---- the request ------------------------------------------------------------------------------

def check_request(body: Any, version: str, legacy_sampling_pair: bool = False) -> str | None:
    try:
        _check(body, version, legacy_sampling_pair)
    except Invalid as problem:
        return str(problem)
    return None


def check_count_request(body: Any) -> str | None:
    """`POST /v1/messages/count_tokens` ("Count tokens in a Message"): the input fields of a
    Messages request, checked as there; what only shapes the output (max_tokens, sampling,
    stop_sequences, metadata, stream) is an extra input."""
    try:
        _require(isinstance(body, dict), "body: Input should be an object")
        for key in body:
            _require(key in _COUNT_TOP_LEVEL, f"{key}: Extra inputs are not permitted")
        _require(isinstance(body.get("model"), str) and body["model"], "model: Field required")
        _check_system(body.get("system"))
        _check_tool_choice(body.get("tool_choice"), _check_tools(body.get("tools")))
        _check_messages(body.get("messages"), _check_thinking(body))
        _check_optional(body)
    except Invalid as problem:
        return str(problem)
    return None


def _check(body: Any, version: str, legacy_sampling_pair: bool) -> None:
    if not isinstance(body, dict):
        raise Invalid("body: Input should be an object")
    allowed = _TOP_LEVEL | (_SAMPLING if version < SAMPLING_REMOVED_IN else set())
    for key in body:
        if key not in allowed:
            if key in _SAMPLING:
                raise Invalid(f"`{key}` is not supported in anthropic-version {version}")
            raise Invalid(f"{key}: Extra inputs are not permitted")
    _require(isinstance(body.get("model"), str) and body["model"], "model: Field required")
    max_tokens = body.get("max_tokens")
    _require(_is_int(max_tokens), "max_tokens: Field required")
    _require(max_tokens >= 0, "max_tokens: Input should be greater than or equal to 0")
    _check_system(body.get("system"))
    _check_sampling(body, legacy_sampling_pair)
    _check_stop(body.get("stop_sequences"))
    tool_names = _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"), tool_names)
    thinking_on = _check_thinking(body)
    _check_messages(body.get("messages"), thinking_on)
    _check_optional(body)


def _require(condition: Any, message: str) -> None:
    if not condition:
        raise Invalid(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _keys(value: dict, allowed: set[str], where: str) -> None:
    for key in value:
        if key not in allowed:
            raise Invalid(f"{where}.{key}: Extra inputs are not permitted")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    _require(isinstance(system, list), "system: Input should be a valid string or list")
    for index, block in enumerate(system):
        _require(isinstance(block, dict) and block.get("type") == "text", f"system.{index}.type: Expected `text`")
        _keys(block, _BLOCK_KEYS["text"], f"system.{index}")
        _require(isinstance(block.get("text"), str) and block["text"], "system: text content blocks must be non-empty")


def _check_sampling(body: dict, legacy_pair: bool) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            _require(_is_number(value) and 0 <= value <= 1, f"{name}: Input should be between 0 and 1")
    if body.get("top_k") is not None:
        _require(_is_int(body["top_k"]) and body["top_k"] >= 0, "top_k: Input should be a non-negative integer")
    if not legacy_pair and body.get("temperature") is not None and body.get("top_p") is not None:
        raise Invalid("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")


def _check_stop(stops: Any) -> None:
    if stops is None:
        return
    _require(isinstance(stops, list) and all(isinstance(s, str) for s in stops),
             "stop_sequences: Input should be a valid list of strings")
    _require(all(s.strip() for s in stops), "stop_sequences: each stop sequence must contain non-whitespace")


def _check_tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    _require(isinstance(tools, list), "tools: Input should be a valid list")
    names: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"tools.{index}"
        _require(isinstance(tool, dict), f"{where}: Input should be an object")
        if tool.get("type") not in (None, "custom"):  # a server tool: its own versioned type and settings
            _require(isinstance(tool["type"], str) and _SERVER_TOOL.match(tool["type"]),
                     f"{where}.type: Input tag {tool['type']!r} does not match any of the expected tags")
            _require(isinstance(tool.get("name"), str), f"{where}.name: Field required")
            names.add(tool["name"])
            continue
        _keys(tool, {"name", "description", "input_schema", "cache_control", "strict", "type", "input_examples",
                     "defer_loading", "eager_input_streaming", "allowed_callers"}, f"{where}.custom")
        _require(isinstance(tool.get("name"), str) and _TOOL_NAME.match(tool["name"]),
                 f"{where}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        schema = tool.get("input_schema")
        _require(isinstance(schema, dict) and schema.get("type") == "object",
                 f"{where}.custom.input_schema.type: Input should be 'object'")
        _require(tool["name"] not in names, "tools: Tool names must be unique.")
        names.add(tool["name"])
    return names


def _check_tool_choice(choice: Any, tool_names: set[str]) -> None:
    if choice is None:
        return
    _require(isinstance(choice, dict) and choice.get("type") in ("auto", "any", "tool", "none"),
             "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    allowed = {"type"} | ({"disable_parallel_tool_use"} if choice["type"] != "none" else set()) \
        | ({"name"} if choice["type"] == "tool" else set())
    _keys(choice, allowed, f"tool_choice.{choice['type']}")
    if choice["type"] == "tool":
        _require(choice.get("name") in tool_names, f"tool_choice.tool.name: no tool named {choice.get('name')!r}")


def _check_thinking(body: dict) -> bool:
    thinking = body.get("thinking")
    if thinking is None:
        return False
    _require(isinstance(thinking, dict) and thinking.get("type") in ("enabled", "disabled", "adaptive"),
             "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
    kind = thinking["type"]
    if kind == "disabled":
        _keys(thinking, {"type"}, "thinking.disabled")
        return False
    _keys(thinking, {"type", "display"} | ({"budget_tokens"} if kind == "enabled" else set()), f"thinking.{kind}")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        _require(_is_int(budget), "thinking.enabled.budget_tokens: Field required")
        _require(budget >= 1024, "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        _require("max_tokens" not in body or budget < body["max_tokens"], "`max_tokens` must be greater than `thinking.budget_tokens`. "
                 "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking")
    if body.get("temperature") is not None and body["temperature"] != 1:
        raise Invalid("`temperature` may only be set to 1 when thinking is enabled or in adaptive mode.")
    _require(body.get("top_k") is None, "`top_k` must be unset when thinking is enabled.")
    if body.get("top_p") is not None:
        _require(body["top_p"] >= 0.95, "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled.")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise Invalid("Thinking may not be enabled when tool_choice forces tool use.")
    return True


def _check_optional(body: dict) -> None:
    metadata = body.get("metadata")
    if metadata is not None:
        _require(isinstance(metadata, dict), "metadata: Input should be an object")
        _keys(metadata, {"user_id"}, "metadata")
        _require(metadata.get("user_id") is None or isinstance(metadata["user_id"], str),
                 "metadata.user_id: Input should be a valid string")
    config = body.get("output_config")
    if config is not None:
        _require(isinstance(config, dict), "output_config: Input should be an object")
        _keys(config, {"effort", "format", "task_budget"}, "output_config")
        _require(config.get("effort") is None or config["effort"] in EFFORTS,
                 "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
        form = config.get("format")
        if form is not None:
            _require(isinstance(form, dict) and form.get("type") == "json_schema" and isinstance(form.get("schema"), dict),
                     "output_config.format: expected {\"type\": \"json_schema\", \"schema\": {...}}")
            _keys(form, {"type", "schema"}, "output_config.format")
    if body.get("service_tier") is not None:
        _require(body["service_tier"] in ("auto", "standard_only"),
                 "service_tier: Input should be 'auto' or 'standard_only'")
    if body.get("stream") is not None:
        _require(isinstance(body["stream"], bool), "stream: Input should be a valid boolean")


# ---- messages ---------------------------------------------------------------------------------

def _check_messages(messages: Any, thinking_on: bool) -> None:
    _require(isinstance(messages, list), "messages: Field required")
    _require(messages, "messages: at least one message is required")
    _require(not isinstance(messages[0], dict) or messages[0].get("role") != "assistant",
             'messages: first message must use the "user" role')
    previous_tool_ids: set[str] = set()
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        _require(isinstance(message, dict), f"{where}: Input should be an object")
        _keys(message, {"role", "content"}, where)
        role = message.get("role")
        _require(role in ("user", "assistant"), f"{where}.role: Input should be 'user' or 'assistant'")
        blocks = _blocks(message.get("content"), where, role, final=index == len(messages) - 1)
        tool_results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        _check_pairing(where, role, blocks, tool_results, previous_tool_ids)
        previous_tool_ids = {b["id"] for b in blocks if b["type"] == "tool_use"} if role == "assistant" else set()
    if previous_tool_ids:
        return  # a final assistant turn with tool_use is a prefill; the model continues it
    _check_final_thinking(messages, thinking_on)


def _blocks(content: Any, where: str, role: str, final: bool) -> list[dict]:
    if isinstance(content, str):
        _require(content or (final and role == "assistant"),
                 "messages: all messages must have non-empty content except for the optional final assistant message")
        if final and role == "assistant":
            _require(content == content.rstrip(), "messages: final assistant content cannot end with trailing whitespace")
        return [{"type": "text", "text": content}]
    _require(isinstance(content, list), f"{where}.content: Input should be a valid string or list")
    _require(content or (final and role == "assistant"),
             "messages: all messages must have non-empty content except for the optional final assistant message")
    for position, block in enumerate(content):
        _check_block(block, f"{where}.content.{position}", role)
    if final and role == "assistant" and content and content[-1].get("type") == "text":
        _require(content[-1]["text"] == content[-1]["text"].rstrip(),
                 "messages: final assistant content cannot end with trailing whitespace")
    return content


def _check_block(block: Any, where: str, role: str) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    _require(kind in _BLOCK_KEYS, f"{where}.type: Input tag {kind!r} found using 'type' does not match any of the expected tags")
    _keys(block, _BLOCK_KEYS[kind], f"{where}.{kind}")
    if kind in _ASSISTANT_ONLY:
        _require(role == "assistant", f"{where}: `{kind}` blocks are only allowed in assistant messages")
    if kind in _USER_ONLY:
        _require(role == "user", f"{where}: `{kind}` blocks are only allowed in user messages")
    _BLOCK_CHECKS[kind](block, where)


def _text_block(block: dict, where: str) -> None:
    _require(isinstance(block.get("text"), str), f"{where}.text: Field required")
    _require(block["text"], "messages: text content blocks must be non-empty")


def _image_block(block: dict, where: str) -> None:
    source = block.get("source")
    _require(isinstance(source, dict) and source.get("type") in ("base64", "url"), f"{where}.source: Field required")
    if source["type"] == "url":
        _keys(source, {"type", "url"}, f"{where}.source.url")
        _require(isinstance(source.get("url"), str) and source["url"].startswith(("http://", "https://")),
                 f"{where}.source.url: Input should be a valid URL")
        return
    _keys(source, {"type", "media_type", "data"}, f"{where}.source.base64")
    _require(source.get("media_type") in IMAGE_TYPES,
             f"{where}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
    _require(isinstance(source.get("data"), str) and _is_base64(source["data"]),
             f"{where}.source.base64: The image data is not valid base64")


def _document_block(block: dict, where: str) -> None:
    source = block.get("source")
    _require(isinstance(source, dict) and source.get("type") in ("base64", "text", "url"), f"{where}.source: Field required")
    if source["type"] == "base64":
        _require(source.get("media_type") == "application/pdf" and _is_base64(source.get("data")),
                 f"{where}.source.base64: expected a base64 PDF")


def _tool_use_block(block: dict, where: str) -> None:
    _require(isinstance(block.get("id"), str) and _ID.match(block["id"]),
             f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
    _require(isinstance(block.get("name"), str) and block["name"], f"{where}.name: Field required")
    _require(isinstance(block.get("input"), dict), f"{where}.input: Input should be a valid dictionary")


def _tool_result_block(block: dict, where: str) -> None:
    _require(isinstance(block.get("tool_use_id"), str) and _ID.match(block["tool_use_id"]),
             f"{where}.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'")
    content = block.get("content")
    if isinstance(content, list):
        for position, inner in enumerate(content):
            inner_kind = inner.get("type") if isinstance(inner, dict) else None
            _require(inner_kind in ("text", "image", "document"), f"{where}.content.{position}.type: unexpected block")
            _BLOCK_CHECKS[inner_kind](inner, f"{where}.content.{position}")
    else:
        _require(content is None or isinstance(content, str), f"{where}.content: Input should be a string or list")


def _thinking_block(block: dict, where: str) -> None:
    _require(isinstance(block.get("thinking"), str), f"{where}.thinking: Field required")
    _require(isinstance(block.get("signature"), str) and hmac.compare_digest(block["signature"], sign(block["thinking"])),
             f"{where}: Invalid `signature` in `thinking` block")


def _redacted_block(block: dict, where: str) -> None:
    _require(isinstance(block.get("data"), str) and _redacted_ok(block["data"]),
             f"{where}: Invalid `data` in `redacted_thinking` block")


_BLOCK_CHECKS: dict[str, Callable[[dict, str], None]] = {
    "text": _text_block, "image": _image_block, "document": _document_block, "tool_use": _tool_use_block,
    "tool_result": _tool_result_block, "thinking": _thinking_block, "redacted_thinking": _redacted_block,
}


def _is_base64(data: Any) -> bool:
    if not isinstance(data, str) or not data:
        return False
    try:
        base64.b64decode(data.encode(), validate=True)
    except ValueError:
        return False
    return True


def _check_pairing(where: str, role: str, blocks: list[dict], tool_results: list[str],
                   previous_tool_ids: set[str]) -> None:
    """Every tool_use is answered in the very next user turn, tool_result blocks first."""
    if previous_tool_ids:
        missing = previous_tool_ids - set(tool_results)
        _require(role == "user" and not missing,
                 f"{where}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                 f"{', '.join(sorted(missing or previous_tool_ids))}. Each `tool_use` block must have a "
                 f"corresponding `tool_result` block in the next message.")
    unexpected = [tool_id for tool_id in tool_results if tool_id not in previous_tool_ids]
    _require(not unexpected, f"{where}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                             f"{', '.join(unexpected)}. Each `tool_result` block must have a corresponding "
                             f"`tool_use` block in the previous message.")
    kinds = [block["type"] for block in blocks]
    if "tool_result" in kinds:
        first_other = next((i for i, kind in enumerate(kinds) if kind != "tool_result"), len(kinds))
        _require("tool_result" not in kinds[first_other:],
                 f"{where}: `tool_result` blocks must come first in the user message content")


def _check_final_thinking(messages: list[dict], thinking_on: bool) -> None:
    """Thinking on: in a tool loop, the assistant turn being continued must open with thinking.
    Thinking off: a final assistant turn may not carry thinking."""
    last = messages[-1]
    if last["role"] == "assistant":
        content = last["content"] if isinstance(last["content"], list) else []
        if not thinking_on and any(block.get("type") in ("thinking", "redacted_thinking") for block in content):
            raise Invalid(f"messages.{len(messages) - 1}.content.0: When thinking is disabled, an `assistant` "
                          f"message in the final position cannot contain `thinking`. To use thinking blocks, "
                          f"enable `thinking` in your request.")
        return
    in_tool_loop = isinstance(last["content"], list) and any(b.get("type") == "tool_result" for b in last["content"])
    if not (thinking_on and in_tool_loop) or len(messages) < 2:
        return
    assistant = messages[-2]
    first = assistant["content"][0] if isinstance(assistant["content"], list) and assistant["content"] else {}
    if first.get("type") not in ("thinking", "redacted_thinking"):
        raise Invalid(f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or `redacted_thinking`, "
                      f"but found `{first.get('type', 'text')}`. When `thinking` is enabled, a final `assistant` "
                      f"message must start with a thinking block (preceeding the lastmost set of `tool_use` and "
                      f"`tool_result` blocks). We recommend you include thinking blocks from previous turns. To "
                      f"avoid this requirement, disable `thinking`.")
