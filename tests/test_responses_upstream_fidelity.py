"""The Responses-API test upstream, driven directly by the official `openai` SDK: it must parse
into the SDK's typed models and satisfy the SDK's stream accumulator (which checks output
indexes, item ids and lifecycle identity), so it is faithful to OpenAI's /v1/responses."""
import json

import aiohttp
import openai
import pytest
from aiohttp import web
from openai import AsyncOpenAI
from openai.types import Model
from openai.types.responses import (FunctionTool, Response, ResponseCompletedEvent, ResponseContentPartAddedEvent,
                                    ResponseContentPartDoneEvent, ResponseCreatedEvent, ResponseCustomToolCall,
                                    ResponseCustomToolCallInputDeltaEvent, ResponseCustomToolCallInputDoneEvent,
                                    ResponseFailedEvent, ResponseFunctionCallArgumentsDeltaEvent,
                                    ResponseFunctionCallArgumentsDoneEvent, ResponseFunctionToolCall,
                                    ResponseIncompleteEvent, ResponseInProgressEvent, ResponseInputMessageItem,
                                    ResponseOutputItemAddedEvent, ResponseOutputItemDoneEvent, ResponseOutputMessage,
                                    ResponseOutputText, ResponseReasoningItem, ResponseReasoningSummaryPartAddedEvent,
                                    ResponseReasoningSummaryPartDoneEvent, ResponseReasoningSummaryTextDeltaEvent,
                                    ResponseReasoningSummaryTextDoneEvent, ResponseTextDeltaEvent,
                                    ResponseTextDoneEvent, ResponseUsage)

from tests.upstreams.responses_upstream import ResponsesUpstream

pytestmark = pytest.mark.timeout(60)
KEY = "sk-upstream-test-key"
MODEL = "gpt-test"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False},
           "strict": True}
CODE_EXEC = {"type": "custom", "name": "code_exec", "description": "Runs Python code"}


@pytest.fixture
async def upstream():
    server = await ResponsesUpstream(api_key=KEY).start()
    yield server
    await server.close()


@pytest.fixture
async def client(upstream):
    sdk = AsyncOpenAI(base_url=upstream.url, api_key=KEY, max_retries=0)
    yield sdk
    await sdk.close()


async def collect(client, **kwargs):
    """Run `responses.stream(...)`: its typed events and the final response."""
    async with client.responses.stream(model=MODEL, **kwargs) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    return events, final


async def raw_events(client, **kwargs):
    """`responses.create(stream=True)`: the raw typed events, no accumulation."""
    stream = await client.responses.create(model=MODEL, stream=True, **kwargs)
    return [event async for event in stream]


def assert_consistent(events):
    """sequence_number counts from 0; every item-scoped event names the item at its output_index."""
    assert [event.sequence_number for event in events] == list(range(len(events)))
    ids = {}
    for event in events:
        if isinstance(event, ResponseOutputItemAddedEvent):
            assert event.output_index == len(ids)
            ids[event.output_index] = event.item.id
        elif isinstance(event, ResponseOutputItemDoneEvent):
            assert ids[event.output_index] == event.item.id
        elif hasattr(event, "item_id"):
            assert ids[event.output_index] == event.item_id, event


# ---- non-streaming --------------------------------------------------------------------------------

async def test_create_text_returns_a_typed_response_with_every_documented_field(upstream, client):
    upstream.reply, upstream.cached_tokens, upstream.input_tokens = "Hello, world", 3, 20
    response = await client.responses.create(model=MODEL, input="hi", instructions="Be brief.",
                                             max_output_tokens=256, temperature=0.5, metadata={"k": "v"})
    assert isinstance(response, Response)
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert isinstance(response.created_at, (int, float)) and response.completed_at is not None
    assert response.model == MODEL and response.error is None and response.incomplete_details is None
    message = response.output[0]
    assert isinstance(message, ResponseOutputMessage)
    assert message.id.startswith("msg_") and message.role == "assistant" and message.status == "completed"
    part = message.content[0]
    assert isinstance(part, ResponseOutputText) and part.annotations == [] and part.text == "Hello, world"
    assert response.output_text == "Hello, world"
    assert isinstance(response.usage, ResponseUsage)
    assert response.usage.input_tokens == 20 and response.usage.input_tokens_details.cached_tokens == 3
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    # request parameters are echoed, defaults filled in as OpenAI does
    assert response.instructions == "Be brief." and response.max_output_tokens == 256
    assert response.temperature == 0.5 and response.top_p == 1.0 and response.metadata == {"k": "v"}
    assert response.tool_choice == "auto" and response.tools == [] and response.parallel_tool_calls is True
    assert response.previous_response_id is None and response.truncation == "disabled"
    assert response.text.format.type == "text" and response.reasoning.effort is None
    assert response.model_dump()["store"] is True
    assert response._request_id.startswith("req_")
    received = upstream.last
    assert (received.method, received.path) == ("POST", "/responses")
    assert received.headers["Authorization"] == f"Bearer {KEY}"
    assert received.json["input"] == "hi" and json.loads(received.body)["model"] == MODEL


