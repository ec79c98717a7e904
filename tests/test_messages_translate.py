"""The Anthropic Messages inbound translation for non-Anthropic upstreams (proxy/inbound/messages):
Messages request -> chat pivot, chat answer/stream -> Message/Messages events, Anthropic errors.

Every produced Message and stream event is checked against the official `anthropic` SDK's
types, and streams are read back through the SDK's own client and accumulator."""
from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import ErrorResponse, Message, RawMessageStreamEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from proxy.core.errors import (AuthenticationFailed, InvalidRequest, NotFound, ProxyError, RateLimited, RequestTooLarge,
                               ServiceUnavailable, UpstreamAuthError, UpstreamError, UpstreamHTTPError,
                               UpstreamProtocolError, UpstreamTimeout)
from proxy.inbound.messages import (ChatToMessagesStream, MessagesContext, completion_to_events, envelope, error_event,
                                    estimate_input_tokens, from_chat, to_chat)
from proxy.inbound.messages.answer import RAW_ARGUMENTS_KEY
from proxy.inbound.messages.content import TOOL_ERROR_PREFIX, TOOL_IMAGES_MOVED
from proxy.inbound.messages.count import IMAGE_TOKENS, text_tokens
from proxy.inbound.messages.events import StreamTranslator
from proxy.inbound.messages.request import level_for_budget
from proxy.streams.sse import SSEEvent, SSEParser, done_event

pytestmark = pytest.mark.timeout(300)
EVENT = TypeAdapter(RawMessageStreamEvent)
USER = [{"role": "user", "content": "hi"}]
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 256, "messages": USER, **fields}


def chat(**fields: Any) -> dict[str, Any]:
    return to_chat(body(**fields))[0]


