"""A large Messages body bound only for Anthropic upstreams is read at its top level
(proxy/inbound/messages/shallow.py): `messages` reaches Anthropic as the client's bytes, every
other field is checked and translated as the thorough path does, and whatever the shallow read
doubts is answered by the thorough path, exactly as before."""
from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.core import splice
from proxy.core.errors import InvalidRequest
from proxy.inbound import validation
from proxy.inbound.messages.request import chat_body
from proxy.inbound.messages.shallow import read_messages
from proxy.wire.anthropic.passthrough import encode_native
from tests.big_bodies import PAD, agent_body, outcome, post, sent_both_ways
from tests.conftest import anthropic_config
from tests.test_fuzz_validation import JSON_VALUES, LIMITS, depth, has_wide_integer, serialize
from tests.upstreams.anthropic_upstream import DEFAULT_KEY as ANTHROPIC_KEY
from tests.upstreams.anthropic_upstream import Reply

pytestmark = pytest.mark.timeout(120)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODEL = "claude-sonnet-4-6"
VERSION = {"anthropic-version": "2023-06-01"}


# ---- the shallow read against the thorough path it stands in for ------------------------------------

TEXT_BLOCKS = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=8)}), max_size=3)
TURNS = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user"] * 4 + ["assistant"] * 4 + ["system", "tool", 3]),
                                        "content": st.text(max_size=12) | TEXT_BLOCKS}), min_size=1, max_size=25)
THINKING = (st.fixed_dictionaries({"type": st.just("enabled"), "budget_tokens": st.integers(1024, 40_000)})
            | st.sampled_from([{"type": "adaptive"}, {"type": "disabled"}]))
FIELDS = {"max_tokens": st.integers(1, 100_000), "stream": st.booleans(), "thinking": THINKING,
          "output_config": st.fixed_dictionaries({}, optional={"effort": st.sampled_from(["low", "high", "max"])}),
          "metadata": st.fixed_dictionaries({}, optional={"user_id": st.text(max_size=5)}),
          "temperature": st.floats(0, 1), "top_k": st.integers(0, 50), "system": st.text(max_size=8) | TEXT_BLOCKS,
          "tools": st.just([{"name": "t", "input_schema": {"type": "object"}}]),
          "tool_choice": st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "t"}]),
          "stop_sequences": st.lists(st.text(min_size=1, max_size=4), max_size=2),
          "service_tier": st.sampled_from(["auto", "standard_only"])}
# A well-formed body, with at most one member (the messages included) replaced by any JSON value.
MESSAGES_BODIES = st.builds(
    lambda body, broken: {**body, **broken},
    st.fixed_dictionaries({"model": st.just("main"), "max_tokens": FIELDS["max_tokens"], "messages": TURNS},
                          optional={name: value for name, value in FIELDS.items() if name != "max_tokens"}),
    st.just({}) | st.dictionaries(st.sampled_from(["model", "messages", *FIELDS]), JSON_VALUES, max_size=1))


def thorough(raw: bytes):
    try:
        pivot, context = chat_body(validation.parse_json_object(raw, LIMITS))
        validation.check_chat(pivot, LIMITS)
        return pivot, context
    except InvalidRequest as exc:
        return exc


def inside_messages(refusal: InvalidRequest, messages) -> bool:
    """A refusal for something the shallow read leaves to Anthropic: inside `messages`, or their
    number once translated (a system prompt and tool results become messages of their own)."""
    if refusal.code == "number_out_of_range":
        return has_wide_integer(messages)
    if refusal.code in ("too_deep", "duplicate_key"):
        return True  # (the property below only generates repeats and depth inside messages)
    return (refusal.param or "").startswith("messages")


@FUZZ
@given(MESSAGES_BODIES, st.integers(0, 2))
def test_a_body_read_shallowly_is_the_body_read_thoroughly_but_for_its_messages(body, style):
    raw = serialize(body, style)
    read, expected = read_messages(raw, LIMITS), thorough(raw)
    if read is None:
        return  # the thorough path answers: with the body or its refusal
    pivot, context, _ = read
    messages = body["messages"]
    if depth(messages) + 1 > LIMITS.max_json_depth or has_wide_integer(messages):
        return  # inside messages these are Anthropic's to judge (docs/security.md)
    if isinstance(expected, InvalidRequest):
        assert inside_messages(expected, messages), expected
        return
    expected_pivot, expected_context = expected
    if expected_context.anthropic_only is not None and context.anthropic_only is None:
        assert expected_context.anthropic_only.param.startswith("messages")  # a document block, say
        return
    assert {**pivot, "messages": None} == {**expected_pivot, "messages": None}
    assert context == dataclasses.replace(expected_context, estimated_input_tokens=1)  # only a translation reads it