async def test_create_with_a_function_tool_returns_a_function_call(upstream, client):
    upstream.tool_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    response = await client.responses.create(model=MODEL, input="weather in Paris?", tools=[WEATHER])
    assert len(response.output) == 1
    call = response.output[0]
    assert isinstance(call, ResponseFunctionToolCall)
    assert call.id.startswith("fc_") and call.call_id.startswith("call_") and call.status == "completed"
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert response.output_text == ""
    assert isinstance(response.tools[0], FunctionTool) and response.tools[0].name == "get_weather"
    assert response.tools[0].strict is True


async def test_text_and_parallel_tool_calls_keep_their_order(upstream, client):
    upstream.text_with_tools = True
    upstream.reply = "Checking both."
    upstream.tool_call = [{"name": "get_weather", "arguments": '{"city":"Paris"}'},
                          {"name": "get_weather", "arguments": '{"city":"Rome"}'}]
    response = await client.responses.create(model=MODEL, input="Paris and Rome?", tools=[WEATHER])
    assert [item.type for item in response.output] == ["message", "function_call", "function_call"]
    assert response.output_text == "Checking both."
    assert len({item.call_id for item in response.output[1:]}) == 2


async def test_custom_tool_call_is_parsed(upstream, client):
    upstream.custom_tool_call = {"name": "code_exec", "input": "print('hello world')"}
    response = await client.responses.create(model=MODEL, input="run it", tools=[CODE_EXEC])
    call = response.output[0]
    assert isinstance(call, ResponseCustomToolCall)
    assert call.id.startswith("ctc_") and call.call_id.startswith("call_")
    assert (call.name, call.input) == ("code_exec", "print('hello world')")
    assert response.tools[0].type == "custom" and response.tools[0].name == "code_exec"


async def test_reasoning_item_carries_encrypted_content_only_when_included(upstream, client):
    upstream.reasoning, upstream.reasoning_tokens, upstream.reply = "Add the numbers.", 64, "4"
    response = await client.responses.create(model=MODEL, input="2+2?", reasoning={"effort": "low",
                                             "summary": "auto"}, include=["reasoning.encrypted_content"],
                                             store=False)
    reasoning, message = response.output
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.id.startswith("rs_")
    assert [(s.type, s.text) for s in reasoning.summary] == [("summary_text", "Add the numbers.")]
    assert reasoning.encrypted_content and reasoning.encrypted_content.startswith("gAAAAA")
    assert isinstance(message, ResponseOutputMessage) and response.output_text == "4"
    assert response.usage.output_tokens_details.reasoning_tokens == 64
    assert response.usage.output_tokens >= 64
    assert response.reasoning.effort == "low" and response.reasoning.summary == "auto"
    assert upstream.last.json["include"] == ["reasoning.encrypted_content"]
    plain = await client.responses.create(model=MODEL, input="2+2?")
    assert plain.output[0].encrypted_content is None


async def test_incomplete_response_reports_its_reason(upstream, client):
    upstream.incomplete = True
    response = await client.responses.create(model=MODEL, input="write a novel", max_output_tokens=16)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete" and response.completed_at is None


# ---- streaming ------------------------------------------------------------------------------------

TEXT_SEQUENCE = [ResponseCreatedEvent, ResponseInProgressEvent, ResponseOutputItemAddedEvent,
                 ResponseContentPartAddedEvent]