def refused(request: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        to_chat(request)
    assert caught.value.status == 400
    return caught.value


def context(**fields: Any) -> MessagesContext:
    return MessagesContext(**{"model": "claude-x", "max_tokens": 256, "estimated_input_tokens": 42, **fields})


# ==== request ==================================================================================

class TestRequestBasics:
    def test_minimal(self):
        out, ctx = to_chat(body())
        assert out == {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 256}
        assert ctx == MessagesContext(model="claude-x", max_tokens=256, stop_sequences=(), thinking=False,
                                      stream=False, estimated_input_tokens=estimate_input_tokens(body()))
        assert ctx.estimated_input_tokens > 0

    def test_context_is_frozen_and_slotted(self):
        ctx = to_chat(body())[1]
        with pytest.raises(AttributeError):
            ctx.model = "other"  # type: ignore[misc]
        assert not hasattr(ctx, "__dict__")

    def test_input_is_not_mutated(self):
        request = body(system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
                       tools=[{"name": "f", "input_schema": {"type": "object"},
                               "cache_control": {"type": "ephemeral"}}])
        before = json.dumps(request, sort_keys=True)
        to_chat(request)
        assert json.dumps(request, sort_keys=True) == before

    def test_system_string(self):
        assert chat(system="be brief")["messages"][0] == {"role": "system", "content": "be brief"}

    def test_system_blocks_without_cache_control_are_joined(self):
        out = chat(system=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
        assert out["messages"][0] == {"role": "system", "content": "a\n\nb"}

    def test_system_cache_control_is_kept_on_the_part(self):
        out = chat(system=[{"type": "text", "text": "a"},
                           {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
        assert out["messages"][0] == {"role": "system", "content": [
            {"type": "text", "text": "a"},
            {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}

    def test_inline_system_turn(self):
        out = chat(messages=[{"role": "system", "content": "x"}, *USER])
        assert out["messages"][0] == {"role": "system", "content": "x"}

    @pytest.mark.parametrize("request_, param", [
        ({"max_tokens": 5, "messages": USER}, "model"),
        ({"model": "", "max_tokens": 5, "messages": USER}, "model"),
        ({"model": 3, "max_tokens": 5, "messages": USER}, "model"),
        ({"model": "m", "messages": USER}, "max_tokens"),
        ({"model": "m", "max_tokens": 0, "messages": USER}, "max_tokens"),
        ({"model": "m", "max_tokens": True, "messages": USER}, "max_tokens"),
        ({"model": "m", "max_tokens": "5", "messages": USER}, "max_tokens"),
        ({"model": "m", "max_tokens": 5.0, "messages": USER}, "max_tokens"),
        ({"model": "m", "max_tokens": 5}, "messages"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": 5, "messages": {"role": "user"}}, "messages"),
        ({"model": "m", "max_tokens": 5, "messages": ["hi"]}, "messages[0]"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({**body(), "system": 5}, "system"),
        ({**body(), "system": ["text"]}, "system[0].type"),
        ({**body(), "system": [{"type": "image", "source": PNG}]}, "system[0].type"),
        ({**body(), "system": [{"type": "text"}]}, "system[0].text"),
        ({**body(), "container": "c_1"}, "container"),
        ({**body(), "mcp_servers": []}, "mcp_servers"),
    ])
    def test_required_fields_and_shapes(self, request_, param):
        assert refused(request_).param == param

    def test_body_must_be_an_object(self):
        with pytest.raises(InvalidRequest):
            to_chat(["not", "a", "body"])


class TestUserContent:
    def test_text_blocks_keep_cache_control(self):
        out = chat(messages=[{"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}]}])
        assert out["messages"] == [{"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}]}]

    def test_single_plain_text_block_becomes_a_string(self):
        out = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}]}])
        assert out["messages"] == [{"role": "user", "content": "a"}]

    def test_empty_text_blocks_are_dropped(self):
        out = chat(messages=[{"role": "user", "content": [{"type": "text", "text": ""},
                                                          {"type": "text", "text": "a"}]}])
        assert out["messages"] == [{"role": "user", "content": "a"}]

    def test_empty_content_keeps_its_turn(self):
        assert chat(messages=[{"role": "user", "content": []}])["messages"] == [{"role": "user", "content": ""}]

    def test_base64_image_becomes_a_data_url(self):
        out = chat(messages=[{"role": "user", "content": [{"type": "image", "source": PNG},
                                                          {"type": "text", "text": "?"}]}])
        assert out["messages"][0]["content"] == [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "text", "text": "?"}]

    def test_url_image(self):
        out = chat(messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}]}])
        assert out["messages"][0]["content"] == [{"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}}]

    @pytest.mark.parametrize("source, param", [
        ({"type": "base64", "media_type": "image/bmp", "data": "AA"}, "source.media_type"),
        ({"type": "base64", "data": "AA"}, "source.media_type"),
        ({"type": "base64", "media_type": ["image/png"], "data": "AA"}, "source.media_type"),
        ({"type": ["base64"], "media_type": "image/png", "data": "AA"}, "source.type"),
        ({"type": "base64", "media_type": "image/png"}, "source.data"),
        ({"type": "base64", "media_type": "image/png", "data": ""}, "source.data"),
        ({"type": "url", "url": "ftp://x"}, "source.url"),
        ({"type": "url"}, "source.url"),
        ({"type": "file", "file_id": "file_1"}, "source.type"),
        ({"type": "weird"}, "source.type"),
        ("data:image/png;base64,AA", "source"),
    ])
    def test_bad_images(self, source, param):
        error = refused(body(messages=[{"role": "user", "content": [
            {"type": "text", "text": "look"}, {"type": "image", "source": source}]}]))
        assert error.param == f"messages[0].content[1].{param}"

    def test_document_is_refused_with_the_reason(self):
        error = refused(body(messages=[{"role": "user", "content": [
            {"type": "text", "text": "read"},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}]}]))
        assert error.param == "messages[0].content[1].type"
        assert "document" in error.message and "Anthropic upstream" in error.message

    @pytest.mark.parametrize("block", [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        {"type": "search_result", "source": "s", "title": "t", "content": []},
        {"type": "made_up_block"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        {"type": "thinking", "thinking": "x", "signature": "s"},
    ])
    def test_blocks_a_user_turn_cannot_carry(self, block):
        error = refused(body(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}, block]}]))
        assert error.param == "messages[0].content[1].type"
        assert block["type"] in error.message

    @pytest.mark.parametrize("block", ["text", {"text": "x"}, {"type": 5}])
    def test_block_without_a_type(self, block):
        assert refused(body(messages=[{"role": "user", "content": [block]}])).param == "messages[0].content[0].type"

    def test_text_must_be_a_string(self):
        error = refused(body(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]))
        assert error.param == "messages[0].content[0].text"

    def test_cache_control_must_be_an_object(self):
        error = refused(body(messages=[{"role": "user", "content": [
            {"type": "text", "text": "a", "cache_control": "x"}]}]))
        assert error.param == "messages[0].content[0].cache_control"


class TestToolTurns:
    CALL = {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}]}

    def test_tool_use_becomes_tool_calls(self):
        out = chat(messages=[*USER, self.CALL])
        assert out["messages"][1] == {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}

    def test_tool_use_only_has_null_content(self):
        out = chat(messages=[*USER, {"role": "assistant", "content": [self.CALL["content"][1]]}])
        assert out["messages"][1]["content"] is None

    def test_tool_results_come_before_the_rest_of_the_user_turn(self):
        out = chat(messages=[*USER, self.CALL, {"role": "user", "content": [
            {"type": "text", "text": "and also"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [
                {"type": "text", "text": "12:00"}, {"type": "text", "text": "UTC"}]}]}])
        assert out["messages"][2:] == [
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "12:00\nUTC"},
            {"role": "user", "content": "and also"}]

    def test_tool_result_without_content(self):
        out = chat(messages=[*USER, self.CALL, {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1"}, {"type": "tool_result", "tool_use_id": "call_2",
                                                                "content": []}]}])
        assert [m["content"] for m in out["messages"][2:]] == ["", ""]

    def test_error_results_are_marked(self):
        out = chat(messages=[*USER, self.CALL, {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "city unknown", "is_error": True},
            {"type": "tool_result", "tool_use_id": "call_2", "is_error": True}]}])
        assert out["messages"][2]["content"] == TOOL_ERROR_PREFIX + "city unknown"
        assert out["messages"][3]["content"].startswith("Error")

    def test_images_in_results_move_to_a_following_user_message(self):
        out = chat(messages=[*USER, self.CALL, {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "image", "source": PNG}]},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [
                {"type": "text", "text": "see"}, {"type": "image", "source": PNG}]},
            {"type": "text", "text": "what now?"}]}])
        tool_1, tool_2, user = out["messages"][2:]
        assert tool_1 == {"role": "tool", "tool_call_id": "toolu_1", "content": TOOL_IMAGES_MOVED}
        assert tool_2["content"] == "see\n" + TOOL_IMAGES_MOVED
        url = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        assert user == {"role": "user", "content": [
            {"type": "text", "text": "Image output of tool call toolu_1:"}, url,
            {"type": "text", "text": "Image output of tool call call_2:"}, url,
            {"type": "text", "text": "what now?"}]}

    def test_cache_control_on_a_result_is_kept_as_a_text_part(self):
        out = chat(messages=[*USER, self.CALL, {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C", "cache_control": {"type": "ephemeral"}},
            {"type": "tool_result", "tool_use_id": "call_2",
             "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}]}])
        for message, text in zip(out["messages"][2:], ("18C", "x")):
            assert message["content"] == [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]

    @pytest.mark.parametrize("block, param", [
        ({"type": "tool_result"}, "messages[2].content[0].tool_use_id"),
        ({"type": "tool_result", "tool_use_id": ""}, "messages[2].content[0].tool_use_id"),
        ({"type": "tool_result", "tool_use_id": "t", "content": 5}, "messages[2].content[0].content"),
        ({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document", "source": {}}]},
         "messages[2].content[0].content[0].type"),
        ({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "search_result"}]},
         "messages[2].content[0].content[0].type"),
        ({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "url"}}]},
         "messages[2].content[0].content[0].source.url"),
    ])
    def test_bad_tool_results(self, block, param):
        assert refused(body(messages=[*USER, self.CALL, {"role": "user", "content": [block]}])).param == param

    @pytest.mark.parametrize("block, param", [
        ({"type": "tool_use", "name": "f", "input": {}}, "messages[1].content[0].id"),
        ({"type": "tool_use", "id": "t", "input": {}}, "messages[1].content[0].name"),
        ({"type": "tool_use", "id": "t", "name": "f", "input": [1]}, "messages[1].content[0].input"),
        ({"type": "image", "source": PNG}, "messages[1].content[0].type"),
        ({"type": "tool_result", "tool_use_id": "t"}, "messages[1].content[0].type"),
        ({"type": "document", "source": {}}, "messages[1].content[0].type"),
        ({"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}, "messages[1].content[0].type"),
        ({"type": "thinking", "thinking": "x"}, "messages[1].content[0].signature"),
        ({"type": "thinking", "signature": "s"}, "messages[1].content[0].thinking"),
        ({"type": "redacted_thinking"}, "messages[1].content[0].data"),
    ])
    def test_bad_assistant_blocks(self, block, param):
        assert refused(body(messages=[*USER, {"role": "assistant", "content": [block]}])).param == param


class TestAssistantThinking:
    def test_thinking_blocks_and_reasoning_content(self):
        out = chat(messages=[*USER, {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "first ", "signature": "sig1"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "thinking", "thinking": "second", "signature": ""},
            {"type": "text", "text": "answer"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]}, USER[0]])
        assistant = out["messages"][1]
        assert assistant["thinking_blocks"] == [
            {"type": "thinking", "thinking": "first ", "signature": "sig1"},
            {"type": "redacted_thinking", "data": "opaque"}]  # the unsigned one: reasoning_content only
        assert assistant["reasoning_content"] == "first second"
        assert assistant["content"] == "answer" and assistant["tool_calls"][0]["function"]["name"] == "f"

    def test_unsigned_thinking_round_trips_as_reasoning_only(self):
        answer = from_chat(completion({"content": "4", "reasoning_content": "2+2"}), context(thinking=True))
        out = chat(messages=[*USER, {"role": "assistant", "content": answer["content"]}, USER[0]])
        assert out["messages"][1] == {"role": "assistant", "content": "4", "reasoning_content": "2+2"}

    def test_several_text_blocks(self):
        out = chat(messages=[*USER, {"role": "assistant", "content": [
            {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
        assert out["messages"][1] == {"role": "assistant", "content": "a\n\nb"}

    def test_assistant_string_content_is_a_prefill(self):
        assert chat(messages=[*USER, {"role": "assistant", "content": "The answer is"}])["messages"][1] == \
            {"role": "assistant", "content": "The answer is"}


class TestTools:
    def test_custom_tools_become_functions(self):
        out = chat(tools=[
            {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}},
             "cache_control": {"type": "ephemeral"}},
            {"type": "custom", "name": "b", "input_schema": {"type": "object"}, "strict": True}])
        assert out["tools"] == [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                              "parameters": {"type": "object", "properties": {}}}},
            {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}, "strict": True}}]

    @pytest.mark.parametrize("kind", ["web_search_20250305", "bash_20250124", "text_editor_20250728",
                                      "computer_20250124", "code_execution_20250825", "web_fetch_20250910",
                                      "memory_20250818"])
    def test_server_tools_are_refused(self, kind):
        error = refused(body(tools=[{"name": "f", "input_schema": {"type": "object"}},
                                    {"type": kind, "name": "x"}]))
        assert error.param == "tools[1].type" and kind in error.message

    @pytest.mark.parametrize("tools, param", [
        ({"name": "f"}, "tools"),
        (["f"], "tools[0]"),
        ([{"input_schema": {"type": "object"}}], "tools[0].name"),
        ([{"name": "", "input_schema": {"type": "object"}}], "tools[0].name"),
        ([{"name": "f"}], "tools[0].input_schema"),
        ([{"name": "f", "input_schema": "object"}], "tools[0].input_schema"),
        ([{"name": "f", "input_schema": {}, "description": 3}], "tools[0].description"),
    ])
    def test_bad_tools(self, tools, param):
        assert refused(body(tools=tools)).param == param

    TOOLS = [{"name": "f", "input_schema": {"type": "object"}}]

    @pytest.mark.parametrize("choice, expected", [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        ({"type": "tool", "name": "f"}, {"tool_choice": {"type": "function", "function": {"name": "f"}}}),
        ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
        ({"type": "any", "disable_parallel_tool_use": True}, {"tool_choice": "required", "parallel_tool_calls": False}),
        ({"type": "tool", "name": "f", "disable_parallel_tool_use": True},
         {"tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": False}),
        ({"type": "auto", "disable_parallel_tool_use": False}, {"tool_choice": "auto"}),
    ])
    def test_tool_choice(self, choice, expected):
        out = chat(tools=self.TOOLS, tool_choice=choice)
        assert {key: out[key] for key in ("tool_choice", "parallel_tool_calls") if key in out} == expected

    def test_tool_choice_without_tools_is_dropped(self):
        out = chat(tool_choice={"type": "auto", "disable_parallel_tool_use": True})
        assert "tool_choice" not in out and "parallel_tool_calls" not in out and "tools" not in out

    @pytest.mark.parametrize("choice, param", [
        ("auto", "tool_choice.type"),
        ({"type": "required"}, "tool_choice.type"),
        ({"type": "tool"}, "tool_choice.name"),
        ({"type": "tool", "name": "g"}, "tool_choice.name"),
        ({"type": "auto", "disable_parallel_tool_use": "yes"}, "tool_choice.disable_parallel_tool_use"),
    ])
    def test_bad_tool_choice(self, choice, param):
        assert refused(body(tools=self.TOOLS, tool_choice=choice)).param == param