@FUZZ
@given(MESSAGES_BODIES, st.integers(0, 2), st.sampled_from(["claude-x", "claude-sonnet-4-6"]))
def test_anthropic_gets_the_same_bytes_from_the_read_as_from_reading_again(body, style, model):
    raw = serialize(body, style)
    read = read_messages(raw, LIMITS)
    if read is None:
        return
    pivot, _, spliced = read
    sent = sent_both_ways(encode_native, "messages", "anthropic", model, raw, pivot, spliced)
    assert json.loads(sent) == {**json.loads(raw), "model": model}


# ---- through the server ------------------------------------------------------------------------------

@pytest.fixture
async def proxy(anthropic_upstream, proxy_factory):
    return await proxy_factory(anthropic_config(anthropic_upstream, MODEL) + "health: {enabled: false}\n")


@pytest.fixture
async def limited(anthropic_upstream, proxy_factory):
    return await proxy_factory(anthropic_config(anthropic_upstream, MODEL)
                               + "limits: {max_json_depth: 16, max_messages: 50}\n    health: {enabled: false}\n")


async def test_a_4_mib_body_reaches_anthropic_as_sent_but_for_the_model(proxy, anthropic_upstream):
    body = agent_body(4 * 1024 * 1024, model="main", rest='"max_tokens": 64, "system": "Be brief."')
    status, answer = await post(proxy.url + "/v1/messages", body, VERSION)
    assert status == 200, answer
    assert anthropic_upstream.requests[-1].raw == body.replace(b'"model" : "main"', b'"model" : "%s"'
                                                              % MODEL.encode(), 1)


async def test_a_big_body_with_a_server_tool_passes_through_too(proxy, anthropic_upstream):
    tools = '"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]'
    body = agent_body(256 * 1024, model="main", rest='"max_tokens": 64, ' + tools)
    status, answer = await post(proxy.url + "/v1/messages", body, VERSION)
    assert status == 200, answer
    assert anthropic_upstream.requests[-1].raw == body.replace(b'"model" : "main"', b'"model" : "%s"'
                                                              % MODEL.encode(), 1)


async def test_a_default_thinking_and_options_are_spliced_into_the_clients_bytes(anthropic_upstream, proxy_factory):
    proxy = await proxy_factory(anthropic_config(anthropic_upstream, MODEL).replace(
        f"main: [claude/{MODEL}]", f"main: {{targets: [claude/{MODEL}], reasoning_effort: high}}").replace(
        "format: anthropic", "format: anthropic\n        options: {metadata: {user_id: team-a}}"))
    body = agent_body(1024 * 1024, model="main", rest='"max_tokens": 64, "metadata": {"user_id": "u-1"}')
    status, answer = await post(proxy.url + "/v1/messages", body, VERSION)
    assert status == 200, answer
    sent = anthropic_upstream.requests[-1].raw
    assert json.loads(sent) == {**json.loads(body), "model": MODEL, "max_tokens": 16384 + 64,
                                "thinking": {"type": "enabled", "budget_tokens": 16384},
                                "metadata": {"user_id": "team-a"}}
    messages = next(member for member in splice.read_top_level(body).members if member.key == "messages")
    assert body[messages.key_start:messages.value_end] in sent


# A text block that names its text twice: a small body is decoded whole and refused for it; a
# big one is read only at its top level and the block is Anthropic's to judge (docs/security.md).
REPEAT_INSIDE = '{"type": "text", "text": "first", "text": "second"}'


def with_repeat_inside(pad: str) -> bytes:
    return ('{"model": "main", "max_tokens": 64, "messages": [{"role": "user", "content": "%s"}, '
            '{"role": "assistant", "content": "ok"}, {"role": "user", "content": [%s]}]}'
            % (pad, REPEAT_INSIDE)).encode()


async def test_a_key_repeated_inside_messages_is_anthropics_to_judge_in_a_big_body(proxy, anthropic_upstream):
    status, answer = await post(proxy.url + "/v1/messages", with_repeat_inside(PAD), VERSION)
    assert status == 200, answer
    assert anthropic_upstream.requests[-1].raw == with_repeat_inside(PAD).replace(b'"main"', b'"%s"'
                                                                                  % MODEL.encode(), 1)
    status, answer = await post(proxy.url + "/v1/messages", with_repeat_inside(""), VERSION)
    assert status == 400 and "repeats the key 'text'" in answer["error"]["message"]


def base(pad: str, **changes) -> dict:
    return {"model": "main", "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi" + pad}, {"role": "assistant", "content": "hello"},
                         {"role": "user", "content": [{"type": "text", "text": "and?"}]}], **changes}


def dumped(pad: str, **changes) -> bytes:
    return json.dumps(base(pad, **changes)).encode()


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


