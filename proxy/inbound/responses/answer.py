"""Chat answers (the pivot) -> Responses API `Response` objects and output items.

Both the whole-answer path (`from_chat`) and the stream (stream.py) build every item and the
Response object with the functions here, so the two deliver identical shapes. Item ids are
derived from the response id and the item's output index (`msg_<response>_1`): unique as
long as response ids are, and the same whichever path made the item.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from proxy.core import jsonutil
from proxy.core.errors import ProxyError
from proxy.core.usage import token_count
from proxy.inbound.responses.request import ResponsesContext
from proxy.inbound.responses.thinking_token import encode_thinking_blocks
from proxy.inbound.responses.tools import CUSTOM_INPUT
from proxy.streams.sse import SSEEvent

INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}
_ITEM_PREFIXES = {"reasoning": "rs", "message": "msg", "function_call": "fc", "custom_tool_call": "ctc"}


def item_id(kind: str, response_id: str, output_index: int) -> str:
    base = response_id[5:] if response_id.startswith("resp_") else response_id
    return f"{_ITEM_PREFIXES[kind]}_{base}_{output_index}"


# ---- items ------------------------------------------------------------------------------------------

def reasoning_item(item_id_: str, text: str, blocks: list[dict[str, Any]], context: ResponsesContext,
                   encrypted: bool | None = None) -> dict:
    """Summary only when the request asked for one (as OpenAI); encrypted_content only when
    `include` asked for it (or `encrypted` says so: the store keeps it either way). Reasoning text
    without signed blocks is carried as an unsigned block, so a chat upstream that wants its
    reasoning back (DeepSeek with tools) can get it."""
    summary = [{"type": "summary_text", "text": text}] if text and context.wants_summary else []
    item: dict[str, Any] = {"id": item_id_, "type": "reasoning", "summary": summary}
    carried = blocks or ([{"type": "thinking", "thinking": text}] if text else [])
    if carried and (context.wants_encrypted_reasoning if encrypted is None else encrypted):
        item["encrypted_content"] = encode_thinking_blocks(carried)
    return item


def content_part(kind: str, text: str) -> dict[str, Any]:
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id_: str, parts: Iterable[tuple[str, str]], status: str) -> dict[str, Any]:
    return {"id": item_id_, "type": "message", "status": status, "role": "assistant",
            "content": [content_part(kind, text) for kind, text in parts]}


def tool_item(item_id_: str, call_id: str, chat_name: str, arguments: str, context: ResponsesContext,
              status: str) -> dict:
    """The output item for a chat tool call named `chat_name`: a function or custom tool call,
    with its namespace split off again when it was declared in one."""
    namespace, name = context.namespaced_tools.get(chat_name, (None, chat_name))
    if chat_name in context.custom_tool_names:  # no status field on custom tool calls
        item = {"id": item_id_, "type": "custom_tool_call", "call_id": call_id, "name": name,
                "input": custom_input(arguments)}
    else:
        item = {"id": item_id_, "type": "function_call", "call_id": call_id, "name": name,
                "arguments": arguments, "status": status}
    if namespace is not None:
        item["namespace"] = namespace
    return item


def custom_input(arguments: str) -> str:
    """The `input` string out of the function arguments a custom tool call came back as; the raw
    text when the model did not write that object (its words are still the best input there is)."""
    try:
        parsed = jsonutil.loads(arguments) if arguments else ""
    except ValueError:
        return arguments
    if isinstance(parsed, dict) and isinstance(parsed.get(CUSTOM_INPUT), str):
        return parsed[CUSTOM_INPUT]
    return parsed if isinstance(parsed, str) else arguments


def thinking_blocks(value: Any) -> list[dict[str, Any]]:
    return [block for block in value if isinstance(block, dict)] if isinstance(value, list) else []


def items_from_chat(message: dict[str, Any], context: ResponsesContext, response_id: str,
                    last_status: str = "completed") -> list[dict[str, Any]]:
    """A chat message -> output items in OpenAI's order: reasoning, message, tool calls.
    `last_status` is the status of the final item ("incomplete" when the answer was cut off)."""
    builders = []
    reasoning, blocks = _text(message.get("reasoning_content")), thinking_blocks(message.get("thinking_blocks"))
    if reasoning or blocks:
        builders.append(("reasoning", lambda ident, _: reasoning_item(ident, reasoning, blocks, context)))
    parts = message_parts(message)
    if parts:
        builders.append(("message", lambda ident, status: message_item(ident, parts, status)))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        builders.append(_tool_builder(call, context, response_id))
    last = len(builders) - 1
    return [build(item_id(kind, response_id, index), last_status if index == last else "completed")
            for index, (kind, build) in enumerate(builders)]


def _tool_builder(call: Any, context: ResponsesContext, response_id: str) -> tuple[str, Any]:
    call_id, name, arguments = call_fields(call)
    custom = name in context.custom_tool_names
    return ("custom_tool_call" if custom else "function_call",
            lambda ident, status: tool_item(ident, call_id or fallback_call_id(ident), name, arguments, context,
                                            status))


def call_fields(call: Any) -> tuple[str, str, str]:
    """(id, name, arguments as text) of a chat tool call, whatever a provider left out."""
    call = call if isinstance(call, dict) else {}
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    arguments = function.get("arguments")
    if not isinstance(arguments, str):  # a provider that sent the object itself
        arguments = jsonutil.dumps_str(arguments) if arguments is not None else ""
    return _text(call.get("id")), _text(function.get("name")), arguments


def fallback_call_id(item_id_: str) -> str:
    """A call id for a tool call that came without one: the client needs one to answer it."""
    return f"call_{item_id_}"


def message_parts(message: dict[str, Any]) -> list[tuple[str, str]]:
    """[(kind, text)]: the text content (joined, when a provider answered in parts), then a refusal."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content
                          if isinstance(part, dict) and isinstance(part.get("text"), str))
    parts = [("output_text", content)] if isinstance(content, str) and content else []
    if _text(message.get("refusal")):
        parts.append(("refusal", message["refusal"]))
    return parts


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# ---- usage and the Response object ---------------------------------------------------------------------