class TestParameters:
    def test_sampling_stop_and_user(self):
        out, ctx = to_chat(body(temperature=0.3, top_p=0.9, top_k=40, stop_sequences=["END", "\n\nHuman:"],
                                metadata={"user_id": "u-1"}))
        assert (out["temperature"], out["top_p"], out["stop"], out["user"]) == (0.3, 0.9, ["END", "\n\nHuman:"], "u-1")
        assert "top_k" not in out
        assert ctx.stop_sequences == ("END", "\n\nHuman:")

    def test_stream(self):
        out, ctx = to_chat(body(stream=True))
        assert out["stream"] is True and out["stream_options"] == {"include_usage": True} and ctx.stream
        out, ctx = to_chat(body(stream=False))
        assert "stream" not in out and "stream_options" not in out and not ctx.stream

    def test_max_tokens_is_kept(self):
        out, ctx = to_chat(body(max_tokens=7))
        assert out["max_tokens"] == 7 and ctx.max_tokens == 7

    @pytest.mark.parametrize("fields, param", [
        ({"temperature": "hot"}, "temperature"), ({"temperature": 1.5}, "temperature"),
        ({"temperature": True}, "temperature"), ({"top_p": -0.1}, "top_p"), ({"top_k": -1}, "top_k"),
        ({"top_k": 1.5}, "top_k"), ({"stop_sequences": "END"}, "stop_sequences"),
        ({"stop_sequences": ["a", 3]}, "stop_sequences[1]"), ({"stop_sequences": ["a", ""]}, "stop_sequences[1]"),
        ({"metadata": "u"}, "metadata"), ({"metadata": {"user_id": 5}}, "metadata.user_id"),
        ({"stream": "yes"}, "stream"), ({"service_tier": "priority"}, "service_tier"),
        ({"service_tier": ["auto"]}, "service_tier"), ({"output_config": {"effort": ["low"]}}, "output_config.effort"),
        ({"thinking": {"type": ["enabled"]}}, "thinking.type"),
        ({"tool_choice": {"type": ["auto"]}}, "tool_choice.type"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": "a lot"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 0}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"), ({"thinking": "on"}, "thinking.type"),
        ({"output_config": "fast"}, "output_config"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format.type"),
        ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format.schema"),
    ])
    def test_bad_parameters(self, fields, param):
        assert refused(body(**fields)).param == param

    def test_unknown_and_anthropic_only_hints_are_dropped(self):
        out = chat(cache_control={"type": "ephemeral"}, context_management={"edits": []}, inference_geo="us",
                   speed="fast", top_k=5)
        assert set(out) == {"model", "messages", "max_tokens"}

    @pytest.mark.parametrize("tier, expected", [("auto", "auto"), ("standard_only", "default")])
    def test_service_tier(self, tier, expected):
        assert chat(service_tier=tier)["service_tier"] == expected

    def test_output_format(self):
        schema = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
        out = chat(output_config={"format": {"type": "json_schema", "schema": schema}})
        assert out["response_format"] == {"type": "json_schema",
                                          "json_schema": {"name": "response", "schema": schema, "strict": True}}


class TestThinking:
    @pytest.mark.parametrize("budget, level", [(1, "minimal"), (1024, "minimal"), (1025, "low"), (2048, "low"),
                                               (4000, "medium"), (8192, "medium"), (10000, "high"),
                                               (16384, "high"), (31999, "xhigh"), (200000, "xhigh")])
    def test_budget_bands(self, budget, level):
        out, ctx = to_chat(body(thinking={"type": "enabled", "budget_tokens": budget}))
        assert out["reasoning_effort"] == level and ctx.thinking

    def test_configured_budget_table(self):
        budgets = {"minimal": 10, "low": 20, "medium": 30, "high": 40, "xhigh": 50}
        out, _ = to_chat(body(thinking={"type": "enabled", "budget_tokens": 25}), budgets=budgets)
        assert out["reasoning_effort"] == "medium"
        assert level_for_budget(25, budgets) == "medium"

    @pytest.mark.parametrize("effort, expected", [("low", "low"), ("medium", "medium"), ("high", "high"),
                                                  ("xhigh", "xhigh"), ("max", "xhigh")])
    def test_adaptive_takes_the_output_config_effort(self, effort, expected):
        out, ctx = to_chat(body(thinking={"type": "adaptive", "display": "summarized"},
                                output_config={"effort": effort}))
        assert out["reasoning_effort"] == expected and ctx.thinking

    def test_adaptive_without_effort_leaves_the_models_default(self):
        out, ctx = to_chat(body(thinking={"type": "adaptive"}))
        assert "reasoning_effort" not in out and ctx.thinking

    def test_disabled(self):
        out, ctx = to_chat(body(thinking={"type": "disabled"}, output_config={"effort": "high"}))
        assert out["reasoning_effort"] == "none" and not ctx.thinking

    def test_effort_alone(self):
        out, ctx = to_chat(body(output_config={"effort": "low"}))
        assert out["reasoning_effort"] == "low" and not ctx.thinking

    def test_no_thinking(self):
        out, ctx = to_chat(body())
        assert "reasoning_effort" not in out and not ctx.thinking


# ---- no body makes the translator fail with anything but InvalidRequest ----------------------------

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False),
                      st.sampled_from(["", "user", "assistant", "text", "image", "tool_use", "tool_result",
                                       "thinking", "base64", "url", "image/png", "auto", "tool", "enabled"]))
JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["type", "role", "content", "text", "source", "media_type", "data", "url",
                                     "id", "name", "input", "tool_use_id", "is_error", "signature", "thinking",
                                     "cache_control", "budget_tokens", "effort", "format", "schema"]),
                    inner, max_size=4)), max_leaves=20)
BLOCK = st.fixed_dictionaries({"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking",
                                                         "redacted_thinking", "document", "x"])},
                              optional={"text": JSON, "source": JSON, "id": JSON, "name": JSON, "input": JSON,
                                        "tool_use_id": JSON, "content": JSON, "is_error": JSON,
                                        "thinking": JSON, "signature": JSON, "data": JSON})
FUZZ_BODY = st.fixed_dictionaries(
    {"model": st.one_of(st.just("m"), JSON), "max_tokens": st.one_of(st.just(10), JSON),
     "messages": st.one_of(st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "x"]),
                                                           "content": st.one_of(st.text(max_size=3),
                                                                                st.lists(BLOCK, max_size=3), JSON)}),
                                    min_size=1, max_size=3), JSON)},
    optional={name: JSON for name in ("system", "tools", "tool_choice", "thinking", "output_config", "metadata",
                                      "stop_sequences", "temperature", "stream", "service_tier")})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FUZZ_BODY)
def test_any_body_translates_or_is_refused_with_a_param(request_):
    try:
        out, ctx = to_chat(request_)
    except InvalidRequest as error:
        assert error.status == 400 and isinstance(error.message, str)
        return
    assert out["messages"] and ctx.estimated_input_tokens >= 1
    json.dumps(out)
    assert estimate_input_tokens(request_) >= 1


# ==== count ====================================================================================

