"""A Responses API answer -> Chat Completions shapes: a whole Response -> `chat.completion`, usage,
finish reasons, and the failures a Response or an `error` event reports."""
from __future__ import annotations

from typing import Any, Mapping

from proxy.core import jsonutil
from proxy.core.errors import UpstreamError, UpstreamHTTPError
from proxy.core.usage import token_count

# response.incomplete_details.reason -> chat finish_reason
FINISH_FOR_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}
# Failure codes that are the client's business: the status it sees.
_STATUS_FOR_CODE = {"rate_limit_exceeded": 429, "invalid_prompt": 400, "context_length_exceeded": 400,
                    "invalid_request_error": 400}


def completion_from_response(response: Mapping[str, Any], upstream: str) -> dict[str, Any]:
    """A whole Response (completed or incomplete) as a `chat.completion`; a failed one raises."""
    if response.get("status") == "failed" or response.get("error"):
        raise failure(upstream, response.get("error"))
    message: dict[str, Any] = {"role": "assistant", "content": None}
    texts, refusals, reasoning, calls = [], [], [], []
    for item in response.get("output") or ():
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if isinstance(part, Mapping) and part.get("type") == "output_text":
                    texts.append(str(part.get("text") or ""))
                elif isinstance(part, Mapping) and part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal") or ""))
        elif kind == "reasoning":
            reasoning.append(reasoning_text(item))
        elif kind in ("function_call", "custom_tool_call"):
            calls.append(tool_call(item))
    if texts:
        message["content"] = "".join(texts)
    if refusals:
        message["refusal"] = "".join(refusals)
    if any(reasoning):
        message["reasoning_content"] = "\n\n".join(text for text in reasoning if text)
    if calls:
        message["tool_calls"] = calls
    completion = {"id": str(response.get("id") or "resp"), "object": "chat.completion",
                  "created": int(response.get("created_at") or 0), "model": str(response.get("model") or ""),
                  "choices": [{"index": 0, "message": message, "logprobs": None,
                               "finish_reason": finish_reason(response, bool(calls))}]}
    usage = chat_usage(response.get("usage"))
    if usage is not None:
        completion["usage"] = usage
    return completion


def reasoning_text(item: Mapping[str, Any]) -> str:
    """A reasoning item's readable text: its summary, else its raw reasoning text (open models)."""
    for field, part_type in (("summary", "summary_text"), ("content", "reasoning_text")):
        texts = [part.get("text") for part in item.get(field) or ()
                 if isinstance(part, Mapping) and part.get("type") == part_type and isinstance(part.get("text"), str)]
        if texts:
            return "\n\n".join(texts)
    return ""


def tool_call(item: Mapping[str, Any]) -> dict[str, Any]:
    """A function call (or custom tool call, its input as `{"input": ...}`) as a chat tool call."""
    if item.get("type") == "custom_tool_call":
        arguments = jsonutil.dumps_str({"input": item.get("input") or ""})
    else:
        arguments = item.get("arguments") if isinstance(item.get("arguments"), str) else "{}"
    return {"id": str(item.get("call_id") or item.get("id") or ""), "type": "function",
            "function": {"name": str(item.get("name") or ""), "arguments": arguments}}


def finish_reason(response: Mapping[str, Any], called_tools: bool) -> str:
    details = response.get("incomplete_details")
    if response.get("status") == "incomplete" and isinstance(details, Mapping):
        return FINISH_FOR_INCOMPLETE.get(details.get("reason"), "length")
    return "tool_calls" if called_tools else "stop"


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """Responses usage -> chat usage (both count cached tokens inside the input tokens)."""
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = token_count(usage, "input_tokens"), token_count(usage, "output_tokens")
    input_details = usage.get("input_tokens_details") if isinstance(usage.get("input_tokens_details"), Mapping) else {}
    output_details = (usage.get("output_tokens_details")
                      if isinstance(usage.get("output_tokens_details"), Mapping) else {})
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": token_count(usage, "total_tokens") or prompt + completion,
            "prompt_tokens_details": {"cached_tokens": token_count(input_details, "cached_tokens")},
            "completion_tokens_details": {"reasoning_tokens": token_count(output_details, "reasoning_tokens")}}


def failure(upstream: str, error: Any) -> UpstreamError:
    """A Response's `error` ({code, message}) or an `error` event as the matching error."""
    error = error if isinstance(error, Mapping) else {}
    message = str(error.get("message") or "the response failed")
    status = _STATUS_FOR_CODE.get(str(error.get("code")))
    if status is not None:
        return UpstreamHTTPError(upstream, status, message, upstream_body={
            "message": message, "type": "invalid_request_error" if status == 400 else "rate_limit_error",
            "code": error.get("code"), "param": error.get("param")})
    return UpstreamError(upstream, f"the response failed: {message}")


