"""OpenAI chat request -> Anthropic Messages request.

Pure functions: the client's body in, a new native body out, nothing mutated.
Every OpenAI parameter is either translated, dropped by a documented rule, or
refused with a 400 that says why (docs/anthropic.md lists them); nothing is
sent that the Messages API is known to refuse.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from proxy import jsonutil
from proxy.config import UpstreamConfig
from proxy.errors import InvalidRequest
from proxy.exchange import Target

# max_tokens is required upstream; used when neither the request nor the config gives one.
# 4096 fits every Claude model's output limit, so the default can never cause a 400.
DEFAULT_MAX_TOKENS = 4096
# From this API version on, temperature/top_p/top_k are refused even at their defaults.
SAMPLING_REMOVED_IN = "2026-10-21"
MIN_THINKING_TOP_P = 0.95
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# OpenAI parameters with no Anthropic equivalent that change nothing the client reads back:
# never sent (the reasoning ones are translated by the reasoning middleware before this).
DROPPED = ("frequency_penalty", "presence_penalty", "logit_bias", "seed", "store", "prediction",
           "stream_options", "verbosity", "web_search_options", "prompt_cache_key", "reasoning_effort",
           "reasoning", "parallel_tool_calls")
_TOOL_ID_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)((?:;[\w.+-]+=[\w.+-]+)*);base64,(.*)$", re.DOTALL)
_THINKING_TYPES = ("thinking", "redacted_thinking")


def encode_request(body: Mapping[str, Any], target: Target, stream: bool) -> dict[str, Any]:
    _refuse_unsupported(body)
    version = api_version(target.upstream)
    tools = _tools(body.get("tools"))
    tool_choice = _tool_choice(body, bool(tools))
    thinking = _thinking(body, tool_choice)
    system, messages = translate_messages(_messages(body), keep_thinking=thinking is not None)
    native: dict[str, Any] = {"model": target.model, "max_tokens": _max_tokens(body, target)}
    if system is not None:
        native["system"] = system
    native["messages"] = messages
    if thinking is not None:
        native["thinking"] = thinking
    native.update(_sampling(body, thinking is not None, version))
    stops = _stop_sequences(body.get("stop"))
    if stops:
        native["stop_sequences"] = stops
    if tools:
        native["tools"] = tools
        if tool_choice is not None:
            native["tool_choice"] = tool_choice
    _add_metadata(native, body)
    output_config = _output_config(body)
    if output_config:
        native["output_config"] = output_config
    if body.get("service_tier") in ("auto", "standard_only"):
        native["service_tier"] = body["service_tier"]
    if stream:
        native["stream"] = True
    return native


def api_version(upstream: UpstreamConfig) -> str:
    """The anthropic-version the upstream is called with (a configured header wins, as it does on the wire)."""
    for name, value in upstream.headers.items():
        if name.lower() == "anthropic-version":
            return value.reveal()
    return upstream.anthropic_version or ""


# ---- refusals: parameters whose answer the client would read but Anthropic cannot give ------------

def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("Anthropic upstreams return one choice; 'n' must be 1", param="n")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise InvalidRequest("Anthropic upstreams do not return log probabilities; remove 'logprobs'",
                             param="logprobs")
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        raise InvalidRequest("Anthropic upstreams cannot answer with audio", param="modalities")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise InvalidRequest("the legacy 'functions'/'function_call' parameters are not translated; "
                             "use 'tools' and 'tool_choice'", param="functions")


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidRequest(f"messages[{index}] must be an object", param=f"messages[{index}]")
    return messages


def _max_tokens(body: Mapping[str, Any], target: Target) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest(f"'{name}' must be a positive integer", param=name)
        return value
    for configured in (target.model_config, target.alias_config):
        if configured is not None and configured.max_tokens:
            return configured.max_tokens
    return DEFAULT_MAX_TOKENS


# ---- sampling ---------------------------------------------------------------------------------

def _sampling(body: Mapping[str, Any], thinking_on: bool, version: str) -> dict[str, Any]:
    """temperature/top_p/top_k under Anthropic's rules; anything it would refuse is left out."""
    if version >= SAMPLING_REMOVED_IN:
        return {}
    out: dict[str, Any] = {}
    temperature, top_p = _number(body, "temperature"), _number(body, "top_p")
    top_k = body.get("top_k")
    if temperature is not None:
        out["temperature"] = min(1.0, max(0.0, temperature))  # OpenAI's range is 0..2, Anthropic's 0..1
    if top_p is not None and temperature is None:  # newer models refuse both together
        out["top_p"] = top_p
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 0:
        out["top_k"] = top_k
    if thinking_on:  # thinking takes temperature 1 only, no top_k, top_p from 0.95
        if out.get("temperature", 1) != 1:
            del out["temperature"]
        out.pop("top_k", None)
        if out.get("top_p", 1) < MIN_THINKING_TOP_P:
            del out["top_p"]
    return out


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidRequest(f"'{name}' must be a non-negative number", param=name)
    return value


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidRequest("'stop' must be a string or an array of strings", param="stop")
    # Anthropic refuses whitespace-only stop sequences ("each stop sequence must contain non-whitespace").
    return [item for item in items if item.strip()]