async def test_stream_text_yields_the_documented_event_sequence(upstream, client):
    upstream.reply = "one two three"
    events, final = await collect(client, input="count")
    kinds = [type(event) for event in events]
    assert all(isinstance(e, k) for e, k in zip(events[:4], TEXT_SEQUENCE))
    deltas = [e for e in events if isinstance(e, ResponseTextDeltaEvent)]
    assert [d.delta for d in deltas] == ["one", " two", " three"]
    assert [d.snapshot for d in deltas] == ["one", "one two", "one two three"]  # the SDK accumulated them
    assert all(d.logprobs == [] and d.content_index == 0 and d.output_index == 0 for d in deltas)
    tail = events[4 + len(deltas):]
    tail_types = [ResponseTextDoneEvent, ResponseContentPartDoneEvent, ResponseOutputItemDoneEvent,
                  ResponseCompletedEvent]
    assert len(tail) == len(tail_types) and all(isinstance(e, k) for e, k in zip(tail, tail_types))
    assert len(kinds) == 4 + 3 + 4
    assert_consistent(events)
    created, added, part_added = events[0], events[2], events[3]
    assert created.response.status == "in_progress" and created.response.output == []
    assert created.response.usage is None
    assert added.item.status == "in_progress" and added.item.content == []
    assert part_added.part.type == "output_text" and part_added.part.text == ""
    assert tail[0].text == "one two three" and tail[1].part.text == "one two three"
    assert tail[2].item.status == "completed"
    assert tail[3].response.id == created.response.id and tail[3].response.status == "completed"
    assert final.output_text == "one two three" and final.id == created.response.id
    assert final.usage.output_tokens == 3


async def test_raw_stream_events_are_each_documented_type(upstream, client):
    upstream.reply = "a b"
    events = await raw_events(client, input="hi")
    assert [type(e) for e in events] == [
        ResponseCreatedEvent, ResponseInProgressEvent, ResponseOutputItemAddedEvent, ResponseContentPartAddedEvent,
        ResponseTextDeltaEvent, ResponseTextDeltaEvent, ResponseTextDoneEvent, ResponseContentPartDoneEvent,
        ResponseOutputItemDoneEvent, ResponseCompletedEvent]
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert_consistent(events)


async def test_stream_function_call_arguments_accumulate(upstream, client):
    upstream.tool_call = {"name": "get_weather", "arguments": {"city": "San Francisco, CA"}}
    events, final = await collect(client, input="weather?", tools=[WEATHER])
    assert_consistent(events)
    added = events[2]
    assert isinstance(added, ResponseOutputItemAddedEvent) and added.item.type == "function_call"
    assert added.item.arguments == "" and added.item.status == "in_progress"
    deltas = [e for e in events if isinstance(e, ResponseFunctionCallArgumentsDeltaEvent)]
    assert len(deltas) > 1 and deltas[-1].snapshot == "".join(d.delta for d in deltas)
    done = next(e for e in events if isinstance(e, ResponseFunctionCallArgumentsDoneEvent))
    assert json.loads(done.arguments) == {"city": "San Francisco, CA"}
    call = final.output[0]
    assert isinstance(call, ResponseFunctionToolCall) and call.status == "completed"
    assert call.id == added.item.id and call.call_id == added.item.call_id
    assert call.parsed_arguments == {"city": "San Francisco, CA"}  # strict tool: the SDK parsed them
    assert isinstance(events[-1], ResponseCompletedEvent)