class TestCount:
    def test_grows_with_text(self):
        short = estimate_input_tokens(body())
        long = estimate_input_tokens(body(messages=[{"role": "user", "content": "word " * 700}]))
        assert long - short == pytest.approx(3500 / 3.5, abs=3)

    def test_non_ascii_counts_a_token_a_character(self):
        assert text_tokens("猫" * 100) == 100
        assert text_tokens("a" * 35) == 10 and text_tokens("") == 0

    def test_every_part_counts(self):
        base = estimate_input_tokens(body())
        assert estimate_input_tokens(body(system="You are helpful.")) > base
        image = body(messages=[{"role": "user", "content": [{"type": "image", "source": PNG}]}])
        assert estimate_input_tokens(image) >= IMAGE_TOKENS
        tools = body(tools=[{"name": "get_weather", "description": "Weather for a city",
                             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
        assert estimate_input_tokens(tools) > base + 12
        tool_turns = body(messages=[*USER, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t", "name": "f", "input": {"query": "x" * 350}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "y" * 350}]}])
        assert estimate_input_tokens(tool_turns) > base + 200

    @given(JSON)
    def test_never_raises(self, value):
        assert estimate_input_tokens(value) >= 1
        assert estimate_input_tokens({"messages": [value], "system": value, "tools": [value]}) >= 1


# ==== answer ===================================================================================

def completion(message: dict[str, Any], finish: str | None = "stop", usage: Any = "default", **choice: Any):
    out: dict[str, Any] = {"id": "chatcmpl-abc123", "object": "chat.completion", "created": 1, "model": "gpt-x",
                           "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                        "finish_reason": finish, **choice}]}
    if usage == "default":
        usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                 "prompt_tokens_details": {"cached_tokens": 30}}
    if usage is not None:
        out["usage"] = usage
    return out


def valid_message(message: dict[str, Any]) -> Message:
    parsed = Message.model_validate(message)
    assert parsed.model_dump(mode="json", exclude_unset=True) == message
    return parsed


class TestAnswer:
    def test_text(self):
        message = from_chat(completion({"content": "Hello"}), context())
        valid_message(message)
        assert message == {"id": "msg_chatcmpl-abc123", "type": "message", "role": "assistant", "model": "claude-x",
                           "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
                           "stop_sequence": None,
                           "usage": {"input_tokens": 70, "cache_creation_input_tokens": 0,
                                     "cache_read_input_tokens": 30, "output_tokens": 20}}

    def test_usage_with_cache_writes_and_reasoning(self):
        usage = {"prompt_tokens": 100, "completion_tokens": 20,
                 "prompt_tokens_details": {"cached_tokens": 30, "cache_creation_tokens": 50},
                 "completion_tokens_details": {"reasoning_tokens": 12}}
        message = from_chat(completion({"content": "x"}, usage=usage), context())
        valid_message(message)
        assert message["usage"] == {"input_tokens": 20, "cache_creation_input_tokens": 50,
                                    "cache_read_input_tokens": 30, "output_tokens": 20,
                                    "output_tokens_details": {"thinking_tokens": 12}}

    @pytest.mark.parametrize("usage, cached, created", [
        ({"prompt_tokens": 10, "completion_tokens": 1, "prompt_cache_hit_tokens": 4}, 4, 0),
        ({"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"cache_write_tokens": 6}}, 0, 6),
        ({"prompt_tokens": 10, "completion_tokens": 1, "cache_creation_input_tokens": 3}, 0, 3),
    ])
    def test_provider_cache_fields(self, usage, cached, created):
        got = from_chat(completion({"content": "x"}, usage=usage), context())["usage"]
        assert (got["cache_read_input_tokens"], got["cache_creation_input_tokens"]) == (cached, created)
        assert got["input_tokens"] == 10 - cached - created

    def test_missing_usage_is_estimated(self):
        message = from_chat(completion({"content": "x" * 35}, usage=None), context())
        valid_message(message)
        assert message["usage"]["input_tokens"] == 42 and message["usage"]["output_tokens"] == 10

    def test_reasoning_becomes_an_unsigned_thinking_block_first(self):
        message = from_chat(completion({"content": "4", "reasoning_content": "2+2"}), context(thinking=True))
        valid_message(message)
        assert message["content"] == [{"type": "thinking", "thinking": "2+2", "signature": ""},
                                      {"type": "text", "text": "4"}]

    def test_reasoning_is_dropped_when_thinking_was_not_asked_for(self):
        signed = [{"type": "thinking", "thinking": "2+2", "signature": "s"}]
        message = from_chat(completion({"content": "4", "reasoning_content": "2+2", "thinking_blocks": signed}),
                            context())
        assert message["content"] == [{"type": "text", "text": "4"}]

    def test_signed_thinking_blocks_in_order(self):
        blocks = [{"type": "thinking", "thinking": "a", "signature": "s1"}, {"type": "redacted_thinking", "data": "d"},
                  {"type": "thinking", "thinking": "b", "signature": "s2"}, {"type": "other"}]
        message = from_chat(completion({"content": "x", "reasoning_content": "ab", "thinking_blocks": blocks}),
                            context(thinking=True))
        valid_message(message)
        assert message["content"][:3] == blocks[:3] and message["content"][3] == {"type": "text", "text": "x"}

    def test_signature_only_block_takes_the_reasoning_text(self):
        message = from_chat(completion({"content": "x", "reasoning_content": "why",
                                        "thinking_blocks": [{"type": "thinking", "signature": "s"}]}),
                            context(thinking=True))
        assert message["content"][0] == {"type": "thinking", "thinking": "why", "signature": "s"}

    def test_tool_calls(self):
        calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": [1, 2]}'}},
                 {"id": "toolu_2", "type": "function", "function": {"name": "g", "arguments": ""}},
                 {"id": "call_3", "type": "function", "function": {"name": "h", "arguments": "{not json"}},
                 {"id": "call_4", "type": "function", "function": {"name": "k", "arguments": "[1]"}},
                 {"type": "function", "function": {"name": "m", "arguments": "{}"}}]
        message = from_chat(completion({"content": None, "tool_calls": calls}, finish="tool_calls"), context())
        valid_message(message)
        uses = message["content"]
        assert [u["type"] for u in uses] == ["tool_use"] * 5 and message["stop_reason"] == "tool_use"
        assert [u["id"] for u in uses[:4]] == ["call_1", "toolu_2", "call_3", "call_4"]
        assert uses[4]["id"].startswith("toolu_")
        assert [u["input"] for u in uses[:4]] == [{"a": [1, 2]}, {}, {RAW_ARGUMENTS_KEY: "{not json"},
                                                  {RAW_ARGUMENTS_KEY: "[1]"}]

    @pytest.mark.parametrize("finish, tools, expected", [
        ("stop", False, "end_turn"), ("length", False, "max_tokens"), ("tool_calls", True, "tool_use"),
        ("function_call", True, "tool_use"), ("content_filter", False, "refusal"), (None, False, "end_turn"),
        ("eos", False, "end_turn"), ("stop", True, "tool_use"), ("tool_calls", False, "end_turn"),
    ])
    def test_stop_reasons(self, finish, tools, expected):
        message = {"content": "x"}
        if tools:
            message["tool_calls"] = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
        got = from_chat(completion(message, finish=finish), context())
        valid_message(got)
        assert got["stop_reason"] == expected and got["stop_sequence"] is None

    @pytest.mark.parametrize("message, choice", [
        ({"content": "one two"}, {"stop_reason": "END"}),    # vLLM
        ({"content": "one two"}, {"matched_stop": "END"}),   # SGLang
        ({"content": "one two END"}, {}),                    # left in the text
    ])
    def test_stop_sequence(self, message, choice):
        got = from_chat(completion(message, **choice), context(stop_sequences=("STOP", "END")))
        valid_message(got)
        assert (got["stop_reason"], got["stop_sequence"]) == ("stop_sequence", "END")

    def test_unreported_stop_sequence_is_end_turn(self):
        got = from_chat(completion({"content": "one two"}, stop_reason=5), context(stop_sequences=("END",)))
        assert (got["stop_reason"], got["stop_sequence"]) == ("end_turn", None)

    def test_longest_matching_stop_sequence(self):
        got = from_chat(completion({"content": "a ### END"}), context(stop_sequences=("END", "### END")))
        assert got["stop_sequence"] == "### END"

    def test_refusal_and_text_parts(self):
        got = from_chat(completion({"content": None, "refusal": "I can't"}, finish="content_filter"), context())
        assert got["content"] == [{"type": "text", "text": "I can't"}] and got["stop_reason"] == "refusal"
        got = from_chat(completion({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
                        context())
        assert got["content"] == [{"type": "text", "text": "ab"}]

    def test_empty_answer(self):
        got = from_chat(completion({"content": ""}), context())
        valid_message(got)
        assert got["content"] == []

    def test_ids(self):
        assert from_chat({**completion({"content": "x"}), "id": "msg_01AB"}, context())["id"] == "msg_01AB"
        assert from_chat({**completion({"content": "x"}), "id": None}, context())["id"].startswith("msg_")

    @pytest.mark.parametrize("bad", [None, [], {}, {"choices": []}, {"choices": ["x"]}])
    def test_no_choice_is_an_upstream_protocol_error(self, bad):
        with pytest.raises(UpstreamProtocolError):
            from_chat(bad, context(), upstream="up")


# ==== stream ===================================================================================

def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, Any] | None = None,
          no_choices: bool = False, **choice: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
                           "choices": [] if no_choices else
                           [{"index": 0, "delta": delta or {}, "finish_reason": finish, **choice}]}
    if usage is not None:
        out["usage"] = usage
    return out


USAGE = {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129,
         "prompt_tokens_details": {"cached_tokens": 100}}


def sse(chunks: list[Any], done: bool = True) -> list[SSEEvent]:
    events = [item if isinstance(item, SSEEvent) else SSEEvent.from_json(item) for item in chunks]
    return events + [done_event()] if done else events


class Inner:
    """An inner chat-event iterator that counts pulls and aclose() calls, and can fail."""

    def __init__(self, events: list[Any], fail: BaseException | None = None):
        self.events, self.fail, self.pulled, self.closed = list(events), fail, 0, 0

    def __aiter__(self):
        return self

    async def __anext__(self) -> SSEEvent:
        if not self.events:
            if self.fail is not None:
                raise self.fail
            raise StopAsyncIteration
        self.pulled += 1
        return self.events.pop(0)

    async def aclose(self) -> None:
        self.closed += 1


async def run(chunks: list[Any], ctx: MessagesContext, done: bool = True, whole: bool = False) -> list[SSEEvent]:
    stream = ChatToMessagesStream(Inner(sse(chunks, done)), ctx, upstream="up", whole_tool_inputs=whole)
    return [event async for event in stream]


def payloads(events: list[SSEEvent]) -> list[dict[str, Any]]:
    return [event.json() for event in events]


def check_well_formed(events: list[dict[str, Any]]) -> None:
    """Anthropic's event grammar, each event validated by the SDK's own types."""
    types = [event["type"] for event in events]
    assert types[:2] == ["message_start", "ping"]
    assert types[-2:] == ["message_delta", "message_stop"]
    assert types.count("message_start") == types.count("message_delta") == types.count("message_stop") == 1
    assert events[0]["message"]["usage"]["input_tokens"] >= 1
    open_index, open_type, next_index = None, None, 0
    allowed = {"text": {"text_delta"}, "thinking": {"thinking_delta", "signature_delta"},
               "tool_use": {"input_json_delta"}, "redacted_thinking": set()}
    for event in events:
        if event["type"] != "ping":
            EVENT.validate_python(event)
        if event["type"] == "content_block_start":
            assert open_index is None and event["index"] == next_index
            open_index, open_type = event["index"], event["content_block"]["type"]
        elif event["type"] == "content_block_delta":
            assert event["index"] == open_index and event["delta"]["type"] in allowed[open_type]
        elif event["type"] == "content_block_stop":
            assert event["index"] == open_index
            open_index, next_index = None, next_index + 1
        elif event["type"] in ("message_delta", "message_stop"):
            assert open_index is None
    assert types.count("content_block_start") == types.count("content_block_stop") == next_index


def named_events(events: list[SSEEvent]) -> None:
    for event in events:
        assert event.event == event.json()["type"]
        assert event.raw.startswith(f"event: {event.event}\ndata: ".encode()) and event.raw.endswith(b"\n\n")


def accumulate(events: list[dict[str, Any]]) -> Message:
    """The SDK's own accumulator (MessageStream uses it) over the events."""
    snapshot = None
    extra = {"json_bufs": {}} if "json_bufs" in inspect.signature(accumulate_event).parameters else {}
    for event in events:
        if event["type"] != "ping":
            snapshot = accumulate_event(event=EVENT.validate_python(event), current_snapshot=snapshot, **extra)
    return snapshot


class TestStream:
    async def test_text_stream_order_and_usage(self):
        ctx = context(estimated_input_tokens=57)
        events = await run([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
                            chunk({"content": "lo"}), chunk(finish="stop"), chunk(no_choices=True, usage=USAGE)], ctx)
        named_events(events)
        got = payloads(events)
        check_well_formed(got)
        assert [e["type"] for e in got] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                            "content_block_delta", "content_block_stop", "message_delta",
                                            "message_stop"]
        start = got[0]["message"]
        assert start["usage"]["input_tokens"] == 57 and start["usage"]["output_tokens"] == 1
        assert (start["id"], start["model"], start["content"], start["stop_reason"]) == \
            ("msg_chatcmpl-s1", "claude-x", [], None)
        assert got[-2] == {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"input_tokens": 20, "cache_creation_input_tokens": 0,
                                     "cache_read_input_tokens": 100, "output_tokens": 9}}
        final = accumulate(got)
        assert final.content[0].text == "Hello" and final.usage.input_tokens == 20
        assert final.usage.cache_read_input_tokens == 100 and final.usage.output_tokens == 9

    async def test_message_delta_waits_for_the_usage_chunk(self):
        translator = StreamTranslator(context())
        translator.feed(chunk({"content": "a"}))
        after_finish = translator.feed(chunk(finish="stop"))
        assert [e["type"] for e in after_finish] == ["content_block_stop"]
        end = translator.feed(chunk(no_choices=True, usage=USAGE))
        assert [e["type"] for e in end] == ["message_delta", "message_stop"]
        assert end[0]["usage"]["output_tokens"] == 9
        assert translator.feed(chunk({"content": "late"})) == [] and translator.done() == []

    async def test_usage_in_the_finish_chunk(self):
        got = payloads(await run([chunk({"content": "a"}), chunk(finish="length", usage=USAGE)], context()))
        check_well_formed(got)
        assert got[-2]["delta"]["stop_reason"] == "max_tokens" and got[-2]["usage"]["output_tokens"] == 9

    async def test_running_usage_before_the_finish_is_kept_until_a_total(self):
        running = {"prompt_tokens": 120, "completion_tokens": 1}
        got = payloads(await run([chunk({"content": "a"}, usage=running), chunk({"content": "b"}, usage=running),
                                  chunk(finish="stop"), chunk(no_choices=True, usage=USAGE)], context()))
        check_well_formed(got)
        assert got[-2]["usage"]["output_tokens"] == 9

    async def test_done_without_usage(self):
        got = payloads(await run([chunk({"content": "x" * 35}), chunk(finish="stop")], context()))
        check_well_formed(got)
        assert got[-2]["usage"] == {"output_tokens": 10}
        final = accumulate(got)
        assert final.usage.input_tokens == 42  # the estimate from message_start stands

    async def test_thinking_before_text_with_signature_and_redacted(self):
        ctx = context(thinking=True)
        got = payloads(await run([
            chunk({"role": "assistant", "reasoning_content": "Let me "}), chunk({"reasoning_content": "think."}),
            chunk({"thinking_blocks": [{"type": "thinking", "thinking": "Let me think.", "signature": "SIG"}]}),
            chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": "ENC"}]}),
            chunk({"content": "Answer"}), chunk(finish="stop"), chunk(no_choices=True, usage=USAGE)], ctx))
        check_well_formed(got)
        starts = [e["content_block"] for e in got if e["type"] == "content_block_start"]
        assert starts == [{"type": "thinking", "thinking": "", "signature": ""},
                          {"type": "redacted_thinking", "data": "ENC"}, {"type": "text", "text": ""}]
        final = accumulate(got)
        assert [b.type for b in final.content] == ["thinking", "redacted_thinking", "text"]
        assert (final.content[0].thinking, final.content[0].signature) == ("Let me think.", "SIG")

    async def test_whole_signed_block_without_streamed_reasoning(self):
        got = payloads(await run([chunk({"thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
                                         "content": "x"}), chunk(finish="stop")], context(thinking=True)))
        check_well_formed(got)
        final = accumulate(got)
        assert (final.content[0].thinking, final.content[0].signature, final.content[1].text) == ("t", "s", "x")

    async def test_reasoning_then_text_in_one_delta(self):
        got = payloads(await run([chunk({"reasoning_content": "r", "content": "t"}), chunk(finish="stop")],
                                 context(thinking=True)))
        check_well_formed(got)
        assert [b.type for b in accumulate(got).content] == ["thinking", "text"]

    async def test_reasoning_dropped_when_not_asked_for(self):
        got = payloads(await run([chunk({"reasoning_content": "r"}),
                                  chunk({"thinking_blocks": [{"type": "thinking", "thinking": "r", "signature": "s"}]}),
                                  chunk({"content": "t"}), chunk(finish="stop")], context()))
        check_well_formed(got)
        assert [b.type for b in accumulate(got).content] == ["text"]

    async def test_parallel_tools_each_their_own_block(self):
        got = payloads(await run([
            chunk({"content": "Checking both."}),
            chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                   "function": {"name": "weather", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                   "function": {"name": "time", "arguments": '{"tz": "CET"}'}}]}),
            chunk(finish="tool_calls"), chunk(no_choices=True, usage=USAGE)], context()))
        check_well_formed(got)
        starts = [(e["index"], e["content_block"]) for e in got if e["type"] == "content_block_start"]
        assert starts == [(0, {"type": "text", "text": ""}),
                          (1, {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}),
                          (2, {"type": "tool_use", "id": "call_b", "name": "time", "input": {}})]
        final = accumulate(got)
        assert [b.input for b in final.content[1:]] == [{"city": "Paris"}, {"tz": "CET"}]
        assert final.stop_reason == "tool_use"

    async def test_interleaved_tool_deltas_are_held_until_the_first_closes(self):
        got = payloads(await run([
            chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x": "'}},
                                  {"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"y": '}}]}),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": "2}"}},
                                  {"index": 0, "function": {"arguments": 'a}\\"{"'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
            chunk(finish="tool_calls")], context()))
        check_well_formed(got)
        final = accumulate(got)
        assert [(b.id, b.input) for b in final.content] == [("a", {"x": 'a}"{'}), ("b", {"y": 2})]

    async def test_held_tool_is_sent_at_the_finish(self):
        got = payloads(await run([
            chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
            chunk({"tool_calls": [{"index": 2, "id": "c", "function": {"name": "h"}}]}),
            chunk(finish="tool_calls")], context()))
        check_well_formed(got)
        assert [(b.name, b.input) for b in accumulate(got).content] == [("f", {}), ("g", {}), ("h", {})]

    async def test_whole_tool_inputs_repairs_invalid_arguments(self):
        got = payloads(await run([
            chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x": '}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "oops}"}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"y": [1, '}}]}),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": "2]}"}}]}),
            chunk({"tool_calls": [{"index": 2, "id": "c", "function": {"name": "h", "arguments": '{"z": "cut'}}]}),
            chunk(finish="tool_calls")], context(), whole=True))
        check_well_formed(got)
        deltas = [e["delta"]["partial_json"] for e in got if e["type"] == "content_block_delta"]
        assert len(deltas) == 3  # one delta a call
        final = accumulate(got)
        assert [b.input for b in final.content] == [{RAW_ARGUMENTS_KEY: '{"x": oops}'}, {"y": [1, 2]},
                                                    {RAW_ARGUMENTS_KEY: '{"z": "cut'}]
        whole = completion({"content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": oops}'}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": '{"y": [1, 2]}'}},
            {"id": "c", "type": "function", "function": {"name": "h", "arguments": '{"z": "cut'}}]},
            finish="tool_calls")
        assert [b["input"] for b in from_chat(whole, context())["content"]] == [b.input for b in final.content]

    async def test_whole_tool_inputs_keeps_call_order_when_interleaved(self):
        got = payloads(await run([
            chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x": '}},
                                  {"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
            chunk({"content": "meanwhile"}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            chunk(finish="tool_calls")], context(), whole=True))
        check_well_formed(got)
        final = accumulate(got)
        assert [(b.type, getattr(b, "id", None)) for b in final.content] == [("text", None), ("tool_use", "a"),
                                                                            ("tool_use", "b")]
        assert [b.input for b in final.content[1:]] == [{"x": 1}, {}]

    async def test_tool_deltas_without_index(self):
        got = payloads(await run([
            chunk({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": '{"x": '}}]}),
            chunk({"tool_calls": [{"function": {"arguments": "1}"}}]}),
            chunk({"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
            chunk({"tool_calls": [{"index": [0], "function": {"arguments": ""}}]}),
            chunk(finish="tool_calls")], context()))
        check_well_formed(got)
        assert [(b.id, b.input) for b in accumulate(got).content] == [("a", {"x": 1}), ("b", {})]

    async def test_whitespace_before_the_arguments_is_dropped(self):
        got = payloads(await run([
            chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": " "}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '\n {"x": '}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1 }"}}]}),
            chunk(finish="tool_calls")], context()))
        deltas = [e["delta"]["partial_json"] for e in got if e["type"] == "content_block_delta"]
        assert deltas == ['{"x": ', " 1 }"]
        assert accumulate(got).content[0].input == {"x": 1}

    async def test_tool_without_id_gets_one(self):
        got = payloads(await run([chunk({"tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}),
                                  chunk(finish="tool_calls")], context()))
        check_well_formed(got)
        assert accumulate(got).content[0].id.startswith("toolu_")

    @pytest.mark.parametrize("pieces", [["one two END"], ["one two E", "ND"], ["one two EN", "D"]])
    async def test_stop_sequence_from_the_text_tail(self, pieces):
        got = payloads(await run([chunk({"content": piece}) for piece in pieces] + [chunk(finish="stop")],
                                 context(stop_sequences=("END",))))
        assert got[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}

    async def test_stop_sequence_reported_by_the_upstream(self):
        got = payloads(await run([chunk({"content": "one"}), chunk(finish="stop", stop_reason="##")],
                                 context(stop_sequences=("##",))))
        assert got[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "##"}

    async def test_refusal_and_content_filter(self):
        got = payloads(await run([chunk({"refusal": "No."}), chunk(finish="content_filter")], context()))
        check_well_formed(got)
        assert accumulate(got).content[0].text == "No." and got[-2]["delta"]["stop_reason"] == "refusal"

    async def test_empty_answer(self):
        got = payloads(await run([chunk({"role": "assistant", "content": ""}), chunk(finish="stop")], context()))
        check_well_formed(got)
        assert accumulate(got).content == []

    async def test_only_done(self):
        got = payloads(await run([], context()))
        check_well_formed(got)

    async def test_comments_and_other_choices_are_ignored(self):
        other = {"id": "c", "choices": [{"index": 1, "delta": {"content": "B"}, "finish_reason": None}]}
        got = payloads(await run([SSEEvent(b": keep-alive\n\n"), other, chunk({"content": "A"}), chunk(finish="stop")],
                                 context()))
        check_well_formed(got)
        assert accumulate(got).content[0].text == "A"

    async def test_end_without_done_after_a_finish_is_complete(self):
        got = payloads(await run([chunk({"content": "a"}), chunk(finish="stop")], context(), done=False))
        check_well_formed(got)

    async def test_end_without_done_or_finish_is_a_protocol_error(self):
        inner = Inner(sse([chunk({"content": "a"})], done=False))
        stream = ChatToMessagesStream(inner, context(), upstream="up")
        seen = []
        with pytest.raises(UpstreamProtocolError):
            async for event in stream:
                seen.append(event.json()["type"])
        assert seen == ["message_start", "ping", "content_block_start", "content_block_delta"]
        assert inner.closed == 1
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()

    async def test_proxy_error_after_events_is_reraised(self):
        failure = UpstreamTimeout("up", "read timed out")
        inner = Inner(sse([chunk({"content": "a"})], done=False), fail=failure)
        stream = ChatToMessagesStream(inner, context())
        seen = []
        with pytest.raises(UpstreamTimeout) as caught:
            async for event in stream:
                seen.append(event.json()["type"])
        assert caught.value is failure and "content_block_delta" in seen and inner.closed == 1

    async def test_bad_chunks(self):
        for bad, error in ((SSEEvent(b"data: {not json\n\n"), UpstreamProtocolError),
                           (SSEEvent.from_json([1, 2]), UpstreamProtocolError),
                           (SSEEvent.from_json({"error": {"message": "boom"}}), UpstreamError)):
            with pytest.raises(error):
                await run([bad], context())

    async def test_aclose_closes_the_inner_once_even_unstarted(self):
        inner = Inner(sse([chunk({"content": "a"})]))
        stream = ChatToMessagesStream(inner, context())
        await stream.aclose()
        await stream.aclose()
        assert inner.closed == 1 and inner.pulled == 0
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()

    async def test_finished_stream_closes_the_inner_once(self):
        inner = Inner(sse([chunk({"content": "a"}), chunk(finish="stop")]))
        stream = ChatToMessagesStream(inner, context())
        _ = [event async for event in stream]
        await stream.aclose()
        assert inner.closed == 1

    async def test_inner_without_aclose(self):
        async def gen():
            for event in sse([chunk({"content": "a"}), chunk(finish="stop")]):
                yield event

        class Bare:
            def __init__(self):
                self.it = gen()

            def __aiter__(self):
                return self

            async def __anext__(self):
                return await self.it.__anext__()

        stream = ChatToMessagesStream(Bare(), context())
        check_well_formed(payloads([event async for event in stream]))
        await stream.aclose()

    async def test_events_are_yielded_as_chunks_arrive(self):
        inner = Inner(sse([chunk({"content": "a"}), chunk({"content": "b"}), chunk(finish="stop")]))
        stream = ChatToMessagesStream(inner, context())
        types = []
        async for event in stream:
            types.append(event.json()["type"])
            if types[-1] == "content_block_delta":
                break
        assert inner.pulled == 1
        await stream.aclose()


# ---- the SDK's own client reads what the proxy sends -----------------------------------------------

def sdk_client(status: int, content: bytes, headers: dict[str, str] | None = None) -> anthropic.AsyncAnthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, content=content, headers=headers or {})
    return anthropic.AsyncAnthropic(api_key="k", base_url="http://proxy.test", max_retries=0,
                                    http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))


async def sdk_final(events: list[SSEEvent]) -> Message:
    client = sdk_client(200, b"".join(e.raw for e in events), {"content-type": "text/event-stream"})
    async with client.messages.stream(model="claude-x", max_tokens=10, messages=USER) as stream:
        return await stream.get_final_message()


def comparable(message: Message | dict[str, Any]) -> dict[str, Any]:
    data = message if isinstance(message, dict) else message.model_dump(mode="json", exclude_none=True)
    return {key: data.get(key) for key in ("type", "role", "model", "content", "stop_reason", "stop_sequence")}


TOOL_ANSWER = {"content": "Sure.", "reasoning_content": "plan", "thinking_blocks": [
    {"type": "thinking", "thinking": "plan", "signature": "SIG"}], "tool_calls": [
    {"id": "call_1", "type": "function",
     "function": {"name": "f", "arguments": '{"q": "a \\"b\\"", "n": [1, {"m": null}]}'}},
    {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}


class TestThroughTheSdk:
    async def test_stream_accumulates_to_what_from_chat_returns(self):
        ctx = context(thinking=True, stop_sequences=("END",))
        whole = completion(TOOL_ANSWER, finish="tool_calls", usage=USAGE)
        calls = TOOL_ANSWER["tool_calls"]
        chunks = [chunk({"role": "assistant", "reasoning_content": "pl"}), chunk({"reasoning_content": "an"}),
                  chunk({"thinking_blocks": TOOL_ANSWER["thinking_blocks"]}), chunk({"content": "Sure."})]
        for index, call in enumerate(calls):
            arguments = call["function"]["arguments"]
            chunks.append(chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                                 "function": {"name": call["function"]["name"], "arguments": ""}}]}))
            chunks += [chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[i:i + 5]}}]})
                       for i in range(0, len(arguments), 5)]
        chunks += [chunk(finish="tool_calls"), chunk(no_choices=True, usage=USAGE)]
        streamed = await sdk_final(await run(chunks, ctx))
        expected = from_chat(whole, ctx)
        assert comparable(streamed) == comparable(expected)
        assert streamed.usage.model_dump(exclude_none=True) == expected["usage"]

    async def test_completion_to_events_accumulates_to_from_chat(self):
        ctx = context(thinking=True)
        for whole in (completion(TOOL_ANSWER, finish="tool_calls"),
                      completion({"content": "Hi", "reasoning_content": "r"}, usage=None),
                      completion({"content": "", "thinking_blocks": [{"type": "redacted_thinking", "data": "x"}]}),
                      completion({"content": "done ##"}, usage=USAGE)):
            events = completion_to_events(whole, context(thinking=True, stop_sequences=("##",)), upstream="up")
            named_events(events)
            check_well_formed(payloads(events))
            expected = from_chat(whole, context(thinking=True, stop_sequences=("##",)))
            streamed = await sdk_final(events)
            assert comparable(streamed) == comparable(expected)
            assert streamed.usage.model_dump(exclude_none=True) == expected["usage"]
        assert ctx.thinking

    async def test_non_streaming_message_parses(self):
        message = from_chat(completion(TOOL_ANSWER, finish="tool_calls"), context(thinking=True))
        client = sdk_client(200, json.dumps(message).encode(), {"content-type": "application/json"})
        parsed = await client.messages.create(model="claude-x", max_tokens=10, messages=USER)
        assert comparable(parsed) == comparable(message)

    async def test_sse_bytes_reparse(self):
        events = await run([chunk({"content": "a\nb\n\nc"}), chunk(finish="stop")], context())
        reparsed = SSEParser().feed(b"".join(e.raw for e in events))
        assert [e.json() for e in reparsed] == payloads(events)
        assert accumulate(payloads(reparsed)).content[0].text == "a\nb\n\nc"