# ---- tools ------------------------------------------------------------------------------------

def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    return [_tool(tool, index) for index, tool in enumerate(tools)]


def _tool(tool: Any, index: int) -> dict[str, Any]:
    param = f"tools[{index}]"
    if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
        raise InvalidRequest(f"{param}: only function tools can be sent to an Anthropic upstream", param=param)
    function = tool.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
        raise InvalidRequest(f"{param}.function.name is required", param=f"{param}.function.name")
    schema = function.get("parameters")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    elif not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        raise InvalidRequest(f"{param}.function.parameters must be a JSON schema of type object",
                             param=f"{param}.function.parameters")
    elif "type" not in schema:
        schema = {"type": "object", **schema}
    out: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str) and function["description"]:
        out["description"] = function["description"]
    out["input_schema"] = schema
    if function.get("strict") is True:
        out["strict"] = True
    return out


def _tool_choice(body: Mapping[str, Any], has_tools: bool) -> dict[str, Any] | None:
    """auto/none/required/named -> auto/none/any/tool; `parallel_tool_calls: false` rides along."""
    if not has_tools:
        return None  # Anthropic has nothing to choose from; a tool_choice alone is meaningless
    choice = body.get("tool_choice")
    if choice is None or choice == "auto":
        native: dict[str, Any] = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        native = {"type": "any"}
    elif isinstance(choice, Mapping) and choice.get("type") == "function" \
            and isinstance(choice.get("function"), Mapping) and isinstance(choice["function"].get("name"), str):
        native = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise InvalidRequest("'tool_choice' must be auto, none, required or {\"type\": \"function\", "
                             "\"function\": {\"name\": ...}}", param="tool_choice")
    if body.get("parallel_tool_calls") is False:
        native["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # the upstream's default is auto already
    return native


# ---- thinking, output format, metadata ------------------------------------------------------------

def _thinking(body: Mapping[str, Any], tool_choice: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The native `thinking` to send, or None when thinking is off for this request.

    Two documented Anthropic refusals are avoided by leaving thinking out: a forced
    tool choice ("any"/"tool"), and a tool loop whose last assistant turn carries no
    signed thinking block to send back (Anthropic then demands one).
    """
    thinking = body.get("thinking")
    if not isinstance(thinking, Mapping) or thinking.get("type") in (None, "disabled"):
        return None
    if tool_choice is not None and tool_choice.get("type") in ("any", "tool"):
        return None
    if _pending_tool_turn_lacks_thinking(body.get("messages")):
        return None
    return dict(thinking)


def _pending_tool_turn_lacks_thinking(messages: Any) -> bool:
    """Whether the conversation ends in tool results (perhaps followed by user text, which joins
    their turn) answering an assistant turn that carries no signed thinking."""
    answered_tools = False
    for message in reversed(messages if isinstance(messages, list) else ()):
        role = message.get("role") if isinstance(message, Mapping) else None
        if role == "assistant":
            return answered_tools and not thinking_blocks_of(message)
        answered_tools = answered_tools or role == "tool"
    return False


def _output_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(body["output_config"]) if isinstance(body.get("output_config"), Mapping) else {}
    response_format = body.get("response_format")
    if not isinstance(response_format, Mapping) or "format" in config:
        return config
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidRequest("response_format.json_schema.schema must be a JSON schema object",
                                 param="response_format")
        config["format"] = {"type": "json_schema", "schema": dict(schema)}
    # json_object and text have no native switch: OpenAI's json_object already requires the
    # prompt to ask for JSON, and that instruction reaches Claude unchanged.
    return config


def _add_metadata(native: dict[str, Any], body: Mapping[str, Any]) -> None:
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, Mapping) else None
    if not isinstance(user_id, str) or not user_id:
        user_id = next((body[name] for name in ("user", "safety_identifier")
                        if isinstance(body.get(name), str) and body[name]), None)
    if user_id:
        native["metadata"] = {"user_id": user_id}


# ---- messages ---------------------------------------------------------------------------------

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
