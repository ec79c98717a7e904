"""Responses API <-> chat pivot translation: requests, whole answers, streams.

Every Response object and stream event produced here is validated with the official `openai`
SDK's pydantic types, and checked to carry no field those types do not know (except `store`,
which OpenAI's own answers carry and the SDK's model lacks).
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from proxy.core.errors import InvalidRequest, ProxyError, RateLimited, UpstreamError, UpstreamProtocolError
from proxy.inbound.responses.answer import failed_event, from_chat, usage_from_chat
from proxy.inbound.responses.request import (BUILTIN_TOOL_TYPES, ResponsesContext, decode_thinking_blocks,
                                             encode_thinking_blocks, to_chat)
from proxy.inbound.responses.stream import ChatToResponsesStream, ResponsesTranslator, completion_to_events
from proxy.inbound.responses.stream import usage_from_chat as stream_usage_from_chat
from proxy.streams.sse import SSEEvent, done_event

EVENT = TypeAdapter(ResponseStreamEvent)
ALLOWED_EXTRAS = {"$": {"store"}, "$.response": {"store"}}
SIGNED = {"type": "thinking", "thinking": "Let me think.", "signature": "sig-abc"}
REDACTED = {"type": "redacted_thinking", "data": "opaque-data"}


# ---- helpers ------------------------------------------------------------------------------------------

def _extras(model, path="$"):
    found = []
    if isinstance(model, BaseModel):
        extra = set(model.model_extra or {}) - ALLOWED_EXTRAS.get(path, set())
        if extra:
            found.append((path, sorted(extra)))
        for name in type(model).model_fields:
            found += _extras(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, (list, tuple)):
        for index, item in enumerate(model):
            found += _extras(item, f"{path}[{index}]")
    return found


def valid_response(obj: dict) -> Response:
    model = Response.model_validate(obj)
    assert _extras(model) == []
    return model


def valid_event(event: SSEEvent):
    payload = event.json()
    assert event.event == payload["type"]
    model = EVENT.validate_python(payload)
    assert type(model).__name__ != "dict" and model.type == payload["type"]
    assert _extras(model) == []
    return model


def bad(body, param, fragment=None):
    with pytest.raises(InvalidRequest) as caught:
        to_chat(body)
    assert caught.value.param == param, caught.value.message
    assert caught.value.status == 400
    if fragment:
        assert fragment in caught.value.message
    return caught.value


def ctx(**fields) -> ResponsesContext:
    return ResponsesContext(model=fields.pop("model", "my-model"), **fields)


def completion(message: dict, finish: str = "stop", usage: dict | None = None) -> dict:
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    return body


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> SSEEvent:
    payload = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up",
               "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        payload["usage"] = usage
    return SSEEvent.from_json(payload)


class Inner:
    """An inner chat stream that counts aclose() calls and can fail at a chosen point."""

    def __init__(self, events, fail_with: Exception | None = None):
        self.events = list(events)
        self.fail_with = fail_with
        self.closed = 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.events:
            if self.fail_with is not None:
                raise self.fail_with
            raise StopAsyncIteration
        return self.events.pop(0)

    async def aclose(self):
        self.closed += 1


def run_stream(events, context: ResponsesContext, response_id="resp_test", fail_with=None):
    inner = Inner(events, fail_with)
    stream = ChatToResponsesStream(inner, context, response_id, 1700000000)

    async def collect():
        return [event async for event in stream]
    return asyncio.run(collect()), inner, stream


def check_events(events: list[SSEEvent]) -> dict:
    """Every invariant of a well-formed Responses stream; returns the final response object."""
    payloads = [event.json() for event in events]
    for event in events:
        valid_event(event)
    assert [payload["sequence_number"] for payload in payloads] == list(range(len(payloads)))
    assert [payload["type"] for payload in payloads[:2]] == ["response.created", "response.in_progress"]
    assert payloads[-1]["type"] in ("response.completed", "response.incomplete")
    assert sum(payload["type"].startswith("response.") and "response" in payload for payload in payloads) == 3
    items, done, texts = {}, {}, {}
    for payload in payloads[2:-1]:
        index = payload["output_index"]
        assert index not in done, f"event after output_item.done: {payload}"
        if payload["type"] == "response.output_item.added":
            assert index == len(items), "output indexes count items in order"
            items[index] = payload["item"]["id"]
        elif payload["type"] == "response.output_item.done":
            assert payload["item"]["id"] == items[index]
            done[index] = payload["item"]
        else:
            assert payload["item_id"] == items[index]
            _collect_text(payload, texts)
    assert set(done) == set(items)
    assert len(set(items.values())) == len(items)
    final = payloads[-1]["response"]
    assert final["output"] == [done[index] for index in sorted(done)]
    _check_texts(texts, done)
    return final


def _collect_text(payload: dict, texts: dict) -> None:
    kind = payload["type"]
    key = (payload["output_index"], payload.get("content_index", payload.get("summary_index")))
    if kind.endswith(".delta"):
        texts.setdefault(key, {"deltas": [], "done": None})["deltas"].append(payload["delta"])
    elif kind.endswith(".done") and kind != "response.content_part.done" and \
            kind != "response.reasoning_summary_part.done":
        whole = payload.get("text", payload.get("arguments", payload.get("input", payload.get("refusal"))))
        texts.setdefault(key, {"deltas": [], "done": None})["done"] = whole


def _check_texts(texts: dict, done: dict) -> None:
    for (index, _), record in texts.items():
        assert record["done"] is not None
        assert "".join(record["deltas"]) == record["done"]


def final_of(events: list[SSEEvent]) -> dict:
    return events[-1].json()["response"]


def without_clock(response: dict) -> dict:
    return {key: value for key, value in response.items() if key != "completed_at"}


# ---- requests: input items ----------------------------------------------------------------------------

def test_string_input_and_instructions():
    chat, context = to_chat({"model": "gpt-x", "input": "Hello", "instructions": "Be brief."})
    assert chat == {"model": "gpt-x", "messages": [{"role": "system", "content": "Be brief."},
                                                   {"role": "user", "content": "Hello"}]}
    assert context.model == "gpt-x" and context.instructions == "Be brief."
    assert context.store is True and context.tool_choice == "auto" and context.truncation == "disabled"


def test_message_items_short_and_typed_forms():
    chat, _ = to_chat({"model": "m", "input": [
        {"role": "developer", "content": "Rules."},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "A"},
                                                          {"type": "input_text", "text": "B"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Look:"},
                                     {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
                                     {"type": "input_file", "file_data": "data:application/pdf;base64,AA==",
                                      "filename": "a.pdf"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Seen", "annotations": []}]},
        {"role": "user", "content": [{"type": "input_text", "text": "only text"}]},
    ]})
    assert chat["messages"] == [
        {"role": "system", "content": "Rules."},
        {"role": "system", "content": "AB"},
        {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                                     {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA==",
                                                               "filename": "a.pdf"}}]},
        {"role": "assistant", "content": "Seen"},
        {"role": "user", "content": "only text"},
    ]


def test_assistant_refusal_part_kept_as_chat_refusal_part():
    chat, _ = to_chat({"model": "m", "input": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "a"},
                                          {"type": "refusal", "refusal": "no"}]}]})
    assert chat["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                                    {"type": "refusal", "refusal": "no"}]}


def test_consecutive_function_calls_join_one_assistant_message_with_its_reasoning():
    token = encode_thinking_blocks([SIGNED])
    chat, _ = to_chat({"model": "m", "input": [
        {"role": "user", "content": "weather?"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "summary"}],
         "encrypted_content": token},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{\"city\":\"A\"}"},
        {"type": "function_call", "call_id": "c2", "name": "get", "arguments": "{\"city\":\"B\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": "rain"},
        {"type": "function_call", "call_id": "c3", "name": "get", "arguments": "{}"},
    ]})
    messages = chat["messages"]
    assert messages[1] == {
        "role": "assistant", "content": "Checking.", "reasoning_content": "Let me think.",
        "thinking_blocks": [SIGNED],
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"A\"}"}},
                       {"id": "c2", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"B\"}"}}]}
    assert messages[2] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert messages[3] == {"role": "tool", "tool_call_id": "c2", "content": "rain"}
    assert messages[4] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c3", "type": "function", "function": {"name": "get", "arguments": "{}"}}]}


def test_reasoning_alone_before_function_calls_starts_the_assistant_message():
    chat, _ = to_chat({"model": "m", "input": [
        {"role": "user", "content": "go"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encode_thinking_blocks([REDACTED])},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"}]})
    assistant = chat["messages"][1]
    assert assistant["thinking_blocks"] == [REDACTED] and "reasoning_content" not in assistant
    assert [call["id"] for call in assistant["tool_calls"]] == ["c1", "c2"]


def test_tool_output_parts_text_in_tool_message_images_after_the_run():
    chat, _ = to_chat({"model": "m", "input": [
        {"role": "user", "content": "shoot"},
        {"type": "function_call", "call_id": "a", "name": "shot", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "shot", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": [
            {"type": "input_text", "text": "took it"},
            {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
        {"type": "function_call_output", "call_id": "b", "output": [
            {"type": "input_image", "image_url": "https://img/2.png"}]},
        {"role": "user", "content": "thanks"}]})
    messages = chat["messages"]
    assert messages[2] == {"role": "tool", "tool_call_id": "a", "content": "took it"}
    assert messages[3]["role"] == "tool" and messages[3]["tool_call_id"] == "b" and messages[3]["content"]
    assert messages[4] == {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
        {"type": "image_url", "image_url": {"url": "https://img/2.png"}}]}
    assert messages[5] == {"role": "user", "content": "thanks"}


def test_custom_tool_call_and_output_items():
    chat, _ = to_chat({"model": "m", "input": [
        {"role": "user", "content": "patch"},
        {"type": "custom_tool_call", "call_id": "p1", "name": "apply_patch", "input": "*** Begin Patch\n\"x\""},
        {"type": "custom_tool_call_output", "call_id": "p1", "output": "Done"}]})
    call = chat["messages"][1]["tool_calls"][0]
    assert call["id"] == "p1" and call["function"]["name"] == "apply_patch"
    assert json.loads(call["function"]["arguments"]) == {"input": "*** Begin Patch\n\"x\""}
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": "p1", "content": "Done"}


def test_foreign_encrypted_reasoning_is_kept_aside_with_its_summary():
    chat, _ = to_chat({"model": "m", "input": [
        {"role": "user", "content": "q"},
        {"type": "reasoning", "id": "rs_x", "encrypted_content": "gAAAAB-openai-token",
         "summary": [{"type": "summary_text", "text": "One."}, {"type": "summary_text", "text": "Two."}]},
        {"role": "assistant", "content": "answer"}]})
    assert chat["messages"][1] == {"role": "assistant", "content": "answer", "reasoning_content": "One.\n\nTwo.",
                                   "reasoning_encrypted": ["gAAAAB-openai-token"]}


def test_unsigned_reasoning_token_gives_text_only():
    token = encode_thinking_blocks([{"type": "thinking", "thinking": "plain thoughts"}])
    chat, _ = to_chat({"model": "m", "input": [
        {"role": "user", "content": "q"}, {"type": "reasoning", "id": "r", "summary": [], "encrypted_content": token},
        {"role": "assistant", "content": "a"}]})
    assert chat["messages"][1] == {"role": "assistant", "content": "a", "reasoning_content": "plain thoughts"}


def test_reasoning_that_precedes_no_assistant_turn_is_dropped():
    chat, _ = to_chat({"model": "m", "input": [
        {"type": "reasoning", "id": "r", "summary": [{"type": "summary_text", "text": "lost"}]},
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    assert chat["messages"] == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


@pytest.mark.parametrize("item, param, fragment", [
    ({"type": "item_reference", "id": "msg_1"}, "input[1]", "item_reference"),
    ({"type": "web_search_call", "id": "ws"}, "input[1].type", "web_search_call"),
    ({"type": "telepathy"}, "input[1].type", "telepathy"),
    ({"content": "no role"}, "input[1].type", None),
    ("just a string", "input[1]", None),
    ({"role": "tool", "content": "x"}, "input[1].role", None),
    ({"role": "user"}, "input[1].content", None),
    ({"role": "user", "content": 5}, "input[1].content", None),
    ({"role": "user", "content": [{"type": "output_text", "text": "x"}]}, "input[1].content[0].type", "output_text"),
    ({"role": "user", "content": [{"type": "input_text"}]}, "input[1].content[0].text", None),
    ({"role": "user", "content": [{"type": "input_text", "text": 3}]}, "input[1].content[0].text", None),
    ({"role": "user", "content": ["x"]}, "input[1].content[0].type", None),
    ({"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}, "input[1].content[0].file_id",
     "file_id"),
    ({"role": "user", "content": [{"type": "input_image"}]}, "input[1].content[0].image_url", None),
    ({"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}, "input[1].content[0].file_id", None),
    ({"role": "user", "content": [{"type": "input_audio"}]}, "input[1].content[0].type", None),
    ({"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}, "input[1].content[0].type", None),
    ({"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]}, "input[1].content[0].type", None),
    ({"type": "function_call", "name": "f", "arguments": "{}"}, "input[1].call_id", None),
    ({"type": "function_call", "call_id": "c", "arguments": "{}"}, "input[1].name", None),
    ({"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}, "input[1].arguments", None),
    ({"type": "function_call_output", "output": "x"}, "input[1].call_id", None),
    ({"type": "function_call_output", "call_id": "c"}, "input[1].output", None),
    ({"type": "function_call_output", "call_id": "c", "output": 7}, "input[1].output", None),
    ({"type": "function_call_output", "call_id": "c", "output": [{"type": "refusal"}]}, "input[1].output[0].type",
     None),
    ({"type": "custom_tool_call", "call_id": "c", "name": "t"}, "input[1].input", None),
    ({"type": "custom_tool_call_output", "call_id": "c", "output": None}, "input[1].output", None),
    ({"type": "reasoning", "id": "r", "summary": "text"}, "input[1].summary", None),
    ({"type": "reasoning", "id": "r", "summary": [{"type": "other"}]}, "input[1].summary[0].type", None),
    ({"type": "reasoning", "id": "r", "summary": [{"type": "summary_text"}]}, "input[1].summary[0].text", None),
    ({"type": "reasoning", "id": "r", "summary": [], "encrypted_content": 5}, "input[1].encrypted_content", None),
    ({"type": "reasoning", "id": "r", "summary": [], "encrypted_content": "byok1.!!!"},
     "input[1].encrypted_content", "damaged"),
])
def test_malformed_input_items_name_their_param(item, param, fragment):
    bad({"model": "m", "input": [{"role": "user", "content": "first"}, item]}, param, fragment)


def test_damaged_token_variants_are_refused():
    for body in (b"[1]", b"{}", b"not json", b'[{"type":"thinking"}]', b'[{"type":"redacted_thinking","data":1}]'):
        token = "byok1." + base64.urlsafe_b64encode(body).decode().rstrip("=")
        assert decode_thinking_blocks(token) is None
        bad({"model": "m", "input": [{"role": "user", "content": "q"},
                                     {"type": "reasoning", "id": "r", "summary": [], "encrypted_content": token}]},
            "input[1].encrypted_content")


def test_thinking_token_round_trip_keeps_only_known_fields():
    blocks = [{**SIGNED, "extra": "dropped"}, REDACTED, {"type": "thinking", "thinking": "u", "signature": None}]
    token = encode_thinking_blocks(blocks)
    assert token.startswith("byok1.") and "=" not in token
    assert decode_thinking_blocks(token) == [SIGNED, REDACTED, {"type": "thinking", "thinking": "u"}]
    assert decode_thinking_blocks("gAAAA-openai") is None and decode_thinking_blocks(None) is None


# ---- requests: tools and parameters -------------------------------------------------------------------

def test_function_and_custom_tools():
    chat, context = to_chat({"model": "m", "input": "x", "tools": [
        {"type": "function", "name": "get", "description": "Get it", "parameters": {"type": "object"}, "strict": True},
        {"type": "function", "name": "ping", "parameters": None, "strict": None},
        {"type": "custom", "name": "apply_patch", "description": "Patch files",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: LINE+"}},
        {"type": "custom", "name": "note", "format": {"type": "text"}}]})
    get, ping, patch, note = chat["tools"]
    assert get == {"type": "function", "function": {"name": "get", "description": "Get it",
                                                    "parameters": {"type": "object"}, "strict": True}}
    assert ping == {"type": "function",
                    "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}
    assert patch["function"]["parameters"]["required"] == ["input"]
    assert patch["function"]["parameters"]["properties"]["input"]["type"] == "string"
    assert "Patch files" in patch["function"]["description"]
    assert "lark" in patch["function"]["description"] and "start: LINE+" in patch["function"]["description"]
    assert "description" not in note["function"]
    assert context.custom_tool_names == frozenset({"apply_patch", "note"})
    assert chat["parallel_tool_calls"] is True and "tool_choice" not in chat
    assert [tool["type"] for tool in context.tools] == ["function", "function", "custom", "custom"]


@pytest.mark.parametrize("kind", sorted(BUILTIN_TOOL_TYPES))
def test_builtin_tools_are_refused_by_name(kind):
    error = bad({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}, {"type": kind}]},
                "tools[1].type")
    assert kind in error.message


@pytest.mark.parametrize("tools, param", [
    ("notalist", "tools"), ([5], "tools[0]"), ([{"name": "f"}], "tools[0].type"),
    ([{"type": "wizard"}], "tools[0].type"), ([{"type": "function"}], "tools[0].name"),
    ([{"type": "function", "name": ""}], "tools[0].name"), ([{"type": "function", "name": 3}], "tools[0].name"),
    ([{"type": "function", "name": "f", "parameters": "x"}], "tools[0].parameters"),
    ([{"type": "function", "name": "f", "strict": "yes"}], "tools[0].strict"),
    ([{"type": "function", "name": "f", "description": 1}], "tools[0].description"),
    ([{"type": "custom", "name": "c", "format": {"type": "regexish"}}], "tools[0].format.type"),
    ([{"type": "custom", "name": "c", "format": {"type": "grammar", "syntax": "lark"}}], "tools[0].format.definition"),
])
def test_malformed_tools(tools, param):
    bad({"model": "m", "input": "x", "tools": tools}, param)


TOOLS = [{"type": "function", "name": "a"}, {"type": "function", "name": "b"}, {"type": "custom", "name": "c"}]


@pytest.mark.parametrize("choice, expected, names", [
    ("auto", "auto", ["a", "b", "c"]), ("none", "none", ["a", "b", "c"]), ("required", "required", ["a", "b", "c"]),
    ({"type": "function", "name": "b"}, {"type": "function", "function": {"name": "b"}}, ["a", "b", "c"]),
    ({"type": "custom", "name": "c"}, {"type": "function", "function": {"name": "c"}}, ["a", "b", "c"]),
    ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "a"},
                                                             {"type": "custom", "name": "c"}]},
     "required", ["a", "c"]),
])
def test_tool_choice_mapping(choice, expected, names):
    chat, context = to_chat({"model": "m", "input": "x", "tools": TOOLS, "tool_choice": choice,
                             "parallel_tool_calls": False})
    assert chat["tool_choice"] == expected
    assert [tool["function"]["name"] for tool in chat["tools"]] == names
    assert chat["parallel_tool_calls"] is False and context.tool_choice == choice


@pytest.mark.parametrize("choice, param", [
    ({"type": "web_search_preview"}, "tool_choice"), ({"type": "file_search"}, "tool_choice"),
    ("sometimes", "tool_choice"), (3, "tool_choice"), ({"type": "function"}, "tool_choice.name"),
    ({"type": "allowed_tools", "mode": "maybe", "tools": []}, "tool_choice.mode"),
    ({"type": "allowed_tools", "mode": "auto", "tools": "a"}, "tool_choice.tools"),
    ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "zzz"}]},
     "tool_choice.tools"),
])
def test_malformed_tool_choice(choice, param):
    bad({"model": "m", "input": "x", "tools": TOOLS, "tool_choice": choice}, param)


def test_parameters_map_to_chat_and_context():
    chat, context = to_chat({
        "model": "m", "input": "x", "stream": True, "max_output_tokens": 300, "temperature": 0.2, "top_p": 0.9,
        "reasoning": {"effort": "low", "summary": "auto"}, "safety_identifier": "user-hash", "store": False,
        "metadata": {"k": "v"}, "include": ["reasoning.encrypted_content"], "previous_response_id": "resp_prev",
        "truncation": "auto", "service_tier": "flex", "prompt_cache_key": "pk", "max_tool_calls": 4,
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True},
                 "verbosity": "low"},
        "background": False, "top_logprobs": 0, "stream_options": {"include_obfuscation": False}})
    assert chat == {
        "model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
        "stream_options": {"include_usage": True}, "max_completion_tokens": 300, "temperature": 0.2, "top_p": 0.9,
        "service_tier": "flex", "prompt_cache_key": "pk", "user": "user-hash", "reasoning_effort": "low",
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True}},
        "verbosity": "low"}
    assert context.store is False and context.metadata == {"k": "v"} and context.stream is True
    assert context.include == ("reasoning.encrypted_content",) and context.wants_encrypted_reasoning
    assert context.previous_response_id == "resp_prev" and context.truncation == "auto"
    assert context.reasoning == {"effort": "low", "summary": "auto"} and context.wants_summary
    assert context.max_output_tokens == 300 and context.max_tool_calls == 4 and context.service_tier == "flex"
    assert context.safety_identifier == "user-hash" and context.user is None


@pytest.mark.parametrize("text, expected", [
    ({"format": {"type": "text"}}, None), ({"format": {"type": "json_object"}}, {"type": "json_object"}), ({}, None)])
def test_text_formats(text, expected):
    chat, _ = to_chat({"model": "m", "input": "x", "text": text})
    assert chat.get("response_format") == expected


@pytest.mark.parametrize("effort, level", [("none", "none"), ("minimal", "minimal"), ("medium", "medium"),
                                           ("high", "high"), ("xhigh", "xhigh"), ("max", "xhigh"), (None, None)])
def test_reasoning_effort_levels(effort, level):
    chat, context = to_chat({"model": "m", "input": "x", "reasoning": {"effort": effort}})
    assert chat.get("reasoning_effort") == level
    assert context.reasoning == {"effort": effort, "summary": None} and not context.wants_summary


def test_user_wins_over_safety_identifier():
    chat, context = to_chat({"model": "m", "input": "x", "user": "u1", "safety_identifier": "s1"})
    assert chat["user"] == "u1" and context.user == "u1"


@pytest.mark.parametrize("extra, param", [
    ({"model": None}, "model"), ({"model": ""}, "model"), ({"model": 5}, "model"),
    ({"input": 5}, "input"), ({"input": []}, "input"), ({"instructions": 3}, "instructions"),
    ({"max_output_tokens": "10"}, "max_output_tokens"), ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"max_output_tokens": True}, "max_output_tokens"), ({"temperature": "hot"}, "temperature"),
    ({"temperature": True}, "temperature"), ({"top_p": [1]}, "top_p"), ({"stream": "yes"}, "stream"),
    ({"parallel_tool_calls": 1}, "parallel_tool_calls"), ({"store": "no"}, "store"),
    ({"metadata": []}, "metadata"), ({"metadata": {"n": 1}}, "metadata"), ({"include": "x"}, "include"), ({"include": [1]}, "include"),
    ({"user": 1}, "user"), ({"safety_identifier": 1}, "safety_identifier"),
    ({"previous_response_id": 1}, "previous_response_id"), ({"truncation": 1}, "truncation"),
    ({"service_tier": 2}, "service_tier"), ({"prompt_cache_key": {}}, "prompt_cache_key"),
    ({"max_tool_calls": -1}, "max_tool_calls"),
    ({"reasoning": "high"}, "reasoning"), ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"reasoning": {"summary": "long"}}, "reasoning.summary"),
    ({"text": "json"}, "text"), ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"text": {"verbosity": "loud"}}, "text.verbosity"),
    ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
    ({"text": {"format": {"type": "json_schema", "name": "n"}}}, "text.format.schema"),
    ({"text": {"format": {"type": "json_schema", "name": "n", "schema": {}, "strict": "y"}}}, "text.format.strict"),
    ({"background": True}, "background"), ({"conversation": "conv_1"}, "conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
])
def test_wrong_fields_name_their_param(extra, param):
    bad({"model": "m", "input": "x", **extra}, param)


def test_missing_model_and_non_object_body():
    bad({"input": "x"}, "model")
    bad([1, 2], "body")


def test_empty_input_allowed_with_previous_response_id():
    chat, context = to_chat({"model": "m", "previous_response_id": "resp_1"})
    assert chat["messages"] == [] and context.previous_response_id == "resp_1"


def test_context_is_frozen_and_slotted():
    _, context = to_chat({"model": "m", "input": "x"})
    assert not hasattr(context, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.model = "other"  # type: ignore[misc]


JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["type", "role", "content", "text", "name", "call_id", "arguments", "output",
                                         "input", "summary", "encrypted_content", "image_url", "format", "tools",
                                         "effort", "mode", "schema"]), inner, max_size=4), max_leaves=12)
ITEM_TYPES = st.sampled_from(["message", "function_call", "function_call_output", "custom_tool_call", "reasoning",
                              "custom_tool_call_output", "input_text", "output_text", "input_image", "summary_text"])


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"model": st.just("m")}, optional={
    "input": st.text(max_size=3) | st.lists(st.dictionaries(st.sampled_from(["type", "role", "content", "call_id",
                                                                             "name", "arguments", "output",
                                                                             "summary"]),
                                                            ITEM_TYPES | JSON, max_size=5), max_size=4),
    "tools": JSON, "tool_choice": JSON, "reasoning": JSON, "text": JSON, "include": JSON, "metadata": JSON,
    "temperature": JSON, "max_output_tokens": JSON, "instructions": JSON}))
def test_any_body_is_translated_or_refused_cleanly(body):
    try:
        chat, _ = to_chat(body)
    except InvalidRequest as error:
        assert error.param and error.status == 400
        return
    json.dumps(chat)  # what is accepted is plain JSON


# ---- whole answers ------------------------------------------------------------------------------------

FULL_USAGE = {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160,
              "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 7},
              "completion_tokens_details": {"reasoning_tokens": 25}}


def test_usage_mapping():
    expected = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 7},
                "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 25}, "total_tokens": 160}
    assert usage_from_chat(FULL_USAGE) == expected
    assert stream_usage_from_chat({"prompt_tokens": 3, "completion_tokens": 2})["total_tokens"] == 5
    assert usage_from_chat(None) is None
    assert usage_from_chat({"prompt_tokens": True, "completion_tokens": -4}) == {
        "input_tokens": 0, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}


def test_text_answer_is_a_valid_response_echoing_the_request():
    _, context = to_chat({"model": "alias-1", "input": "hi", "instructions": "Be nice", "temperature": 0.5,
                          "metadata": {"a": "b"}, "store": False, "user": "u", "max_output_tokens": 99,
                          "text": {"format": {"type": "json_object"}}, "tool_choice": "none",
                          "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]})
    response = from_chat(completion({"content": "Hello!"}, usage=FULL_USAGE), context, "resp_1", 1700000000)
    model = valid_response(response)
    assert model.output_text == "Hello!" and model.status == "completed"
    assert response["output"] == [{"id": "msg_1_0", "type": "message", "status": "completed", "role": "assistant",
                                   "content": [{"type": "output_text", "text": "Hello!", "annotations": [],
                                                "logprobs": []}]}]
    assert response["model"] == "alias-1" and response["instructions"] == "Be nice"
    assert response["temperature"] == 0.5 and response["top_p"] is None and response["metadata"] == {"a": "b"}
    assert response["store"] is False and response["user"] == "u" and response["max_output_tokens"] == 99
    assert response["text"] == {"format": {"type": "json_object"}} and response["tool_choice"] == "none"
    assert response["tools"] == [{"type": "function", "name": "f", "description": None,
                                  "parameters": {"type": "object"}, "strict": None}]
    assert response["usage"]["input_tokens_details"]["cached_tokens"] == 100
    assert response["reasoning"] == {"effort": None, "summary": None} and response["error"] is None
    assert response["object"] == "response" and response["created_at"] == 1700000000
    assert isinstance(response["completed_at"], int) and "output_text" not in response


def test_tool_calls_and_custom_tool_calls_in_order():
    _, context = to_chat({"model": "m", "input": "x", "tools": [{"type": "function", "name": "get"},
                                                                {"type": "custom", "name": "apply_patch"}]})
    message = {"content": None, "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "get", "arguments": "{\"q\":1}"}},
        {"id": "call_b", "type": "function", "function": {"name": "apply_patch",
                                                          "arguments": "{\"input\":\"*** Begin Patch\"}"}},
        {"type": "function", "function": {"name": "get", "arguments": {"q": 2}}}]}
    response = from_chat(completion(message, "tool_calls"), context, "resp_t", 1)
    valid_response(response)
    assert response["output"] == [
        {"id": "fc_t_0", "type": "function_call", "call_id": "call_a", "name": "get", "arguments": "{\"q\":1}",
         "status": "completed"},
        {"id": "ctc_t_1", "type": "custom_tool_call", "call_id": "call_b", "name": "apply_patch",
         "input": "*** Begin Patch"},
        {"id": "fc_t_2", "type": "function_call", "call_id": "call_fc_t_2", "name": "get", "arguments": "{\"q\":2}",
         "status": "completed"}]


@pytest.mark.parametrize("arguments, expected", [
    ("{\"input\":\"x\"}", "x"), ("not json", "not json"), ("\"bare string\"", "bare string"),
    ("{\"other\":1}", "{\"other\":1}"), ("", "")])
def test_custom_tool_input_decoding(arguments, expected):
    context = ctx(custom_tool_names=frozenset({"c"}))
    message = {"tool_calls": [{"id": "k", "type": "function", "function": {"name": "c", "arguments": arguments}}]}
    assert from_chat(completion(message), context, "resp_c", 1)["output"][0]["input"] == expected


def test_custom_tool_round_trip():
    chat, context = to_chat({"model": "m", "input": "fix it", "tools": [{"type": "custom", "name": "apply_patch"}]})
    upstream_arguments = chat["tools"][0]["function"]["parameters"]["properties"]
    assert "input" in upstream_arguments
    arguments = json.dumps({"input": "*** Begin Patch\n+line\n*** End Patch"}, separators=(",", ":"))
    answer = completion({"tool_calls": [{"id": "call_p", "type": "function",
                                         "function": {"name": "apply_patch", "arguments": arguments}}]})
    item = from_chat(answer, context, "resp_r", 1)["output"][0]
    assert item["type"] == "custom_tool_call"
    next_chat, _ = to_chat({"model": "m", "tools": [{"type": "custom", "name": "apply_patch"}], "input": [
        {"role": "user", "content": "fix it"}, item,
        {"type": "custom_tool_call_output", "call_id": item["call_id"], "output": "applied"}]})
    assert next_chat["messages"][1]["tool_calls"] == answer["choices"][0]["message"]["tool_calls"]
    assert next_chat["messages"][2] == {"role": "tool", "tool_call_id": "call_p", "content": "applied"}


def test_reasoning_item_summary_only_when_asked_and_encrypted_only_when_included():
    message = {"content": "A", "reasoning_content": "Let me think.", "thinking_blocks": [SIGNED]}
    plain = from_chat(completion(message), ctx(), "resp_p", 1)["output"][0]
    assert plain == {"id": "rs_p_0", "type": "reasoning", "summary": []}
    asked = from_chat(completion(message), ctx(reasoning={"effort": "high", "summary": "detailed"},
                                               include=("reasoning.encrypted_content",)), "resp_p", 1)
    valid_response(asked)
    item = asked["output"][0]
    assert item["summary"] == [{"type": "summary_text", "text": "Let me think."}]
    assert decode_thinking_blocks(item["encrypted_content"]) == [SIGNED]


def test_reasoning_encrypted_round_trip_through_a_second_request():
    _, context = to_chat({"model": "m", "input": "q", "include": ["reasoning.encrypted_content"],
                          "tools": [{"type": "function", "name": "f"}]})
    message = {"content": None, "reasoning_content": "Let me think.", "thinking_blocks": [SIGNED, REDACTED],
               "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    output = from_chat(completion(message, "tool_calls"), context, "resp_rt", 1)["output"]
    chat, _ = to_chat({"model": "m", "input": [{"role": "user", "content": "q"}, *output,
                                               {"type": "function_call_output", "call_id": "call_1", "output": "ok"}]})
    assert chat["messages"][1] == {"role": "assistant", "content": None, "reasoning_content": "Let me think.",
                                   "thinking_blocks": [SIGNED, REDACTED], "tool_calls": message["tool_calls"]}


def test_reasoning_text_without_blocks_is_carried_unsigned():
    context = ctx(include=("reasoning.encrypted_content",))
    item = from_chat(completion({"content": "a", "reasoning_content": "deepseek thoughts"}), context, "resp_d", 1)
    token = item["output"][0]["encrypted_content"]
    assert decode_thinking_blocks(token) == [{"type": "thinking", "thinking": "deepseek thoughts"}]


@pytest.mark.parametrize("finish, reason", [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_incomplete_answers(finish, reason):
    response = from_chat(completion({"content": "cut", "reasoning_content": "r"}, finish), ctx(), "resp_i", 1)
    valid_response(response)
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": reason}
    assert response["output"][-1]["status"] == "incomplete" and "completed_at" not in response


def test_refusal_and_empty_answers():
    refused = from_chat(completion({"content": None, "refusal": "I can't."}), ctx(), "resp_f", 1)
    valid_response(refused)
    assert refused["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't."}]
    empty = from_chat({"choices": []}, ctx(), "resp_e", 1)
    valid_response(empty)
    assert empty["output"] == [] and empty["usage"] is None


def test_parts_content_from_a_provider_is_joined():
    response = from_chat(completion({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
                         ctx(), "resp_j", 1)
    assert response["output"][0]["content"][0]["text"] == "ab"


# ---- streams ------------------------------------------------------------------------------------------

def test_text_stream_event_sequence():
    events, inner, stream = run_stream([
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
        chunk({}, "stop"), chunk(usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}),
        done_event()], ctx())
    assert [event.event for event in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    final = check_events(events)
    valid_response(final)
    assert final["usage"]["total_tokens"] == 7 and final["status"] == "completed"
    assert events[0].json()["response"]["status"] == "in_progress" and events[0].json()["response"]["output"] == []
    assert events[0].raw.startswith(b"event: response.created\ndata: {")
    assert {event.json().get("item_id") for event in events[3:8]} == {"msg_test_0"}
    assert inner.closed == 1 and stream.started


def test_reasoning_then_text_with_summary_closes_reasoning_first():
    context = ctx(reasoning={"effort": "high", "summary": "auto"}, include=("reasoning.encrypted_content",))
    events, _, _ = run_stream([
        chunk({"role": "assistant", "content": ""}), chunk({"reasoning_content": "Let me "}),
        chunk({"reasoning_content": "think."}), chunk({"thinking_blocks": [SIGNED]}), chunk({"content": "Answer"}),
        chunk({}, "stop"), done_event()], context)
    kinds = [event.event for event in events]
    assert kinds[2:10] == ["response.output_item.added", "response.reasoning_summary_part.added",
                           "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
                           "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
                           "response.output_item.done", "response.output_item.added"]
    final = check_events(events)
    reasoning = final["output"][0]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me think."}]
    assert decode_thinking_blocks(reasoning["encrypted_content"]) == [SIGNED]
    assert events[8].json()["item"] == reasoning  # output_item.done carries the encrypted content too


def test_reasoning_without_summary_request_sends_no_summary_events():
    events, _, _ = run_stream([chunk({"reasoning_content": "hidden"}), chunk({"thinking_blocks": [REDACTED]}),
                               chunk({"content": "x"}), chunk({}, "stop"), done_event()], ctx())
    assert not any("reasoning_summary" in event.event for event in events)
    final = check_events(events)
    assert final["output"][0] == {"id": "rs_test_0", "type": "reasoning", "summary": []}


def test_parallel_tool_calls_interleaved_each_get_their_own_item():
    def call(index, arguments, **head):
        function = {"arguments": arguments, **({"name": head["name"]} if "name" in head else {})}
        opening = {"id": head["id"], "type": "function"} if "id" in head else {}
        return chunk({"tool_calls": [{"index": index, **opening, "function": function}]})
    events, _, _ = run_stream([
        chunk({"role": "assistant", "content": None}),
        call(0, "", id="call_a", name="get"), call(0, "{\"city\":"),
        call(1, "", id="call_b", name="get"), call(1, "{\"city\":\"B\"}"), call(0, "\"A\"}"),
        chunk({}, "tool_calls"), done_event()], ctx())
    final = check_events(events)
    assert [(item["call_id"], item["arguments"]) for item in final["output"]] == [
        ("call_a", "{\"city\":\"A\"}"), ("call_b", "{\"city\":\"B\"}")]
    deltas = [(event.json()["item_id"], event.json()["delta"]) for event in events
              if event.event == "response.function_call_arguments.delta"]
    assert deltas == [("fc_test_0", "{\"city\":"), ("fc_test_1", "{\"city\":\"B\"}"), ("fc_test_0", "\"A\"}")]
    assert final["status"] == "completed"


def test_calls_that_all_say_index_0_but_carry_new_ids_are_separate_items():
    def call(call_id, name, arguments):
        return chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                      "function": {"name": name, "arguments": arguments}}]})
    events, _, _ = run_stream([call("a", "f", "{\"x\":1}"), call("b", "g", "{}"), chunk({}, "tool_calls"),
                               done_event()], ctx())
    final = check_events(events)
    assert [(item["call_id"], item["name"], item["arguments"]) for item in final["output"]] == [
        ("a", "f", "{\"x\":1}"), ("b", "g", "{}")]
    after_text, _, _ = run_stream([call("a", "f", "{}"), chunk({"content": "and"}), call("b", "g", "{}"),
                                   chunk({}, "tool_calls"), done_event()], ctx())
    assert [item["type"] for item in check_events(after_text)["output"]] == ["function_call", "message",
                                                                            "function_call"]
    repeated, _, _ = run_stream([call("a", "f", "{\"x\":"), call("a", "", "1}"), chunk({}, "tool_calls"),
                                 done_event()], ctx())
    assert [item["arguments"] for item in check_events(repeated)["output"]] == ["{\"x\":1}"]


def test_several_calls_in_one_chunk():
    events, _, _ = run_stream([
        chunk({"tool_calls": [
            {"index": 0, "id": "x", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"index": 1, "id": "y", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"), done_event()], ctx())
    assert [item["name"] for item in check_events(events)["output"]] == ["f", "g"]


def test_custom_tool_call_stream_sends_decoded_input_at_the_end():
    context = ctx(custom_tool_names=frozenset({"apply_patch"}))
    fragments = ["{\"inp", "ut\": \"*** Begin", "\\nline \\u00e9\\\"q\\\"", "\"}"]
    events, _, _ = run_stream(
        [chunk({"tool_calls": [{"index": 0, "id": "call_p", "type": "function",
                                "function": {"name": "apply_patch", "arguments": ""}}]})]
        + [chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}) for part in fragments]
        + [chunk({}, "tool_calls"), done_event()], context)
    kinds = [event.event for event in events]
    assert kinds[2:] == ["response.output_item.added", "response.custom_tool_call_input.delta",
                         "response.custom_tool_call_input.done", "response.output_item.done", "response.completed"]
    final = check_events(events)
    assert final["output"] == [{"id": "ctc_test_0", "type": "custom_tool_call", "call_id": "call_p",
                                "name": "apply_patch", "input": "*** Begin\nline é\"q\""}]
    assert events[2].json()["item"]["input"] == ""


def test_refusal_stream():
    events, _, _ = run_stream([chunk({"refusal": "I "}), chunk({"refusal": "can't"}), chunk({}, "stop"),
                               done_event()], ctx())
    final = check_events(events)
    assert final["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't"}]
    assert "response.refusal.delta" in [event.event for event in events]


def test_length_finish_gives_response_incomplete():
    events, _, _ = run_stream([chunk({"content": "cut"}), chunk({}, "length"), done_event()],
                              ctx(max_output_tokens=3))
    final = check_events(events)
    assert events[-1].event == "response.incomplete"
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete" and final["max_output_tokens"] == 3


def test_stream_without_done_but_finished_completes():
    events, inner, _ = run_stream([chunk({"content": "ok"}), chunk({}, "stop")], ctx())
    assert check_events(events)["status"] == "completed" and inner.closed == 1


def test_stream_cut_before_finish_is_a_protocol_error():
    inner = Inner([chunk({"content": "partial"})])
    stream = ChatToResponsesStream(inner, ctx(), "resp_x", 1)

    async def consume():
        seen = []
        with pytest.raises(UpstreamProtocolError):
            async for event in stream:
                seen.append(event)
        return seen
    seen = asyncio.run(consume())
    assert [event.event for event in seen][:2] == ["response.created", "response.in_progress"]
    assert inner.closed == 1


def test_inner_failure_propagates_and_failed_event_continues_the_sequence():
    error = RateLimited("slow down", retry_after=3)
    inner = Inner([chunk({"content": "par"}), chunk({"tool_calls": [
        {"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})], fail_with=error)
    stream = ChatToResponsesStream(inner, ctx(), "resp_fail", 1)

    async def consume():
        seen = []
        with pytest.raises(ProxyError) as caught:
            async for event in stream:
                seen.append(event)
        return seen, caught.value
    seen, raised = asyncio.run(consume())
    assert raised is error and stream.started and inner.closed == 1
    failed = failed_event(stream.state, raised)
    valid_event(failed)
    payload = failed.json()
    assert failed.event == "response.failed"
    assert payload["sequence_number"] == seen[-1].json()["sequence_number"] + 1
    assert payload["response"]["status"] == "failed"
    assert payload["response"]["error"] == {"code": "rate_limit_exceeded", "message": "slow down"}
    assert [item["type"] for item in payload["response"]["output"]] == ["message"]  # finished items only
    other = failed_event(stream.state, UpstreamError("up", "boom")).json()
    assert other["response"]["error"]["code"] == "server_error" and "boom" in other["response"]["error"]["message"]


def test_nothing_is_sent_before_the_first_upstream_event():
    inner = Inner([], fail_with=UpstreamError("up", "refused"))
    stream = ChatToResponsesStream(inner, ctx(), "resp_0", 1)

    async def consume():
        with pytest.raises(UpstreamError):
            await stream.__anext__()
    asyncio.run(consume())
    assert not stream.started and stream.state.sequence_number == 0


@pytest.mark.parametrize("raw", [b"data: not json\n\n", b"data: [1,2]\n\n"])
def test_garbage_chunks_are_protocol_errors(raw):
    inner = Inner([SSEEvent(raw)])
    stream = ChatToResponsesStream(inner, ctx(), "resp_g", 1)

    async def consume():
        with pytest.raises(UpstreamProtocolError):
            async for _ in stream:
                pass
    asyncio.run(consume())
    assert inner.closed == 1


def test_error_chunk_and_late_arguments_are_upstream_errors():
    with pytest.raises(UpstreamError):
        ResponsesTranslator(ctx(), "resp_e", 1).feed({"error": {"message": "overloaded"}})
    translator = ResponsesTranslator(ctx(), "resp_l", 1)
    translator.feed({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}]}}]})
    translator.feed({"choices": [{"index": 0, "delta": {"content": "text after the call"}}]})
    with pytest.raises(UpstreamProtocolError):
        translator.feed({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {
            "arguments": "}"}}]}}]})


def test_comments_other_choices_and_empty_deltas_are_ignored():
    events, _, _ = run_stream([SSEEvent(b": keep-alive\n\n"), chunk({"content": ""}),
                               SSEEvent.from_json({"choices": [{"index": 1, "delta": {"content": "other"}}]}),
                               chunk({"content": "mine"}), chunk({}, "stop"), done_event()], ctx())
    final = check_events(events)
    assert final["output"][0]["content"][0]["text"] == "mine"


def test_aclose_closes_the_inner_stream_exactly_once():
    async def scenario():
        never = Inner([chunk({"content": "x"})])
        stream = ChatToResponsesStream(never, ctx(), "resp_n", 1)
        await stream.aclose()
        await stream.aclose()
        partial = Inner([chunk({"content": "x"}), chunk({}, "stop"), done_event()])
        started = ChatToResponsesStream(partial, ctx(), "resp_p", 1)
        await started.__anext__()
        await started.aclose()
        await started.aclose()
        full = Inner([chunk({"content": "x"}), chunk({}, "stop"), done_event()])
        finished = ChatToResponsesStream(full, ctx(), "resp_f", 1)
        [event async for event in finished]
        await finished.aclose()
        return never.closed, partial.closed, full.closed
    assert asyncio.run(scenario()) == (1, 1, 1)


def test_completion_to_events_matches_from_chat():
    context = ctx(reasoning={"summary": "auto", "effort": None}, include=("reasoning.encrypted_content",),
                  custom_tool_names=frozenset({"c"}))
    answer = completion({"content": "Hi", "reasoning_content": "Thinking", "thinking_blocks": [SIGNED],
                         "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                                        {"id": "b", "type": "function",
                                         "function": {"name": "c", "arguments": "{\"input\":\"raw\"}"}}]},
                        "tool_calls", FULL_USAGE)
    events = completion_to_events(answer, context, "resp_same", 5)
    final = check_events(events)
    assert without_clock(final) == without_clock(from_chat(answer, context, "resp_same", 5))


# ---- the property: any chunk sequence -> a well-formed stream equal to from_chat ----------------------------

NAMES = ["get", "apply_patch", "note"]
TEXT = st.text(min_size=1, max_size=8)


@st.composite
def chat_answers(draw):
    reasoning = draw(st.lists(st.one_of(st.tuples(st.just("r"), TEXT),
                                        st.tuples(st.just("b"), st.sampled_from([SIGNED, REDACTED]))), max_size=4))
    texts = draw(st.lists(TEXT, max_size=4))
    customs = frozenset(draw(st.sets(st.sampled_from(NAMES))))
    tools = []
    for position in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(NAMES))
        if name in customs:
            whole = json.dumps({"input": draw(st.text(max_size=12))})
        else:
            whole = draw(st.text(max_size=12))
        cuts = sorted(draw(st.lists(st.integers(0, len(whole)), max_size=3)))
        pieces = [whole[start:end] for start, end in zip([0, *cuts], [*cuts, len(whole)])]
        tools.append({"id": f"call_{position}", "name": name, "pieces": [piece for piece in pieces if piece]})
    order = _interleaving(draw, tools)
    finish = draw(st.sampled_from(["stop", "tool_calls", "length", "content_filter"]))
    usage = draw(st.none() | st.fixed_dictionaries({"prompt_tokens": st.integers(0, 99),
                                                     "completion_tokens": st.integers(0, 99)}))
    context = ctx(custom_tool_names=customs,
                  reasoning={"effort": "low", "summary": draw(st.sampled_from([None, "auto"]))},
                  include=draw(st.sampled_from([(), ("reasoning.encrypted_content",)])))
    return reasoning, texts, tools, order, finish, usage, context


def _interleaving(draw, tools):
    """Tool deltas in any order that keeps each call's pieces in order and opens calls by index."""
    remaining = [[("head", index)] + [("piece", index, piece) for piece in tool["pieces"]]
                 for index, tool in enumerate(tools)]
    opened, order = 0, []
    while any(remaining):
        ready = [index for index in range(len(remaining)) if remaining[index] and index <= opened]
        index = draw(st.sampled_from(ready))
        step = remaining[index].pop(0)
        opened = max(opened, index + 1) if step[0] == "head" else opened
        order.append(step)
    return order