# ---- property: any chunk sequence gives a well-formed event stream ---------------------------------

FRAGMENTS = st.sampled_from(['{"a": ', '1', '}', '"x\\"', '"', '[', ']', ', "b": [1, 2]', '{}', '\\', '', ' '])
OP = st.one_of(
    st.tuples(st.just("content"), st.text(min_size=1, max_size=4)),
    st.tuples(st.just("reasoning_content"), st.text(min_size=1, max_size=4)),
    st.tuples(st.just("refusal"), st.text(min_size=1, max_size=4)),
    st.tuples(st.just("signed"), st.text(max_size=4)),
    st.tuples(st.just("redacted"), st.text(max_size=4)),
    st.tuples(st.just("tool"), st.integers(0, 3), st.booleans(), st.booleans(), FRAGMENTS),
    st.tuples(st.just("empty")),
    st.tuples(st.just("running_usage")),
)
ENDING = st.sampled_from(["finish+usage+done", "finish+done", "done", "finish", "finish_with_usage+done"])
FINISH = st.sampled_from(["stop", "length", "tool_calls", "content_filter", "function_call", "weird"])


def build_chunks(ops: list[tuple], ending: str, finish: str) -> list[dict[str, Any]]:
    chunks = []
    for op in ops:
        kind = op[0]
        if kind in ("content", "reasoning_content", "refusal"):
            chunks.append(chunk({kind: op[1]}))
        elif kind == "signed":
            signed = {"type": "thinking", "thinking": op[1], "signature": "S" + op[1]}
            chunks.append(chunk({"thinking_blocks": [signed]}))
        elif kind == "redacted":
            chunks.append(chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": op[1]}]}))
        elif kind == "tool":
            _, index, with_id, with_name, fragment = op
            function: dict[str, Any] = {"arguments": fragment}
            if with_name:
                function["name"] = f"tool{index}"
            call: dict[str, Any] = {"index": index, "function": function}
            if with_id:
                call["id"] = f"call_{index}"
            chunks.append(chunk({"tool_calls": [call]}))
        elif kind == "empty":
            chunks.append(chunk({}))
        else:
            chunks.append(chunk({}, usage={"prompt_tokens": 5, "completion_tokens": 1}))
    if ending.startswith("finish_with_usage"):
        chunks.append(chunk(finish=finish, usage=USAGE))
    elif ending.startswith("finish"):
        chunks.append(chunk(finish=finish))
    if "usage" in ending and not ending.startswith("finish_with_usage"):
        chunks.append(chunk(no_choices=True, usage=USAGE))
    return chunks


def streamed_blocks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each block's start and what its deltas carried, read from the events alone."""
    blocks: list[dict[str, Any]] = []
    for event in events:
        if event["type"] == "content_block_start":
            blocks.append({**event["content_block"], "deltas": ""})
        elif event["type"] == "content_block_delta":
            delta = event["delta"]
            blocks[-1]["deltas"] += delta.get("text", delta.get("thinking", delta.get("partial_json", "")))
    return blocks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OP, max_size=25), ENDING, FINISH, st.booleans(), st.lists(st.sampled_from(["END", "x"]), max_size=2),
       st.booleans())
