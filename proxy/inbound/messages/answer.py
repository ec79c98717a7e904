"""OpenAI chat completion -> Anthropic Message, and the pieces the stream shares with it.

The vocabulary lives here once (stop reasons, usage, tool inputs, ids) so a
streamed answer and a whole one say the same thing for the same completion.
"""
from __future__ import annotations

import re
import uuid
from typing import Any, Mapping, Sequence

from proxy.core import jsonutil
from proxy.core.errors import UpstreamProtocolError
from proxy.core.usage import token_count
from proxy.inbound.messages.count import json_tokens, text_tokens
from proxy.inbound.messages.request import MessagesContext

STOP_REASONS: Mapping[str, str] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                                   "function_call": "tool_use", "content_filter": "refusal"}
# Where a tool call's arguments were not a JSON object, the raw text is kept under this key, so
# the tool's own input validation reports it to the model (which can retry) instead of the
# call silently running with no input.
RAW_ARGUMENTS_KEY = "_raw_arguments"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def from_chat(completion: Any, context: MessagesContext, *, upstream: str = "upstream") -> dict[str, Any]:
    """A whole `chat.completion` as an Anthropic Message (first choice; there is only one).

    Content order is Anthropic's: thinking, then text, then tool_use. Reasoning is
    returned only when the request asked for thinking, as Anthropic does: a client
    that did not ask reads `content[0]` as the text.
    """
    choice = first_choice(completion, upstream)
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = thinking_blocks(message) if context.thinking else []
    text = message_text(message)
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    tools = [tool_use(call, position) for position, call in enumerate(calls if isinstance(calls, list) else ())]
    content.extend(tool for tool in tools if tool is not None)
    matched = matched_stop_sequence(choice, text, context.stop_sequences)
    reason = stop_reason(choice.get("finish_reason"), any(tools), matched)
    usage = anthropic_usage(completion.get("usage")) or estimated_usage(context, content)
    return {"id": message_id(completion.get("id")), "type": "message", "role": "assistant", "model": context.model,
            "content": content, "stop_reason": reason,
            "stop_sequence": matched if reason == "stop_sequence" else None, "usage": usage}