def _as_chunks(reasoning, texts, tools, order, finish, usage):
    events = [chunk({"role": "assistant", "content": ""})]
    for kind, value in reasoning:
        events.append(chunk({"reasoning_content": value} if kind == "r" else {"thinking_blocks": [value]}))
    events.extend(chunk({"content": text}) for text in texts)
    for step in order:
        if step[0] == "head":
            tool = tools[step[1]]
            call = {"index": step[1], "id": tool["id"], "type": "function",
                    "function": {"name": tool["name"], "arguments": ""}}
        else:
            call = {"index": step[1], "function": {"arguments": step[2]}}
        events.append(chunk({"tool_calls": [call]}))
    events.append(chunk({}, finish))
    if usage is not None:
        events.append(chunk(usage=usage))
    return events + [done_event()]


def _as_completion(reasoning, texts, tools, finish, usage):
    message = {"content": "".join(texts) or None}
    thoughts = "".join(value for kind, value in reasoning if kind == "r")
    if thoughts:
        message["reasoning_content"] = thoughts
    blocks = [value for kind, value in reasoning if kind == "b"]
    if blocks:
        message["thinking_blocks"] = blocks
    if tools:
        message["tool_calls"] = [{"id": tool["id"], "type": "function",
                                  "function": {"name": tool["name"], "arguments": "".join(tool["pieces"])}}
                                 for tool in tools]
    return completion(message, finish, usage)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chat_answers())