async def test_stream_text_then_tool_call_uses_two_output_indexes(upstream, client):
    upstream.text_with_tools, upstream.reply = True, "Let me check."
    upstream.tool_call = {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    events, final = await collect(client, input="weather?", tools=[WEATHER])
    assert_consistent(events)
    assert [e.output_index for e in events if isinstance(e, ResponseOutputItemAddedEvent)] == [0, 1]
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output_text == "Let me check." and final.output[1].arguments == '{"city":"Oslo"}'


async def test_stream_reasoning_summary_events_and_encrypted_content(upstream, client):
    upstream.reasoning, upstream.reply = "First think. Then answer.", "Done."
    events, final = await collect(client, input="q", reasoning={"effort": "medium", "summary": "detailed"},
                                  include=["reasoning.encrypted_content"])
    assert_consistent(events)
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.reasoning_summary_part.added"]
    part_added = events[3]
    assert isinstance(part_added, ResponseReasoningSummaryPartAddedEvent)
    assert part_added.summary_index == 0 and part_added.part.type == "summary_text" and part_added.part.text == ""
    deltas = [e for e in events if isinstance(e, ResponseReasoningSummaryTextDeltaEvent)]
    assert "".join(d.delta for d in deltas) == "First think. Then answer."
    text_done = next(e for e in events if isinstance(e, ResponseReasoningSummaryTextDoneEvent))
    part_done = next(e for e in events if isinstance(e, ResponseReasoningSummaryPartDoneEvent))
    assert text_done.text == part_done.part.text == "First think. Then answer."
    assert kinds.index("response.reasoning_summary_text.done") < kinds.index("response.reasoning_summary_part.done")
    reasoning_done = next(e for e in events if isinstance(e, ResponseOutputItemDoneEvent))
    assert reasoning_done.output_index == 0 and reasoning_done.item.encrypted_content.startswith("gAAAAA")
    reasoning, message = final.output
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.summary[0].text == "First think. Then answer."
    assert reasoning.encrypted_content == reasoning_done.item.encrypted_content
    assert final.output_text == "Done." and final.usage.output_tokens_details.reasoning_tokens > 0


async def test_stream_custom_tool_call_input_events(upstream, client):
    upstream.custom_tool_call = {"name": "code_exec", "input": "for i in range(3):\n    print(i)"}
    events = await raw_events(client, input="loop", tools=[CODE_EXEC])
    assert_consistent(events)
    assert isinstance(events[2], ResponseOutputItemAddedEvent) and events[2].item.input == ""
    deltas = [e for e in events if isinstance(e, ResponseCustomToolCallInputDeltaEvent)]
    done = next(e for e in events if isinstance(e, ResponseCustomToolCallInputDoneEvent))
    assert "".join(d.delta for d in deltas) == done.input == "for i in range(3):\n    print(i)"
    completed = events[-1]
    assert isinstance(completed, ResponseCompletedEvent)
    assert isinstance(completed.response.output[0], ResponseCustomToolCall)
    _, final = await collect(client, input="loop", tools=[CODE_EXEC])
    assert final.output[0].input == "for i in range(3):\n    print(i)"


async def test_stream_incomplete_ends_with_response_incomplete(upstream, client):
    upstream.incomplete, upstream.reply = True, "cut short"
    events = await raw_events(client, input="long", max_output_tokens=4)
    assert_consistent(events)
    last = events[-1]
    assert isinstance(last, ResponseIncompleteEvent)
    assert last.response.status == "incomplete" and last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.output[0].status == "incomplete"
    with pytest.raises(RuntimeError, match="response.completed"):
        await collect(client, input="long")


async def test_stream_failing_mid_way_ends_with_response_failed(upstream, client):
    upstream.reply, upstream.fail_mid_stream = "one two three four", 2
    events = await raw_events(client, input="hi")
    assert_consistent(events)
    assert sum(isinstance(e, ResponseTextDeltaEvent) for e in events) == 2
    failed = events[-1]
    assert isinstance(failed, ResponseFailedEvent)
    assert failed.response.status == "failed" and failed.response.error.code == "server_error"
    assert failed.response.output[0].content[0].text == "one two"
    stored = await client.responses.retrieve(failed.response.id)
    assert stored.status == "failed"
    with pytest.raises(RuntimeError, match="response.completed"):
        await collect(client, input="hi")


async def test_wire_format_is_event_and_data_lines_without_done(upstream):
    upstream.reply = "x y"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        async with session.post(f"{upstream.url}/responses",
                                json={"model": MODEL, "input": "hi", "stream": True}) as answer:
            assert answer.headers["Content-Type"].startswith("text/event-stream")
            raw = (await answer.read()).decode()
        async with session.post(f"{upstream.url}/responses",
                                json={"model": MODEL, "input": "hi", "stream": True,
                                      "stream_options": {"include_obfuscation": False}}) as answer:
            plain = (await answer.read()).decode()
    frames = [frame for frame in raw.split("\n\n") if frame]
    assert "[DONE]" not in raw
    for frame in frames:
        event_line, data_line = frame.split("\n")
        payload = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {payload['type']}"
        if payload["type"].endswith(".delta"):
            assert payload["obfuscation"]
    assert '"obfuscation"' not in plain


# ---- stored responses -----------------------------------------------------------------------------

async def test_retrieve_input_items_and_delete(upstream, client):
    conversation = [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "hi"},
                    {"role": "user", "content": [{"type": "input_text", "text": "and hello"}]}]
    created = await client.responses.create(model=MODEL, input=conversation)
    fetched = await client.responses.retrieve(created.id)
    assert isinstance(fetched, Response) and fetched.id == created.id and fetched.output_text == created.output_text
    assert upstream.last.method == "GET" and upstream.last.path == f"/responses/{created.id}"

    page = await client.responses.input_items.list(created.id)
    assert page.object == "list" and page.has_more is False
    texts = [item.content[0].text for item in page.data]
    assert texts == ["and hello", "hi", "Be terse."]  # default order is desc
    assert all(isinstance(item, ResponseInputMessageItem) for item in page.data)
    assert page.first_id == page.data[0].id and page.last_id == page.data[-1].id
    first = await client.responses.input_items.list(created.id, limit=2, order="asc")
    assert [i.content[0].text for i in first.data] == ["Be terse.", "hi"] and first.has_more is True
    everything = [item async for item in client.responses.input_items.list(created.id, limit=1, order="asc")]
    assert [item.role for item in everything] == ["developer", "user", "user"]
    assert upstream.last.query["after"] == everything[1].id

    raw = await client.responses.with_raw_response.delete(created.id)
    assert raw.status_code == 200
    assert json.loads(raw.http_response.text) == {"id": created.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as missing:
        await client.responses.retrieve(created.id)
    assert f"Response with id '{created.id}' not found." in missing.value.message
    with pytest.raises(openai.NotFoundError):
        await client.responses.delete(created.id)


async def test_store_false_is_not_kept(upstream, client):
    response = await client.responses.create(model=MODEL, input="hi", store=False)
    assert response.model_dump()["store"] is False
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)