def usage_from_chat(usage: Any) -> dict[str, Any] | None:
    """prompt_tokens (cached included, as in Responses) -> input_tokens, and so on."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = token_count(usage, "prompt_tokens"), token_count(usage, "completion_tokens")
    prompt_details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    output_details = (usage.get("completion_tokens_details")
                      if isinstance(usage.get("completion_tokens_details"), dict) else {})
    total = token_count(usage, "total_tokens") or prompt + completion
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": token_count(prompt_details, "cached_tokens"),
                                     "cache_write_tokens": token_count(prompt_details, "cache_creation_tokens")},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": token_count(output_details, "reasoning_tokens")},
            "total_tokens": total}




def response_object(context: ResponsesContext, response_id: str, created_at: int, *, status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None = None,
                    finish_reason: str | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Response, echoing the request the way OpenAI does (its defaults where none was sent)."""
    reason = INCOMPLETE_REASONS.get(finish_reason) if isinstance(finish_reason, str) else None
    if status == "completed" and reason:
        status = "incomplete"
    reasoning = dict(context.reasoning) if context.reasoning else {"effort": None, "summary": None}
    text = dict(context.text) if context.text else {}
    text.setdefault("format", {"type": "text"})
    response = {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "background": False, "error": error, "incomplete_details": {"reason": reason} if reason else None,
        "instructions": context.instructions, "max_output_tokens": context.max_output_tokens,
        "max_tool_calls": context.max_tool_calls, "model": context.model, "output": output,
        "parallel_tool_calls": context.parallel_tool_calls, "previous_response_id": context.previous_response_id,
        "prompt_cache_key": context.prompt_cache_key, "reasoning": reasoning,
        "safety_identifier": context.safety_identifier, "service_tier": context.service_tier,
        "store": context.store, "temperature": context.temperature, "text": text,
        "tool_choice": context.tool_choice, "tools": list(context.tools), "top_p": context.top_p,
        "truncation": context.truncation, "usage": usage, "user": context.user,
        "metadata": dict(context.metadata or {}),
    }
    if status == "completed":
        response["completed_at"] = int(time.time())
    return response


def from_chat(completion: dict[str, Any], context: ResponsesContext, response_id: str,
              created_at: int) -> dict[str, Any]:
    """A whole `chat.completion` -> a whole Response (status completed, or incomplete)."""
    choices = completion.get("choices") if isinstance(completion, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    finish = choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None
    last_status = "incomplete" if finish in INCOMPLETE_REASONS else "completed"
    output = items_from_chat(message, context, response_id, last_status)
    return response_object(context, response_id, created_at, status="completed", output=output,
                           usage=usage_from_chat(completion.get("usage")), finish_reason=finish)


# ---- the stream's shared bookkeeping, and its failure ---------------------------------------------------

class ResponseState:
    """Per stream: the sequence counter, the items finished so far, the last usage seen.
    Kept apart from the translator so a failure event can be built from whatever exists."""

    def __init__(self, context: ResponsesContext, response_id: str, created_at: int):
        self.context = context
        self.response_id = response_id
        self.created_at = created_at
        self.sequence_number = 0
        self.output: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        # reasoning item id -> its encrypted_content, where the client did not ask for it (for the store)
        self.carried: dict[str, str] = {}

    def event(self, kind: str, **fields: Any) -> SSEEvent:
        payload = {"type": kind, "sequence_number": self.sequence_number, **fields}
        self.sequence_number += 1
        return SSEEvent.from_json(payload, event=kind)

    def response(self, status: str, finish_reason: str | None = None,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
        output = [self.output[index] for index in sorted(self.output)]
        usage = usage_from_chat(self.usage) if status != "in_progress" else None
        return response_object(self.context, self.response_id, self.created_at, status=status, output=output,
                               usage=usage, finish_reason=finish_reason, error=error)


def response_error(error: ProxyError) -> dict[str, str]:
    """The Response's `error`: {code, message}; code from the documented set (the SDK types it)."""
    message = error.envelope()["error"]["message"]  # redacted like every client-facing message
    return {"code": "rate_limit_exceeded" if error.status == 429 else "server_error", "message": message}


def failed_event(state: ResponseState, error: ProxyError) -> SSEEvent:
    """What ends a stream that already began when the upstream fails: `response.failed`, carrying
    the items finished so far and the error."""
    return state.event("response.failed", response=state.response("failed", error=response_error(error)))