def test_any_chunk_sequence_gives_a_well_formed_stream(ops, ending, finish, thinking, stops, whole):
    ctx = context(thinking=thinking, stop_sequences=tuple(stops))
    chunks = build_chunks(ops, ending, finish)
    events = asyncio.run(run(chunks, ctx, done="done" in ending, whole=whole))
    got = payloads(events)
    check_well_formed(got)
    named_events(events)
    blocks = streamed_blocks(got)
    texts = "".join(op[1] for op in ops if op[0] in ("content", "refusal"))
    assert "".join(b["deltas"] for b in blocks if b["type"] == "text") == texts
    if thinking:
        sent, position = "".join(b["deltas"] for b in blocks if b["type"] == "thinking"), 0
        for op in ops:  # every reasoning fragment, in order (whole signed blocks add their own text)
            if op[0] == "reasoning_content":
                position = sent.index(op[1], position) + len(op[1])
    else:
        assert all(b["type"] not in ("thinking", "redacted_thinking") for b in blocks)
    tools = [b for b in blocks if b["type"] == "tool_use"]
    assert len(tools) == len({op[1] for op in ops if op[0] == "tool"})
    assert len({b["id"] for b in tools}) == len(tools)
    if whole:  # every call's input is a JSON object, so the SDK always rebuilds the message
        assert all(isinstance(json.loads(b["deltas"] or "{}"), dict) for b in tools)
        accumulate(got)
    elif all(_parses(b["deltas"]) for b in tools):
        accumulate(got)