def first_choice(completion: Any, upstream: str) -> dict[str, Any]:
    choices = completion.get("choices") if isinstance(completion, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamProtocolError(upstream, "answered without a chat completion choice")
    return choices[0]


def message_id(chat_id: Any) -> str:
    """`msg_` + the chat id's safe characters (the same answer keeps the same id in logs), or a fresh one."""
    if isinstance(chat_id, str) and chat_id.startswith("msg_"):
        return chat_id
    safe = _ID_UNSAFE.sub("", chat_id)[:64] if isinstance(chat_id, str) else ""
    return f"msg_{safe or uuid.uuid4().hex}"


# ---- content --------------------------------------------------------------------------------

def message_text(message: Mapping[str, Any]) -> str:
    """`content` (a string or text parts), or the `refusal` a model gave instead."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(part["text"] for part in content
                          if isinstance(part, dict) and isinstance(part.get("text"), str))
    if isinstance(content, str) and content:
        return content
    refusal = message.get("refusal")
    return refusal if isinstance(refusal, str) else ""


def thinking_blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Signed `thinking_blocks` as they are; else `reasoning_content` as one thinking block.

    Reasoning from a non-Anthropic model has no signature. It is still returned as a
    thinking block (ThinkingBlock.signature is a plain string, and "" is what an
    Anthropic stream's content_block_start carries), so clients show it and can send
    it back; this proxy turns it back into `reasoning_content`. Anthropic itself
    would refuse that block if the client replayed it to an Anthropic model.
    """
    reasoning = message.get("reasoning_content")
    if not isinstance(reasoning, str):
        reasoning = message.get("reasoning") if isinstance(message.get("reasoning"), str) else ""
    blocks = [block for block in map(_signed_block, message.get("thinking_blocks") or ()) if block is not None] \
        if isinstance(message.get("thinking_blocks"), list) else []
    thinking = [block for block in blocks if block["type"] == "thinking"]
    if len(thinking) == 1 and not thinking[0]["thinking"] and reasoning:
        thinking[0]["thinking"] = reasoning  # a provider that keeps the text apart from its signature
    if not thinking and reasoning:
        blocks.insert(0, {"type": "thinking", "thinking": reasoning, "signature": ""})
    return blocks


def _signed_block(block: Any) -> dict[str, Any] | None:
    if not isinstance(block, dict):
        return None
    if block.get("type") == "thinking":
        text, signature = block.get("thinking"), block.get("signature")
        return {"type": "thinking", "thinking": text if isinstance(text, str) else "",
                "signature": signature if isinstance(signature, str) else ""}
    if block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
        return {"type": "redacted_thinking", "data": block["data"]}
    return None


def tool_use(call: Any, position: int) -> dict[str, Any] | None:
    """A chat tool call -> a tool_use block; the chat id is kept (it need not start with toolu_)."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return None
    return {"type": "tool_use", "id": tool_id(call.get("id"), position), "name": _str(function.get("name")),
            "input": tool_input(function.get("arguments"))}


def tool_id(value: Any, position: int) -> str:
    return value if isinstance(value, str) and value else f"toolu_{uuid.uuid4().hex[:20]}{position}"


def tool_input(arguments: Any) -> dict[str, Any]:
    """Arguments JSON -> the input object; "" is {}; anything else is kept raw (RAW_ARGUMENTS_KEY)."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        parsed = jsonutil.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {RAW_ARGUMENTS_KEY: _str(arguments)}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


# ---- stop reason ------------------------------------------------------------------------------

def matched_stop_sequence(choice: Mapping[str, Any], text_tail: str, stops: Sequence[str]) -> str | None:
    """Which of the request's stop sequences ended the answer, if one can be known.

    vLLM reports it as `stop_reason`, SGLang as `matched_stop`; a provider that
    leaves it in the text shows it at the end. OpenAI itself strips it and says
    nothing, so there a stop sequence cannot be told from a natural end (end_turn).
    """
    if not stops:
        return None
    for field in ("stop_reason", "matched_stop"):
        value = choice.get(field)
        if isinstance(value, str) and value in stops:
            return value
    ending = [stop for stop in stops if text_tail.endswith(stop)]
    return max(ending, key=len) if ending else None


def stop_reason(finish_reason: Any, has_tool_calls: bool, matched: str | None) -> str:
    """finish_reason -> stop_reason. A "stop" that carries tool calls (some providers say so) is
    tool_use; a "tool_calls" that carries none is end_turn, as there is nothing to answer."""
    reason = STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    if reason == "tool_use" and not has_tool_calls:
        return "end_turn"
    if reason == "end_turn":
        if matched is not None:
            return "stop_sequence"
        if has_tool_calls:
            return "tool_use"
    return reason


# ---- usage --------------------------------------------------------------------------------------

def anthropic_usage(usage: Any) -> dict[str, Any] | None:
    """Chat usage -> Anthropic's, which counts cached input apart from `input_tokens`.

    Cache reads: prompt_tokens_details.cached_tokens (DeepSeek: prompt_cache_hit_tokens).
    Cache writes: prompt_tokens_details.cache_creation_tokens (this proxy's Anthropic wire)
    or cache_write_tokens (OpenRouter), or a top-level cache_creation_input_tokens.
    None when the upstream sent no usage.
    """
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    cached = token_count(details, "cached_tokens") or token_count(usage, "prompt_cache_hit_tokens")
    created = (token_count(details, "cache_creation_tokens") or token_count(details, "cache_write_tokens")
               or token_count(usage, "cache_creation_input_tokens"))
    output = token_count(usage, "completion_tokens")
    out: dict[str, Any] = {"input_tokens": max(0, token_count(usage, "prompt_tokens") - cached - created),
                           "cache_creation_input_tokens": created, "cache_read_input_tokens": cached,
                           "output_tokens": output}
    output_details = usage.get("completion_tokens_details")
    reasoning = token_count(output_details, "reasoning_tokens") if isinstance(output_details, dict) else 0
    if reasoning:
        out["output_tokens_details"] = {"thinking_tokens": min(reasoning, output)}
    return out


def estimated_usage(context: MessagesContext, content: list[dict[str, Any]]) -> dict[str, Any]:
    """For an upstream that reported no usage: the request's estimate, and the output's."""
    output = 0
    for block in content:
        output += text_tokens(block.get("text") or block.get("thinking") or "") + json_tokens(block.get("input"))
    return {"input_tokens": context.estimated_input_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": max(1, output)}