def test_any_chunk_sequence_streams_well_formed_and_equal_to_from_chat(answer):
    reasoning, texts, tools, order, finish, usage, context = answer
    events, inner, _ = run_stream(_as_chunks(reasoning, texts, tools, order, finish, usage), context, "resp_prop")
    final = check_events(events)
    valid_response(final)
    expected = from_chat(_as_completion(reasoning, texts, tools, finish, usage), context, "resp_prop", 1700000000)
    assert final["output"] == expected["output"]
    assert without_clock(final) == without_clock(expected)
    assert inner.closed == 1
    synthesized = completion_to_events(_as_completion(reasoning, texts, tools, finish, usage), context,
                                       "resp_prop", 1700000000)
    assert without_clock(check_events(synthesized)) == without_clock(expected)


# ---- namespaces: Codex declares its multi-agent tools in one (its fallback metadata) -------------

NAMESPACE = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents",
             "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}},
                       {"type": "custom", "name": "note"}]}


def test_a_namespace_declares_its_tools_to_chat_under_joined_names():
    chat, context = to_chat({"model": "m", "input": "x", "tools": [{"type": "function", "name": "exec"}, NAMESPACE]})
    assert [tool["function"]["name"] for tool in chat["tools"]] == ["exec", "multi_agent_v1__spawn_agent",
                                                                     "multi_agent_v1__note"]
    assert context.custom_tool_names == frozenset({"multi_agent_v1__note"})
    assert context.tools[1]["type"] == "namespace" and [t["name"] for t in context.tools[1]["tools"]] == [
        "spawn_agent", "note"]
    valid_response(from_chat(completion({"content": "ok"}), context, "resp_n", 1))  # the tools echo as OpenAI types them


