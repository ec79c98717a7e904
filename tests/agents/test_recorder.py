"""The recorder's wire formats, checked with the official SDKs (no agents needed).

If the OpenAI / Anthropic SDK stream accumulators can rebuild the scripted turn
from the recorder's SSE, the event sequences are well-formed.
"""

from __future__ import annotations

import json

import pytest

from tests.agents.recorder import ThreadedRecorder, custom_tool_call, function_call, text, tool_use

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

EXPECTED_TEXT_EVENTS = [
    "response.created", "response.in_progress",
    "response.output_item.added", "response.content_part.added",
    "response.output_text.delta", "response.output_text.done",
    "response.content_part.done", "response.output_item.done",
    "response.completed",
]


@pytest.fixture
def rec():
    with ThreadedRecorder(chunk_size=5) as r:
        yield r


def test_responses_stream_text_event_sequence(rec):
    rec.responses.default = [text("Hello, world")]
    client = openai.OpenAI(base_url=rec.base_url_v1, api_key="k", max_retries=0)
    events = list(client.responses.create(model="m", input="hi", stream=True))
    kinds = [e.type for e in events]
    # one delta per 5 characters
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["Hello", ", wor", "ld"]
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]
    assert collapsed == EXPECTED_TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == "Hello, world"
    assert final.usage.total_tokens == final.usage.input_tokens + final.usage.output_tokens


def test_responses_stream_tool_calls_accumulate(rec):
    rec.responses.script([
        text("Calling tools."),
        function_call("exec_command", {"cmd": "ls -la"}, "call_a"),
        custom_tool_call("apply_patch", "*** Begin Patch\n*** End Patch\n", "call_b"),
    ])
    client = openai.OpenAI(base_url=rec.base_url_v1, api_key="k", max_retries=0)
    tools = [{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}}]
    with client.responses.stream(model="m", input="hi", tools=tools) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    assert "response.custom_tool_call_input.delta" in kinds
    assert "response.custom_tool_call_input.done" in kinds
    out = {item.type: item for item in final.output}
    assert out["message"].content[0].text == "Calling tools."
    assert out["function_call"].name == "exec_command"
    assert out["function_call"].call_id == "call_a"
    assert json.loads(out["function_call"].arguments) == {"cmd": "ls -la"}
    assert out["custom_tool_call"].input == "*** Begin Patch\n*** End Patch\n"
    # the request carried tools, so it consumed the script
    assert rec.responses.exhausted


def test_responses_non_streaming(rec):
    rec.responses.default = [text("plain")]
    client = openai.OpenAI(base_url=rec.base_url_v1, api_key="k", max_retries=0)
    resp = client.responses.create(model="m", input="hi")
    assert resp.output_text == "plain"
    assert rec.responses_requests()[0].header("authorization") == "Bearer k"


def test_messages_stream_text_and_tool_use(rec):
    rec.messages.script([text("Let me read it."), tool_use("Read", {"file_path": "/x/y.txt"}, "toolu_1")])
    client = anthropic.Anthropic(base_url=rec.origin, api_key="k", max_retries=0)
    tools = [{"name": "Read", "input_schema": {"type": "object", "properties": {}}}]
    with client.messages.stream(model="m", max_tokens=100, tools=tools,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "text" and final.content[0].text == "Let me read it."
    assert final.content[1].type == "tool_use"
    assert final.content[1].id == "toolu_1"
    assert final.content[1].input == {"file_path": "/x/y.txt"}
    req = rec.messages_requests()[0]
    # this SDK generation may send the key as x-api-key or as a bearer token
    assert "k" in (req.header("x-api-key"), (req.header("authorization") or "").removeprefix("Bearer "))
    assert req.header("anthropic-version")


def test_messages_side_requests_do_not_consume_the_script(rec):
    rec.messages.script([text("scripted")])
    client = anthropic.Anthropic(base_url=rec.origin, api_key="k", max_retries=0)
    side = client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "title?"}])
    assert side.content[0].text == "OK"  # no tools: the default turn
    assert not rec.messages.exhausted
    count = client.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hello"}])
    assert count.input_tokens >= 1
    assert [(r.method, r.path) for r in rec.requests] == [
        ("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens")]


def test_unknown_paths_are_recorded_and_404(rec):
    client = openai.OpenAI(base_url=rec.base_url_v1, api_key="k", max_retries=0)
    assert [m.id for m in client.models.list()] == ["test-model"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="m", input="x")
    assert [r.path for r in rec.requests] == ["/v1/models", "/v1/embeddings"]
