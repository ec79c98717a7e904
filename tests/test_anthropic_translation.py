"""OpenAI chat request -> Anthropic Messages request: each documented translation rule,
and each rule checked against the Messages API's own refusals (tests/upstreams/anthropic_rules)."""
import pytest

from proxy.config.model import AliasConfig, ModelSettings, UpstreamConfig
from proxy.config.secrets import Secret
from proxy.core.errors import InvalidRequest
from proxy.core.exchange import Target
from proxy.wire.anthropic.request import DEFAULT_MAX_TOKENS, DROPPED, encode_request
from tests.upstreams import anthropic_rules as rules

pytestmark = pytest.mark.timeout(30)
UPSTREAM = UpstreamConfig(name="claude", base_url="http://127.0.0.1:9/v1", format="anthropic")
TARGET = Target(upstream=UPSTREAM, model="claude-sonnet-4-6")
USER = {"role": "user", "content": "hi"}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
TIME = {"type": "function", "function": {"name": "get_time"}}


def encode(body, target=TARGET, stream=False, version="2023-06-01"):
    native = encode_request({"model": "main", **body}, target, stream)
    problem = rules.check_request(native, version)
    assert problem is None, f"the Messages API would refuse this body: {problem}\n{native}"
    return native


def test_system_and_developer_messages_are_hoisted_into_system_in_order():
    native = encode({"messages": [{"role": "system", "content": "Be brief."}, USER,
                                  {"role": "developer", "content": [{"type": "text", "text": "Use French."}]}]})
    assert native["system"] == "Be brief.\n\nUse French."
    assert native["messages"] == [USER]


def test_cache_control_on_a_system_part_keeps_the_system_as_blocks():
    part = {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}
    native = encode({"messages": [{"role": "system", "content": [part]}, USER]})
    assert native["system"] == [part]


def test_consecutive_same_role_turns_are_merged():
    native = encode({"messages": [USER, {"role": "user", "content": "again"}, {"role": "assistant", "content": "a"},
                                  {"role": "assistant", "content": "b"}, {"role": "user", "content": "ok"}]})
    assert native["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": "ok"}]


def test_image_parts_become_base64_or_url_sources():
    native = encode({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}}]}]})
    blocks = native["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "iVBORw0KGgo="}}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}


def test_unsupported_images_and_audio_are_refused_before_the_upstream():
    with pytest.raises(InvalidRequest, match="JPEG, PNG, GIF and WebP"):
        encode({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]})
    with pytest.raises(InvalidRequest, match="'input_audio' part"):
        encode({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]})


def test_pdf_file_parts_become_document_blocks():
    native = encode({"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
        {"type": "text", "text": "summarize"}]}]})
    assert native["messages"][0]["content"][0] == {
        "type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}


def test_tool_calls_and_tool_results_round_trip_into_blocks_in_one_user_turn():
    native = encode({"tools": [WEATHER, TIME], "messages": [
        USER,
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "call:2.x", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
        {"role": "tool", "tool_call_id": "call:2.x", "content": [{"type": "text", "text": "noon"}]}]})
    assert native["messages"][1]["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_2_x", "name": "get_time", "input": {}}]
    assert native["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "rain"},
        {"type": "tool_result", "tool_use_id": "call_2_x", "content": [{"type": "text", "text": "noon"}]}]}


