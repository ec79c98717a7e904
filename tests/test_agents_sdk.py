"""The OpenAI Agents SDK (`openai-agents`, pinned in the test extra) with its default Responses
model, pointed at the proxy, running an agent with a function tool on a chat upstream, on an
Anthropic upstream and on a Responses-format one (all scripted by the recorder). The SDK calls
the tool itself, so the second turn carries the tool's output through the proxy."""
from __future__ import annotations

from typing import Callable, NamedTuple

import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from tests.agents.recorder import Recorder, function_call, text, tool_use

pytestmark = pytest.mark.timeout(60)
set_tracing_disabled(True)  # the SDK would otherwise export traces to OpenAI
CALLS: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    CALLS.append(city)
    return f"WEATHER-REPORT: sunny in {city}"


class Setup(NamedTuple):
    agent: Agent
    upstream_requests: Callable[[], list]  # what the scripted upstream received, in order


@pytest.fixture
async def rec():
    async with Recorder() as recorder:
        yield recorder


@pytest.fixture(params=["chat", "anthropic", "responses"])
async def setup(request, rec, proxy_factory):
    target = {"chat": "chat/test-model", "anthropic": "claude/claude-test", "responses": "native/test-model"}[
        request.param]
    proxy = await proxy_factory(f"""
    upstreams:
      chat: {{base_url: "{rec.base_url_v1}", api_key: sk-upstream-0123456789, discover_models: false}}
      claude: {{base_url: "{rec.origin}", format: anthropic, api_key: sk-upstream-0123456789, discover_models: false}}
      native: {{base_url: "{rec.base_url_v1}", format: responses, api_key: sk-upstream-0123456789,
               discover_models: false}}
    models:
      main: [{target}]
    """)
    CALLS.clear()
    model = OpenAIResponsesModel(model="main", openai_client=AsyncOpenAI(base_url=proxy.base_url, api_key="sk-client"))
    agent = Agent(name="weather", instructions="Answer with the tool.", model=model, tools=[get_weather])
    first = (tool_use("get_weather", {"city": "Paris"}, "toolu_w1") if request.param == "anthropic"
             else function_call("get_weather", {"city": "Paris"}, "call_w1"))
    script, requests = {"chat": (rec.chat, rec.chat_requests), "anthropic": (rec.messages, rec.messages_requests),
                        "responses": (rec.responses, rec.responses_requests)}[request.param]
    script.script([first], [text("It is sunny in Paris.")])
    return Setup(agent, requests)


async def test_an_agent_runs_its_function_tool_through_the_proxy(setup):
    result = await Runner.run(setup.agent, "What is the weather in Paris?")
    assert result.final_output == "It is sunny in Paris."
    assert CALLS == ["Paris"]
    first, second = setup.upstream_requests()
    assert any("get_weather" in str(tool) for tool in first.json["tools"])
    assert "WEATHER-REPORT: sunny in Paris" in second.body.decode()


async def test_a_streamed_agent_run_through_the_proxy(setup):
    run = Runner.run_streamed(setup.agent, "What is the weather in Paris?")
    kinds = [event.type async for event in run.stream_events()]
    assert run.final_output == "It is sunny in Paris."
    assert CALLS == ["Paris"]
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert len(setup.upstream_requests()) == 2
