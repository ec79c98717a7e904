"""A large Responses body bound only for Responses upstreams, that continues no response the
proxy stored, is read at its top level (proxy/inbound/responses/shallow.py): `input` reaches the upstream as the client's bytes, every other field is checked
and translated as the thorough path does, and the upstream gets the client's bytes but for
`model`, a default reasoning effort and `options:`. Whatever the shallow read doubts, or a body
that continues a response the proxy stored, is read whole, and answered exactly as before."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.core import splice
from proxy.core.errors import InvalidRequest
from proxy.inbound import validation
from proxy.inbound.responses.request import routing_only, to_chat
from proxy.inbound.responses.shallow import read_responses
from proxy.wire.responses.passthrough import encode_native
from tests.big_bodies import PAD, agent_body, outcome, post, sent_both_ways
from tests.test_fuzz_validation import JSON_VALUES, LIMITS, depth, has_wide_integer, serialize
from tests.conftest import RESPONSES_KEY
from tests.upstreams.responses_upstream import ResponsesUpstream

pytestmark = pytest.mark.timeout(120)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def codex_item(role: str, text: str) -> dict:
    """A turn as Codex CLI sends it: a message item of input_text (user) or output_text parts."""
    return {"type": "message", "role": role,
            "content": [{"type": "input_text" if role == "user" else "output_text", "text": text}]}


# ---- the shallow read against the thorough path it stands in for ------------------------------------

ITEMS = st.lists(st.builds(codex_item, st.sampled_from(["user", "assistant"]), st.text(max_size=12))
                 | st.fixed_dictionaries({"type": st.just("function_call_output"), "call_id": st.just("c1"),
                                          "output": st.text(max_size=5)})
                 | st.fixed_dictionaries({"role": st.sampled_from(["user", "developer"]), "content": st.text(max_size=5)})
                 | st.sampled_from([{"type": "web_search_call", "id": "ws_1", "status": "completed"}, 5, "hi"]),
                 min_size=1, max_size=25)
FIELDS = {"instructions": st.text(max_size=8), "stream": st.booleans(), "temperature": st.floats(0, 2),
          "max_output_tokens": st.integers(1, 2**32), "parallel_tool_calls": st.booleans(),
          "reasoning": st.fixed_dictionaries({}, optional={"effort": st.sampled_from(["low", "high", "max", "x"]),
                                                          "summary": st.sampled_from(["auto", "x"])}),
          "tools": st.lists(st.sampled_from([{"type": "function", "name": "f", "parameters": {"type": "object"}},
                                             {"type": "custom", "name": "apply_patch"}, {"type": "web_search"}]),
                            max_size=3),
          "tool_choice": st.sampled_from(["auto", "required", "none", {"type": "function", "name": "f"}]),
          "text": st.sampled_from([{"verbosity": "low"}, {"format": {"type": "json_object"}}]),
          "include": st.just(["reasoning.encrypted_content"]), "prompt_cache_key": st.text(max_size=6),
          "metadata": st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
          "previous_response_id": st.just("resp_upstream_1"), "truncation": st.sampled_from(["auto", "disabled"])}
# A well-formed body, with at most one member (the input included) replaced by any JSON value.
RESPONSES_BODIES = st.builds(
    lambda body, broken: {**body, **broken},
    st.fixed_dictionaries({"model": st.just("main"), "input": ITEMS | st.text(min_size=1, max_size=8),
                           "store": st.just(False)}, optional=FIELDS),
    st.just({}) | st.dictionaries(st.sampled_from(["model", "input", "store", *FIELDS]), JSON_VALUES, max_size=1))


def thorough(raw: bytes):
    """The thorough path's pivot and context when no store is involved: translated, or, for what
    only a Responses upstream takes, the routing-only pivot (proxy/inbound/responses/api.py)."""
    try:
        body = validation.parse_json_object(raw, LIMITS)
    except InvalidRequest as exc:
        return exc
    try:
        pivot, context = to_chat(body)
        validation.check_chat(pivot, LIMITS)
        return pivot, context, None
    except InvalidRequest as refusal:
        return *routing_only(body), refusal


@FUZZ
@given(RESPONSES_BODIES, st.integers(0, 2))
def test_a_body_read_shallowly_is_the_body_read_thoroughly_but_for_its_input(body, style):
    raw = serialize(body, style)
    read, expected = read_responses(raw, LIMITS), thorough(raw)
    if read is None:
        return  # the thorough path answers: with the body or its refusal
    pivot, context, _ = read
    items = body["input"]
    if depth(items) + 1 > LIMITS.max_json_depth or has_wide_integer(items):
        return  # inside input these are the upstream's to judge (docs/security.md)
    assert not isinstance(expected, InvalidRequest), expected
    expected_pivot, expected_context, refusal = expected
    if refusal is not None and ((refusal.param or "").startswith("input") or refusal.param == "messages"):
        return  # refused for an item (or their number, translated): passed through all the same
    assert {**pivot, "messages": None} == {**expected_pivot, "messages": None}
    assert context == expected_context


@FUZZ
@given(RESPONSES_BODIES, st.integers(0, 2), st.sampled_from(["gpt-5", "gpt-test"]))
def test_the_upstream_gets_the_same_bytes_from_the_read_as_from_reading_again(body, style, model):
    raw = serialize(body, style)
    read = read_responses(raw, LIMITS)
    if read is None:
        return
    pivot, _, spliced = read
    sent = sent_both_ways(encode_native, "responses", "responses", model, raw, pivot, spliced)
    assert json.loads(sent) == {**json.loads(raw), "model": model}


# ---- through the server ------------------------------------------------------------------------------

def config(upstream: ResponsesUpstream, extra: str = "") -> str:
    return f"""
    upstreams:
      oai: {{base_url: "{upstream.url}/v1", format: responses, api_key: {RESPONSES_KEY}, discover_models: false}}
      demo: {{format: mock}}
    models:
      main: [oai/gpt-test]
    health: {{enabled: false}}
    {extra}
    """


@pytest.fixture
async def proxy(responses_upstream, proxy_factory):
    return await proxy_factory(config(responses_upstream))


CODEX_REST = '"instructions": "You are Codex.", "store": false, "include": ["reasoning.encrypted_content"]'


async def test_a_4_mib_codex_body_reaches_the_upstream_as_sent_but_for_the_model(proxy, responses_upstream):
    body = agent_body(4 * 1024 * 1024, model="main", big="input", item=codex_item, rest=CODEX_REST)
    status, answer = await post(proxy.url + "/v1/responses", body)
    assert status == 200 and answer["object"] == "response", answer
    assert responses_upstream.last.body == body.replace(b'"model" : "main"', b'"model" : "gpt-test"', 1)


async def test_a_default_effort_and_options_are_spliced_into_the_clients_bytes(responses_upstream, proxy_factory):
    proxy = await proxy_factory(config(responses_upstream).replace(
        "main: [oai/gpt-test]", "main: {targets: [oai/gpt-test], reasoning_effort: high}").replace(
        "discover_models: false}", "discover_models: false, options: {text: {verbosity: low}}}"))
    body = agent_body(1024 * 1024, model="main", big="input", item=codex_item,
                      rest=CODEX_REST + ', "text": {"format": {"type": "text"}}')
    status, answer = await post(proxy.url + "/v1/responses", body)
    assert status == 200, answer
    sent = responses_upstream.last.body
    assert json.loads(sent) == {**json.loads(body), "model": "gpt-test", "reasoning": {"effort": "high"},
                                "text": {"format": {"type": "text"}, "verbosity": "low"}}
    top = splice.read_top_level(body)
    untouched = [member for member in top.members if member.key not in ("model", "text")]
    assert all(body[member.key_start:member.value_end] in sent for member in untouched)


# An input item that names its role twice: a small body is decoded whole and refused for it; a
# big one is read only at its top level and the item is the upstream's to judge (docs/security.md).
def with_repeat_inside(pad: str, rest: str = '"store": false') -> bytes:
    return ('{"model": "main", %s, "input": [{"role": "user", "content": "%s"}, '
            '{"type": "message", "role": "user", "role": "user", "content": "again"}]}' % (rest, pad)).encode()


async def test_a_key_repeated_inside_input_is_the_upstreams_to_judge_in_a_big_body(proxy, responses_upstream):
    status, answer = await post(proxy.url + "/v1/responses", with_repeat_inside(PAD))
    assert status == 200, answer
    assert responses_upstream.last.body == with_repeat_inside(PAD).replace(b'"main"', b'"gpt-test"', 1)
    status, answer = await post(proxy.url + "/v1/responses", with_repeat_inside(""))
    assert status == 400 and answer["error"]["code"] == "duplicate_key"


@pytest.mark.parametrize("rest", ['"store": true', '"stream": false'])  # store: true, by default or said
async def test_a_body_the_upstream_stores_is_read_shallowly_too(proxy, responses_upstream, rest):
    # Passed through, the answer is the upstream's and so is its store: the proxy's keeps nothing.
    status, answer = await post(proxy.url + "/v1/responses", with_repeat_inside(PAD, rest))
    assert status == 200, answer
    assert responses_upstream.last.body == with_repeat_inside(PAD, rest).replace(b'"main"', b'"gpt-test"', 1)
    status, answer = await post(proxy.url + "/v1/responses", with_repeat_inside("", rest))
    assert status == 400 and answer["error"]["code"] == "duplicate_key"


async def test_a_body_continuing_a_response_the_proxy_stored_is_read_whole(proxy):
    rest = '"store": false, "previous_response_id": "resp_byok_0123456789abcdef"'
    answers = [outcome(*await post(proxy.url + "/v1/responses", with_repeat_inside(pad, rest))) for pad in ("", PAD)]
    assert answers[0] == answers[1] and answers[0][:3] == (400, "invalid_request_error", "duplicate_key"), answers


async def test_with_a_user_plugin_the_whole_body_is_read(responses_upstream, proxy_factory):
    proxy = await proxy_factory(config(responses_upstream, 'plugins: [{path: "tests.sample_plugin:TagRequests"}]'))
    status, answer = await post(proxy.url + "/v1/responses", with_repeat_inside(PAD))
    assert status == 400 and answer["error"]["code"] == "duplicate_key"


def base(pad: str, **changes) -> dict:
    return {"model": "main", "store": False, "instructions": "Be brief.",
            "input": [codex_item("user", "hi" + pad), codex_item("assistant", "hello"), codex_item("user", "and?")],
            **changes}


def dumped(pad: str, **changes) -> bytes:
    return json.dumps(base(pad, **changes)).encode()


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# Refused by the proxy either way; or, where only a Responses responses_upstream can judge the body (what to_chat
# refuses is passed through when every target speaks Responses), passed to it either way (None: the
# test responses_upstream fails on it, the same way both times).
HOSTILE = {
    "truncated": (lambda pad: dumped(pad)[:-1], 400),
    "trailing garbage": (lambda pad: dumped(pad) + b"x", 400),
    "not an object": (lambda pad: json.dumps([pad]).encode(), 400),
    "model not text": (lambda pad: dumped(pad, model=42), 400),
    "no model": (lambda pad: json.dumps({k: v for k, v in base(pad).items() if k != "model"}).encode(), 400),
    "model given twice": (lambda pad: dumped(pad).replace(b'"model": "main"', b'"model": "main", "model": "x"'), 400),
    "input given twice": (lambda pad: dumped(pad).replace(b'"store": false', b'"store": false, "input": "x"'), 400),
    "invalid UTF-8 in an item": (lambda pad: dumped(pad).replace(b'"hello"', b'"hel\xc3\x28lo"'), 400),
    "lone surrogate in instructions": (lambda pad: dumped(pad).replace(b'"Be brief."', b'"\\ud800"'), 400),
    "max_output_tokens past 64 bits": (lambda pad: dumped(pad, max_output_tokens=2**70), 400),
    "temperature NaN": (lambda pad: dumped(pad).replace(b'"store": false', b'"store": false, "temperature": NaN'), 400),
    "deep metadata": (lambda pad: dumped(pad).replace(b'"store": false', b'"store": false, "metadata": '
                                                      + deep(40).encode()), 400),
    "deep in an item, past the decoder's guard": (lambda pad: dumped(pad).replace(b'"hello"', deep(5_000).encode()),
                                                  400),
    "temperature not a number": (lambda pad: dumped(pad, temperature="hot"), 200),
    "reasoning effort unknown": (lambda pad: dumped(pad, reasoning={"effort": "ultra"}), 200),
    "a hosted tool": (lambda pad: dumped(pad, tools=[{"type": "web_search"}]), 200),
    "too many items": (lambda pad: dumped("", input=[codex_item("user", "m" + pad)] * 51), 200),
    "an item not an object": (lambda pad: dumped(pad, input=[codex_item("user", pad), 5]), None),  # upstream's 500
    "input empty": (lambda pad: dumped(pad, input=[], instructions=pad), 200),
    "store not a flag": (lambda pad: dumped(pad, store="no"), 200),
}


@pytest.fixture
async def limited(responses_upstream, proxy_factory):
    return await proxy_factory(config(responses_upstream, "limits: {max_json_depth: 16, max_messages: 50}"))


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_hostile_body_gets_the_same_answer_big_or_small(limited, case):
    make, status = HOSTILE[case]
    big, small = make(PAD), make("")
    assert len(big) >= len(PAD) > len(small)
    answers = [outcome(*await post(limited.url + "/v1/responses", body)) for body in (small, big)]
    assert answers[0] == answers[1]
    assert status is None or answers[0][0] == status, answers[0]


async def test_a_mixed_alias_reads_the_whole_body_and_translates_it(responses_upstream, proxy_factory):
    proxy = await proxy_factory(config(responses_upstream).replace("main: [oai/gpt-test]",
                                                                   "main: [oai/gpt-test, demo/echo-1]"))
    status, answer = await post(proxy.url + "/v1/responses", with_repeat_inside(PAD))
    assert status == 400 and answer["error"]["code"] == "duplicate_key"  # decoded whole
    responses_upstream.fail_status = 503
    body = agent_body(256 * 1024, model="main", big="input", item=codex_item, rest=CODEX_REST)
    status, answer = await post(proxy.url + "/v1/responses", body)
    assert status == 200 and answer["object"] == "response", answer
    said = [item["content"][0]["text"] for item in json.loads(body)["input"] if item["role"] == "user"][-1]
    assert answer["output"][0]["content"][0]["text"] == "echo: " + said  # the mock's answer, translated