def test_a_user_message_after_tool_results_joins_their_turn_after_them():
    native = encode({"tools": [TIME], "messages": [
        USER, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                    "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "noon"}, {"role": "user", "content": "thanks"}]})
    assert [block["type"] for block in native["messages"][2]["content"]] == ["tool_result", "text"]


def test_tool_arguments_that_are_not_a_json_object_are_refused():
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        encode({"messages": [USER, {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1, 2"}}]}]})


def test_tools_translate_to_name_description_and_input_schema():
    native = encode({"messages": [USER], "tools": [WEATHER, TIME]})
    assert native["tools"] == [
        {"name": "get_weather", "description": "Weather for a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}]
    assert "tool_choice" not in native


@pytest.mark.parametrize("choice, parallel, expected", [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_time"}}, None, {"type": "tool", "name": "get_time"}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
])
def test_tool_choice_and_parallel_tool_calls(choice, parallel, expected):
    body = {"messages": [USER], "tools": [WEATHER, TIME]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert encode(body)["tool_choice"] == expected


def test_tool_choice_without_tools_is_not_sent():
    assert "tool_choice" not in encode({"messages": [USER], "tool_choice": "required"})


def test_stop_becomes_stop_sequences_without_whitespace_only_entries():
    assert encode({"messages": [USER], "stop": "END"})["stop_sequences"] == ["END"]
    assert encode({"messages": [USER], "stop": ["\n\n", "###"]})["stop_sequences"] == ["###"]
    assert "stop_sequences" not in encode({"messages": [USER], "stop": ["\n"]})


def test_max_tokens_comes_from_the_request_then_the_model_config_then_the_default():
    assert encode({"messages": [USER], "max_tokens": 77})["max_tokens"] == 77
    assert encode({"messages": [USER], "max_tokens": 77, "max_completion_tokens": 55})["max_tokens"] == 55
    configured = Target(upstream=UPSTREAM, model="claude-sonnet-4-6", model_config=ModelSettings(max_tokens=2000))
    assert encode({"messages": [USER]}, target=configured)["max_tokens"] == 2000
    aliased = Target(upstream=UPSTREAM, model="claude-sonnet-4-6", model_config=ModelSettings(max_tokens=2000),
                     alias_config=AliasConfig(targets=("claude/claude-sonnet-4-6",), max_tokens=3000))
    assert encode({"messages": [USER]}, target=aliased)["max_tokens"] == 3000
    assert encode({"messages": [USER]})["max_tokens"] == DEFAULT_MAX_TOKENS == 4096
    with pytest.raises(InvalidRequest, match="positive integer"):
        encode({"messages": [USER], "max_tokens": 0})


def test_temperature_is_clamped_to_anthropics_range_and_top_p_yields_to_it():
    native = encode({"messages": [USER], "temperature": 1.7, "top_p": 0.5})
    assert native["temperature"] == 1.0 and "top_p" not in native
    assert encode({"messages": [USER], "top_p": 0.4})["top_p"] == 0.4
    assert encode({"messages": [USER], "top_k": 20})["top_k"] == 20


def test_sampling_parameters_are_not_sent_under_api_version_2026_10_21():
    upstream = UpstreamConfig(name="claude", base_url="http://127.0.0.1:9/v1", format="anthropic",
                              anthropic_version="2026-10-21")
    native = encode({"messages": [USER], "temperature": 0.2, "top_k": 3}, target=Target(upstream, "claude-opus-4-8"),
                    version="2026-10-21")
    assert not {"temperature", "top_p", "top_k"} & set(native)
    by_header = UpstreamConfig(name="claude", base_url="http://127.0.0.1:9/v1", format="anthropic",
                               headers={"Anthropic-Version": Secret("2026-10-21")})
    assert "temperature" not in encode({"messages": [USER], "temperature": 0.2}, target=Target(by_header, "m"),
                                       version="2026-10-21")


def test_thinking_passes_through_and_drops_what_it_is_incompatible_with():
    native = encode({"messages": [USER], "max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 2000},
                     "temperature": 0.3, "top_k": 5, "top_p": 0.5})
    assert native["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert not {"temperature", "top_k", "top_p"} & set(native)
    kept = encode({"messages": [USER], "max_tokens": 4000, "thinking": {"type": "adaptive"}, "top_p": 0.97,
                   "output_config": {"effort": "high"}})
    assert kept["top_p"] == 0.97 and kept["output_config"] == {"effort": "high"}


def test_thinking_is_left_out_when_the_tool_choice_forces_a_tool():
    native = encode({"messages": [USER], "max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 2000},
                     "tools": [TIME], "tool_choice": "required"})
    assert native["thinking"] == {"type": "disabled"} and native["tool_choice"] == {"type": "any"}


def _tool_loop(assistant_extra):
    return [USER, {"role": "assistant", "content": None, **assistant_extra,
                   "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "noon"}]


def test_signed_thinking_blocks_go_back_first_in_the_assistant_turn():
    signed = {"type": "thinking", "thinking": "I need the time.", "signature": rules.sign("I need the time.")}
    hidden = {"type": "redacted_thinking", "data": rules.redacted_data("x")}
    native = encode({"messages": _tool_loop({"thinking_blocks": [signed, hidden], "reasoning_content": "I need the time."}),
                     "tools": [TIME], "max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 2000}})
    assert native["messages"][1]["content"][:2] == [signed, hidden]
    assert native["thinking"] == {"type": "enabled", "budget_tokens": 2000}


def test_reasoning_content_with_a_signature_and_openrouter_details_are_accepted_back():
    text = "Time first."
    by_signature = encode({"messages": _tool_loop({"reasoning_content": text, "reasoning_signature": rules.sign(text)}),
                           "tools": [TIME], "max_tokens": 4000, "thinking": {"type": "adaptive"}})
    assert by_signature["messages"][1]["content"][0] == {"type": "thinking", "thinking": text, "signature": rules.sign(text)}
    details = [{"type": "reasoning.text", "text": text, "signature": rules.sign(text)}]
    by_details = encode({"messages": _tool_loop({"reasoning_details": details}), "tools": [TIME], "max_tokens": 4000,
                         "thinking": {"type": "adaptive"}})
    assert by_details["messages"][1]["content"][0]["type"] == "thinking"


def test_a_tool_loop_without_signed_thinking_turns_thinking_off_rather_than_fail():
    native = encode({"messages": _tool_loop({"reasoning_content": "unsigned"}), "tools": [TIME], "max_tokens": 4000,
                     "thinking": {"type": "enabled", "budget_tokens": 2000}})
    assert native["thinking"] == {"type": "disabled"}
    assert [block["type"] for block in native["messages"][1]["content"]] == ["tool_use"]


def test_thinking_blocks_are_stripped_when_thinking_is_off():
    signed = {"type": "thinking", "thinking": "t", "signature": rules.sign("t")}
    native = encode({"messages": [USER, {"role": "assistant", "content": "done", "thinking_blocks": [signed]}]})
    assert native["messages"][1] == {"role": "assistant", "content": "done"}
    disabled = encode({"messages": [USER, {"role": "assistant", "content": "done", "thinking_blocks": [signed]}],
                       "thinking": {"type": "disabled"}, "temperature": 0.2})
    assert disabled["thinking"] == {"type": "disabled"} and disabled["temperature"] == 0.2
    assert disabled["messages"][1] == {"role": "assistant", "content": "done"}


def test_user_becomes_metadata_user_id_and_openai_metadata_keys_are_not_sent():
    assert encode({"messages": [USER], "user": "alice"})["metadata"] == {"user_id": "alice"}
    assert encode({"messages": [USER], "metadata": {"user_id": "bob", "team": "x"}, "user": "alice"})["metadata"] == {"user_id": "bob"}
    assert "metadata" not in encode({"messages": [USER], "metadata": {"team": "x"}})


def test_response_format_json_schema_becomes_output_config_format():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": False}
    native = encode({"messages": [USER], "output_config": {"effort": "low"},
                     "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}})
    assert native["output_config"] == {"effort": "low", "format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in encode({"messages": [USER], "response_format": {"type": "json_object"}})


def test_parameters_without_an_anthropic_equivalent_are_dropped():
    body = {"messages": [USER], "n": 1, "logprobs": False, "seed": 7, "frequency_penalty": 0.5, "presence_penalty": 0.1,
            "logit_bias": {"50256": -100}, "store": True, "stream_options": {"include_usage": True},
            "reasoning_effort": "low", "service_tier": "default", "prediction": {"type": "content", "content": "x"}}
    native = encode(body)
    assert not set(DROPPED) & set(native) and "service_tier" not in native and "n" not in native
    assert encode({"messages": [USER], "service_tier": "auto"})["service_tier"] == "auto"


@pytest.mark.parametrize("extra, param", [
    ({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"top_logprobs": 3}, "logprobs"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
])
def test_parameters_whose_answer_anthropic_cannot_give_are_refused(extra, param):
    with pytest.raises(InvalidRequest) as caught:
        encode({"messages": [USER], **extra})
    assert caught.value.status == 400 and caught.value.param == param


def test_a_conversation_opening_with_an_assistant_greeting_gets_a_placeholder_user_turn():
    native = encode({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "Ahoy!"}, USER]})
    assert native["messages"] == [{"role": "user", "content": "(conversation start)"},
                                  {"role": "assistant", "content": "Ahoy!"}, USER]


def test_a_prefill_loses_trailing_whitespace_and_stream_is_set_when_streaming():
    native = encode({"messages": [USER, {"role": "assistant", "content": "The answer is "}]}, stream=True)
    assert native["messages"][-1] == {"role": "assistant", "content": "The answer is"}
    assert native["stream"] is True


def test_the_client_body_is_never_mutated():
    body = {"model": "m", "messages": [{"role": "system", "content": "s"}, USER], "tools": [WEATHER],
            "output_config": {"effort": "low"}, "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}}
    snapshot = repr(body)
    encode_request(body, TARGET, True)
    assert repr(body) == snapshot
