"""Fuzzing the request validator: whatever bytes arrive, the answer is a JSON object to route or
InvalidRequest (a 400) — never another exception — and a clean body comes out unchanged."""
from __future__ import annotations

import json

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.model import LimitsConfig
from proxy.core.errors import InvalidRequest
from proxy.inbound import validation

pytestmark = pytest.mark.timeout(120)
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = LimitsConfig(max_json_depth=8, max_messages=20)

SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON_VALUES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=25)
JSON_OBJECTS = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=6)
ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "root", "", 3, None])
MESSAGES = st.lists(st.fixed_dictionaries({"role": ROLES}, optional={"content": JSON_VALUES, "name": JSON_VALUES}),
                    max_size=25) | JSON_VALUES
CHAT_BODIES = st.fixed_dictionaries(
    {"model": st.sampled_from(["up/gpt", "", 7, None]) | st.text(max_size=10), "messages": MESSAGES},
    optional={name: JSON_VALUES for name in ("stream", "stream_options", "max_tokens", "max_completion_tokens",
                                              "n", "temperature", "top_p", "tools", "stop", "reasoning_effort")})


def serialize(value, style: int) -> bytes:
    if style == 0:
        return json.dumps(value).encode()
    if style == 1:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return json.dumps(value, indent=2, ensure_ascii=True).encode()


def outcome(raw: bytes, chat: bool = True):
    """The value, or the InvalidRequest code; any other exception fails the test."""
    try:
        body = validation.parse_json_object(raw, LIMITS)
        if chat:
            validation.check_chat(body, LIMITS)
        else:
            validation.check_model_field(body)
        return body
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.error_type == "invalid_request_error" and exc.message
        return exc.code


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(item) for item in value), default=0)
    return 0


def has_wide_integer(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**64
    if isinstance(value, dict):
        return any(has_wide_integer(item) for item in value.values())
    if isinstance(value, list):
        return any(has_wide_integer(item) for item in value)
    return False


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_an_object_or_a_400(raw):
    result = outcome(raw, chat=False)
    assert isinstance(result, (dict, str))


@FUZZ
@given(JSON_OBJECTS, st.integers(0, 2))
def test_a_clean_object_comes_out_unchanged_or_is_refused_for_a_stated_reason(value, style):
    result = outcome(serialize(value, style), chat=False)
    if depth(value) > LIMITS.max_json_depth:
        assert result == "too_deep"
    elif has_wide_integer(value):
        assert result == "number_out_of_range"
    else:
        assert result == value


@FUZZ
@given(CHAT_BODIES, st.integers(0, 2))
def test_chat_bodies_are_accepted_or_refused_never_crash(body, style):
    result = outcome(serialize(body, style))
    if isinstance(result, dict):
        assert result == body
        assert isinstance(body["model"], str) and body["model"]
        assert isinstance(body["messages"], list) and 0 < len(body["messages"]) <= LIMITS.max_messages


@FUZZ
@given(st.dictionaries(st.text(min_size=1, max_size=6), SCALARS, min_size=1, max_size=5), st.data(),
       st.sampled_from([":", " :", ":  ", "\n:"]))
def test_a_repeated_key_is_always_found(value, data, colon):
    key = data.draw(st.sampled_from(sorted(value)))
    pairs = [f"{json.dumps(k)}{colon}{json.dumps(v)}" for k, v in value.items()]
    pairs.insert(data.draw(st.integers(0, len(pairs))), f"{json.dumps(key)}{colon}{json.dumps(value[key])}")
    nested = data.draw(st.booleans())
    text = "{" + ",".join(pairs) + "}"
    raw = (f'{{"outer": [{text}]}}' if nested else text).encode()
    assert outcome(raw, chat=False) in ("duplicate_key", "number_out_of_range")


@FUZZ
@given(st.data())
def test_byte_level_mutations_of_a_valid_body(data):
    raw = bytearray(json.dumps({"model": "up/gpt-test", "messages": [{"role": "user", "content": "hello"}],
                                "temperature": 0.5, "stream": True}).encode())
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(raw)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(st.sampled_from(b'{}[]":,\\\x00\xff\xc3\xed ' + b"0e-+.nNtu"))
        if action == "insert":
            raw.insert(position, byte)
        elif raw and position < len(raw):
            if action == "delete":
                del raw[position]
            else:
                raw[position] = byte
    assert isinstance(outcome(bytes(raw)), (dict, str))


# ---- the same through the running server ----------------------------------------------------------------

@pytest.fixture
async def proxy(proxy_factory):
    return await proxy_factory("""
        upstreams: {demo: {format: mock}}
        limits: {max_json_depth: 8, max_messages: 20}
        health: {enabled: false}
    """)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=CHAT_BODIES | st.binary(max_size=200).map(lambda raw: {"__raw__": raw}))
async def test_the_server_answers_every_body_with_200_or_a_400_envelope(proxy, body):
    data = body["__raw__"] if "__raw__" in body else json.dumps(body).encode()
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.url + "/v1/chat/completions", data=data,
                                headers={"Content-Type": "application/json"},
                                timeout=aiohttp.ClientTimeout(total=30)) as response:
            payload = await response.json(content_type=None)
            status = response.status
    if status != 200:
        assert status in (400, 404), payload  # 404: a well-formed body naming a model nobody serves
        assert set(payload["error"]) == {"message", "type", "code", "param"}