def test_calls_into_a_namespace_come_back_with_it_split_off():
    _, context = to_chat({"model": "m", "input": "x", "tools": [NAMESPACE]})
    message = {"content": None, "tool_calls": [
        {"id": "call_s", "type": "function", "function": {"name": "multi_agent_v1__spawn_agent", "arguments": "{}"}},
        {"id": "call_n", "type": "function", "function": {"name": "multi_agent_v1__note", "arguments": "{\"input\":\"hi\"}"}}]}
    response = from_chat(completion(message, "tool_calls"), context, "resp_n", 1)
    valid_response(response)
    spawn, note = response["output"]
    assert (spawn["type"], spawn["name"], spawn["namespace"]) == ("function_call", "spawn_agent", "multi_agent_v1")
    assert (note["type"], note["name"], note["namespace"], note["input"]) == ("custom_tool_call", "note",
                                                                             "multi_agent_v1", "hi")
    events, _, _ = run_stream([chunk({"tool_calls": [{"index": 0, "id": "call_s", "type": "function", "function": {
        "name": "multi_agent_v1__spawn_agent", "arguments": "{}"}}]}), chunk(finish="tool_calls"), done_event()],
        context)
    check_events(events)
    streamed = final_of(events)["output"][0]
    assert (streamed["name"], streamed["namespace"]) == ("spawn_agent", "multi_agent_v1")


def test_a_namespaced_call_in_the_history_reaches_chat_under_its_joined_name():
    chat, _ = to_chat({"model": "m", "tools": [NAMESPACE], "input": [
        {"type": "function_call", "call_id": "c1", "name": "spawn_agent", "namespace": "multi_agent_v1",
         "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "spawned"}]})
    assert chat["messages"][0]["tool_calls"][0]["function"]["name"] == "multi_agent_v1__spawn_agent"


@pytest.mark.parametrize("tools, param", [
    ([{"type": "namespace", "name": "n"}], "tools[0].tools"),
    ([{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}], "tools[0].tools[0].type"),
    ([{"type": "namespace", "tools": []}], "tools[0].name"),
])
def test_a_malformed_namespace_names_its_param(tools, param):
    bad({"model": "m", "input": "x", "tools": tools}, param)