HOSTILE = {
    "truncated": lambda pad: dumped(pad)[:-1],
    "trailing garbage": lambda pad: dumped(pad) + b"x",
    "not an object": lambda pad: json.dumps([pad]).encode(),
    "model not text": lambda pad: dumped(pad, model=42),
    "model empty": lambda pad: dumped(pad, model=""),
    "no max_tokens": lambda pad: json.dumps({k: v for k, v in base(pad).items() if k != "max_tokens"}).encode(),
    "max_tokens text": lambda pad: dumped(pad, max_tokens="64"),
    "max_tokens past 2**31": lambda pad: dumped(pad, max_tokens=2**40),
    "max_tokens past 64 bits": lambda pad: dumped(pad, max_tokens=2**70),
    "stream not a flag": lambda pad: dumped(pad, stream="yes"),
    "thinking type": lambda pad: dumped(pad, thinking={"type": "sometimes"}),
    "thinking budget": lambda pad: dumped(pad, thinking={"type": "enabled", "budget_tokens": "lots"}),
    "effort": lambda pad: dumped(pad, output_config={"effort": "ultra"}),
    "output_config not an object": lambda pad: dumped(pad, output_config=[]),
    "metadata not an object": lambda pad: dumped(pad, metadata=[]),
    "user_id not text": lambda pad: dumped(pad, metadata={"user_id": 5}),
    "temperature": lambda pad: dumped(pad, temperature=5),
    "temperature NaN": lambda pad: dumped(pad).replace(b'"max_tokens": 64', b'"max_tokens": 64, "temperature": NaN'),
    "tool_choice names no tool": lambda pad: dumped(pad, tool_choice={"type": "tool", "name": "nope"}),
    "system not text": lambda pad: dumped(pad, system=5),
    "messages empty": lambda pad: dumped("", messages=[], system=pad or "s"),
    "messages not an array": lambda pad: dumped("", messages="hi" + pad),
    "too many messages": lambda pad: dumped("", messages=[{"role": "user", "content": "m" + pad}] * 51),
    "role unknown": lambda pad: dumped(pad).replace(b'"assistant"', b'"root"'),
    "role system inline": lambda pad: dumped(pad).replace(b'"assistant"', b'"system"'),
    "content a number": lambda pad: dumped(pad).replace(b'"hello"', b"5"),
    "content missing": lambda pad: dumped(pad).replace(b', "content": "hello"', b""),
    "invalid UTF-8 in a message": lambda pad: dumped(pad).replace(b'"hello"', b'"hel\xc3\x28lo"'),
    "invalid UTF-8 in the model": lambda pad: dumped(pad).replace(b'"main"', b'"ma\xffin"'),
    "model given twice": lambda pad: dumped(pad).replace(b'"model": "main"', b'"model": "main", "model": "x"'),
    "messages given twice": lambda pad: dumped(pad).replace(b'"max_tokens": 64', b'"max_tokens": 64, "messages": []'),
    "deep metadata": lambda pad: dumped(pad).replace(b'"max_tokens": 64', b'"max_tokens": 64, "metadata": '
                                                     + deep(40).encode()),
    "deep in a message, past the decoder's guard": lambda pad: dumped(pad).replace(b'"hello"', deep(5_000).encode()),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_hostile_body_gets_the_same_answer_big_or_small(limited, case):
    big, small = HOSTILE[case](PAD), HOSTILE[case]("")
    assert len(big) >= len(PAD) > len(small)
    answers = [outcome(*await post(limited.url + "/v1/messages", body, VERSION)) for body in (small, big)]
    assert answers[0] == answers[1]
    assert answers[0][0] == 400, answers[0]  # the inline system turn: by Anthropic (the test upstream), both times


async def test_with_a_user_plugin_the_whole_body_is_read(anthropic_upstream, proxy_factory):
    proxy = await proxy_factory(anthropic_config(anthropic_upstream, MODEL)
                                + 'plugins: [{path: "tests.sample_plugin:TagRequests"}]\n')
    status, answer = await post(proxy.url + "/v1/messages", with_repeat_inside(PAD), VERSION)
    assert status == 400 and "repeats the key 'text'" in answer["error"]["message"]


async def test_a_mixed_alias_reads_the_whole_body_and_translates_it(anthropic_upstream, openai_upstream,
                                                                    proxy_factory):
    proxy = await proxy_factory(f"""
    upstreams:
      claude: {{base_url: "{anthropic_upstream.base_url}", format: anthropic, api_key: {ANTHROPIC_KEY}}}
      chat: {{base_url: "{openai_upstream.url}/v1", api_key: sk-upstream, discover_models: false}}
    models:
      main: [claude/{MODEL}, chat/gpt-test]
    health: {{enabled: false}}
    """)
    status, answer = await post(proxy.url + "/v1/messages", with_repeat_inside(PAD), VERSION)
    assert status == 400 and "repeats the key 'text'" in answer["error"]["message"]  # decoded whole
    anthropic_upstream.script(Reply(status=529))
    body = agent_body(256 * 1024, model="main", rest='"max_tokens": 64')
    status, answer = await post(proxy.url + "/v1/messages", body, VERSION)
    assert status == 200 and answer["type"] == "message", answer
    translated = openai_upstream.last.json
    assert translated["model"] == "gpt-test" and translated["messages"] == json.loads(body)["messages"]