def _parses(text: str) -> bool:
    """Whether a call's arguments are a JSON object (what a tool input is; the SDK parses each
    prefix of them and fails on anything else)."""
    try:
        return isinstance(json.loads(text or "{}"), dict)
    except ValueError:
        return False


GARBAGE_CALL = st.fixed_dictionaries({}, optional={
    "index": JSON, "id": JSON,
    "function": st.one_of(JSON, st.fixed_dictionaries({}, optional={"name": JSON, "arguments": JSON}))})
GARBAGE_DELTA = st.one_of(
    JSON, st.fixed_dictionaries({}, optional={name: JSON for name in ("content", "reasoning_content", "reasoning",
                                                                      "refusal", "thinking_blocks", "role")}),
    st.fixed_dictionaries({"tool_calls": st.lists(st.one_of(GARBAGE_CALL, JSON), max_size=3)}))
GARBAGE_CHOICE = st.fixed_dictionaries({}, optional={
    "index": JSON, "delta": GARBAGE_DELTA, "finish_reason": st.one_of(JSON, st.just("tool_calls")),
    "stop_reason": JSON, "matched_stop": JSON})
GARBAGE_CHUNK = st.one_of(JSON, st.fixed_dictionaries({}, optional={
    "id": JSON, "choices": st.one_of(st.lists(st.one_of(GARBAGE_CHOICE, JSON), max_size=2), JSON),
    "usage": st.one_of(JSON, st.fixed_dictionaries({}, optional={
        name: JSON for name in ("prompt_tokens", "completion_tokens", "prompt_tokens_details")})),
    "error": JSON}))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(GARBAGE_CHUNK, max_size=8), st.booleans(), st.booleans(), st.booleans())