async def test_streamed_responses_are_stored_too(upstream, client):
    _, final = await collect(client, input="hi")
    assert (await client.responses.retrieve(final.id)).status == "completed"


async def test_previous_response_id_chains_and_unknown_ids_are_rejected(upstream, client):
    first = await client.responses.create(model=MODEL, input="My name is Ada.")
    upstream.reply = "Your name is Ada."
    second = await client.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.output_text == "Your name is Ada."
    with pytest.raises(openai.BadRequestError) as rejected:
        await client.responses.create(model=MODEL, input="?", previous_response_id="resp_missing")
    assert rejected.value.status_code == 400 and rejected.value.code == "previous_response_not_found"
    assert rejected.value.param == "previous_response_id" and rejected.value.type == "invalid_request_error"
    assert rejected.value.message.endswith("Previous response with id 'resp_missing' not found.")
    with pytest.raises(openai.BadRequestError):
        await raw_events(client, input="?", previous_response_id="resp_missing")


# ---- models, auth and errors ----------------------------------------------------------------------

async def test_models_list(upstream, client):
    models = [model async for model in client.models.list()]
    assert all(isinstance(model, Model) for model in models) and [m.id for m in models] == ["gpt-test"]
    assert upstream.requests[-1].path == "/models" and upstream.client_requests == []


async def test_wrong_or_missing_key_is_a_401_in_openai_envelope(upstream):
    bad = AsyncOpenAI(base_url=upstream.url, api_key="sk-wrong-key-123456", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        await bad.responses.create(model=MODEL, input="hi")
    await bad.close()
    assert denied.value.code == "invalid_api_key" and denied.value.type == "invalid_request_error"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{upstream.url}/responses", json={"model": MODEL, "input": "hi"}) as answer:
            assert answer.status == 401
            body = await answer.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"].startswith("You didn't provide an API key")


@pytest.mark.parametrize("status,error", [
    (400, openai.BadRequestError), (401, openai.AuthenticationError), (403, openai.PermissionDeniedError),
    (404, openai.NotFoundError), (429, openai.RateLimitError), (500, openai.InternalServerError),
    (503, openai.InternalServerError)])
async def test_error_statuses_raise_the_matching_sdk_exception(upstream, client, status, error):
    upstream.fail_status = status
    with pytest.raises(error) as raised:
        await client.responses.create(model=MODEL, input="hi")
    assert raised.value.status_code == status and raised.value.body["message"]
    with pytest.raises(error):
        await collect(client, input="hi")


async def test_custom_error_body_and_headers_reach_the_sdk(upstream, client):
    upstream.fail_status = 429
    upstream.fail_body = {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                                    "param": None, "code": "insufficient_quota"}}
    upstream.fail_headers = {"retry-after": "7"}
    with pytest.raises(openai.RateLimitError) as raised:
        await client.responses.create(model=MODEL, input="hi")
    assert raised.value.code == "insufficient_quota" and raised.value.response.headers["retry-after"] == "7"


async def test_override_replaces_the_handler_and_is_still_recorded(upstream, client):
    async def teapot(request):
        return web.json_response({"error": {"message": "nope", "type": "invalid_request_error",
                                                    "param": "model", "code": "model_not_found"}}, status=404)
    upstream.override = teapot
    with pytest.raises(openai.NotFoundError) as raised:
        await client.responses.create(model="gpt-missing", input="hi")
    assert raised.value.code == "model_not_found" and upstream.last.json["model"] == "gpt-missing"