def test_garbage_chunks_give_a_well_formed_stream_or_an_upstream_error(chunks, done, thinking, whole):
    try:
        events = asyncio.run(run(chunks, context(thinking=thinking, stop_sequences=("x",)), done=done, whole=whole))
    except UpstreamError:  # UpstreamProtocolError included: a ProxyError the server can report
        return
    check_well_formed(payloads(events))


JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-9, 9), st.text(max_size=5)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                           max_leaves=10)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=3), min_size=1, max_size=4),
       st.data())
def test_sequential_tool_arguments_arrive_whole(inputs, data):
    """However a provider splits each call's arguments, the SDK rebuilds the same inputs."""
    chunks = []
    for index, arguments in enumerate(inputs):
        text = json.dumps(arguments)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=4)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        chunks.append(chunk({"tool_calls": [{"index": index, "id": f"c{index}",
                                             "function": {"name": "f", "arguments": pieces[0]}}]}))
        chunks += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}) for piece in pieces[1:]]
    chunks.append(chunk(finish="tool_calls"))
    got = payloads(asyncio.run(run(chunks, context())))
    check_well_formed(got)
    final = accumulate(got)
    assert [b.input for b in final.content] == inputs
    assert final.stop_reason == "tool_use"


# ==== errors ===================================================================================

@pytest.mark.parametrize("error, status, kind", [
    (InvalidRequest("bad field", param="x"), 400, "invalid_request_error"),
    (AuthenticationFailed("no key"), 401, "authentication_error"),
    (ProxyError("pay up", status=402), 402, "billing_error"),
    (ProxyError("nope", status=403), 403, "permission_error"),
    (NotFound("no route"), 404, "not_found_error"),
    (ProxyError("slow client", status=408), 408, "timeout_error"),
    (ProxyError("conflict", status=409), 409, "invalid_request_error"),
    (RequestTooLarge("too big"), 413, "request_too_large"),
    (ProxyError("unprocessable", status=422), 422, "invalid_request_error"),
    (ProxyError("boom"), 500, "api_error"),
    (UpstreamError("up", "bad gateway"), 502, "api_error"),
    (UpstreamProtocolError("up", "garbage"), 502, "api_error"),
    (UpstreamAuthError("up", "refused our key"), 502, "api_error"),
    (ServiceUnavailable("draining"), 529, "overloaded_error"),
    (UpstreamHTTPError("up", 503, "busy"), 529, "overloaded_error"),
    (UpstreamHTTPError("up", 529, "Overloaded", upstream_body={"message": "Overloaded", "type": "overloaded_error"}),
     502, "api_error"),
    (UpstreamTimeout("up", "timed out"), 504, "timeout_error"),
    (UpstreamHTTPError("up", 400, "bad", upstream_body={"message": "bad", "type": "invalid_request_error"}),
     400, "invalid_request_error"),
    (ProxyError("weird", status=507), 507, "api_error"),
    (ProxyError("odd", status=302), 500, "api_error"),
    (ProxyError("busy", status=500, error_type="overloaded_error"), 500, "api_error"),
    (ProxyError("busy", status=599, error_type="overloaded_error"), 529, "overloaded_error"),
])
def test_error_envelope(error, status, kind):
    got_status, raw, headers = envelope(error)
    assert got_status == status
    sent = json.loads(raw)
    assert sent == {"type": "error", "error": {"type": kind, "message": error.envelope()["error"]["message"]}}
    if kind != "request_too_large":  # Anthropic documents it; the SDK's ErrorObject union lacks it
        ErrorResponse.model_validate(sent)
    assert headers == error.headers


def test_overloaded_upstream_after_its_status_was_mapped():
    error = UpstreamHTTPError("up", 529, "Overloaded",
                              upstream_body={"message": "Overloaded", "type": "overloaded_error"})
    error.status = 503  # what the Anthropic wire does with Anthropic's 529
    assert envelope(error)[0] == 529 and json.loads(envelope(error)[1])["error"]["type"] == "overloaded_error"


def test_retry_after_and_request_id():
    status, raw, headers = envelope(RateLimited("queue full", retry_after=2.5), request_id="req_1")
    assert status == 429 and headers == {"Retry-After": "3"}
    assert json.loads(raw) == {"type": "error", "error": {"type": "rate_limit_error", "message": "queue full"},
                               "request_id": "req_1"}


def test_error_event():
    event = error_event(ServiceUnavailable("all upstreams busy"))
    assert event.event == "error"
    assert event.raw.startswith(b"event: error\ndata: ")
    assert event.json() == {"type": "error", "error": {"type": "overloaded_error", "message": "all upstreams busy"}}


@pytest.mark.parametrize("error, exception", [
    (InvalidRequest("bad", param="messages"), anthropic.BadRequestError),
    (AuthenticationFailed("no key"), anthropic.AuthenticationError),
    (ProxyError("nope", status=403), anthropic.PermissionDeniedError),
    (NotFound("no"), anthropic.NotFoundError),
    (RequestTooLarge("big"), anthropic.RequestTooLargeError),
    (RateLimited("slow", retry_after=1), anthropic.RateLimitError),
    (ServiceUnavailable("busy"), anthropic.OverloadedError),
    (UpstreamError("up", "bad"), anthropic.InternalServerError),
    (UpstreamTimeout("up", "slow"), anthropic.InternalServerError),
])
async def test_the_sdk_raises_the_matching_exception(error, exception):
    status, raw, headers = envelope(error)
    client = sdk_client(status, raw, {**headers, "content-type": "application/json"})
    with pytest.raises(exception) as caught:
        await client.messages.create(model="claude-x", max_tokens=10, messages=USER)
    assert caught.value.status_code == status
    assert caught.value.body["error"]["type"] == json.loads(raw)["error"]["type"]


async def test_the_sdk_raises_an_error_event_mid_stream():
    events = [event for event in completion_to_events(completion({"content": "partial"}), context())
              if event.event in ("message_start", "ping", "content_block_start", "content_block_delta")]
    events.append(error_event(UpstreamTimeout("up", "read timed out")))
    client = sdk_client(200, b"".join(e.raw for e in events), {"content-type": "text/event-stream"})
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(model="claude-x", max_tokens=10, messages=USER) as stream:
            await stream.get_final_message()
    assert caught.value.body["error"]["type"] == "timeout_error"
