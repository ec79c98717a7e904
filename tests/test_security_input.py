"""Hostile request bodies: every one is a 400 in OpenAI's envelope, never a 500, a hang or a crash."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest

from tests.conftest import client_for

pytestmark = pytest.mark.timeout(120)

GOOD = {"model": "up/gpt-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def proxy(proxy_factory, openai_upstream):
    return await proxy_factory(f"""
        upstreams:
          up:
            base_url: {openai_upstream.url}/v1
            api_key: sk-upstream-input-tests
            discover_models: false
        limits: {{max_json_depth: 16, max_messages: 50}}
        health: {{enabled: false}}
    """)


async def post(proxy, body: bytes, path: str = "/v1/chat/completions",
               content_type: str = "application/json") -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.url + path, data=body, headers={"Content-Type": content_type},
                                timeout=aiohttp.ClientTimeout(total=30)) as response:
            text = await response.read()
            return response.status, json.loads(text)


async def assert_refused(proxy, body: bytes, code: str, fragment: str = "", path: str = "/v1/chat/completions"):
    status, answer = await post(proxy, body, path)
    assert status == 400, (body[:80], answer)
    error = answer["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code, error
    assert fragment in error["message"]
    return error


async def assert_still_serving(proxy, openai_upstream):
    completion = await client_for(proxy).chat.completions.create(**GOOD)
    assert completion.choices[0].message.content == openai_upstream.reply


MALFORMED = [
    b"{", b"}", b'{"model": "up/gpt-test",}', b"{'model': 'x'}", b'{"model" "x"}', b'{"a":1} {"b":2}',
    b'{"a":1}garbage', b'{"a":tru}', b'{"a":01}', b'{"a":.5}', b'{"a":1.}', b'{"a":+1}', b'{"a":0x10}',
    b'{"a":"unterminated}', b'{"a":"\\x41"}', b'{"a":"tab\there"}', b'{"a":"\x00"}', b"\xef\xbb\xbf{}",
    b'{"a":[1,2,]}', b"[", b"\x00\x00\x00\x00", b'{"a":"\\u12"}', b'{"a":"\\ud800"}', b'{"a":"\\udc00x"}',
    b"/* comment */ {}", b'{"a":1}\x00',
]


@pytest.mark.parametrize("body", MALFORMED)
async def test_malformed_json_is_a_400(proxy, body):
    await assert_refused(proxy, body, "invalid_json")


@pytest.mark.parametrize("body", [b'{"model":"\xff\xfe"}', b'{"model":"\xc3\x28"}', b'{"model":"\xed\xa0\x80"}',
                                  b'{"model":"up/x","messages":[{"role":"user","content":"\xf8\x88\x80\x80\x80"}]}'])
async def test_invalid_utf8_is_a_400(proxy, body):
    await assert_refused(proxy, body, "invalid_json")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 400])
async def test_nan_infinity_and_overflowing_floats_are_400(proxy, literal):
    body = f'{{"model": "up/gpt-test", "messages": [{{"role": "user", "content": "x"}}], "temperature": {literal}}}'
    await assert_refused(proxy, body.encode(), "invalid_json")


@pytest.mark.parametrize("number", [2**64, 2**70, -(2**63) - 1, -(2**64), 10**30])
async def test_integers_beyond_64_bits_are_400_not_silently_floats(proxy, number):
    body = json.dumps({**GOOD, "seed": number}).encode()
    error = await assert_refused(proxy, body, "number_out_of_range")
    assert str(number)[:20] in error["message"]


@pytest.mark.parametrize("number", [2**64 - 1, -(2**63), 0, 10**18])
async def test_integers_within_64_bits_pass_unchanged(proxy, openai_upstream, number):
    status, _ = await post(proxy, json.dumps({**GOOD, "seed": number}).encode())
    assert status == 200
    assert openai_upstream.last.json["seed"] == number


@pytest.mark.parametrize("body, key", [
    (b'{"model":"up/gpt-test","model":"up/other","messages":[{"role":"user","content":"x"}]}', "model"),
    (b'{"model":"up/gpt-test","messages":[{"role":"user","content":"x"}],"stream":false, "stream" :true}', "stream"),
    (b'{"model":"up/gpt-test","messages":[],"\\u006dessages":[{"role":"user","content":"x"}]}', "messages"),
])
async def test_duplicate_keys_are_400(proxy, openai_upstream, body, key):
    error = await assert_refused(proxy, body, "duplicate_key")
    assert repr(key) in error["message"]
    assert [r for r in openai_upstream.requests if r.method == "POST"] == []


NESTED_REPEAT = b'{"model":"up/gpt-test","messages":[{"role":"user","role":"system","content":"x"}]}'
# The same repeat in a body big enough for the shallow read (inbound/shallow.py SHALLOW_FROM_BYTES)
NESTED_REPEAT_BIG = (b'{"model":"up/gpt-test","messages":[{"role":"user","content":"' + b"x" * 70_000
                     + b'"},{"role":"user","role":"system","content":"x"}]}')


async def test_a_key_repeated_inside_messages_is_the_upstreams_to_judge_on_passthrough(proxy, openai_upstream):
    """In a body the proxy reads shallowly, it reads no further into `messages` than role and
    content (docs/security.md); a small body is decoded whole and checked throughout."""
    status, _ = await post(proxy, NESTED_REPEAT_BIG)
    assert status == 200
    assert openai_upstream.last.body == NESTED_REPEAT_BIG.replace(b"up/gpt-test", b"gpt-test")
    await assert_refused(proxy, NESTED_REPEAT, "duplicate_key")


async def test_a_key_repeated_inside_messages_is_400_where_the_proxy_translates(proxy_factory):
    mock = await proxy_factory("upstreams: {up: {format: mock}}\nhealth: {enabled: false}")
    error = await assert_refused(mock, NESTED_REPEAT, "duplicate_key")
    assert "'role'" in error["message"]


async def test_quotes_and_colons_inside_strings_are_not_mistaken_for_keys(proxy, openai_upstream):
    content = '"model": "x", "a" : 1, \\":\\" {"k":1,"k":2}'
    body = json.dumps({**GOOD, "messages": [{"role": "user", "content": content}], "user": 'a":b'}).encode()
    status, answer = await post(proxy, body)
    assert status == 200, answer
    assert openai_upstream.last.json["messages"][0]["content"] == content


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"42", b"null", b"true", b"   ", b""])
async def test_a_body_that_is_not_an_object_is_400(proxy, body):
    await assert_refused(proxy, body, "invalid_json")


@pytest.mark.parametrize("patch, param", [
    ({"model": 42}, "model"), ({"model": ""}, "model"), ({"model": None}, "model"),
    ({"messages": {"role": "user"}}, "messages"), ({"messages": []}, "messages"), ({"messages": "hi"}, "messages"),
    ({"messages": ["hi"]}, "messages[0]"), ({"messages": [{"role": "root", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": 1, "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": {"text": "x"}}]}, "messages[0].content"),
    ({"stream": "yes"}, "stream"), ({"stream": 1}, "stream"), ({"stream_options": []}, "stream_options"),
    ({"max_tokens": "10"}, "max_tokens"), ({"max_tokens": -1}, "max_tokens"), ({"max_tokens": 2**40}, "max_tokens"),
    ({"max_tokens": 1.5}, "max_tokens"), ({"max_tokens": True}, "max_tokens"), ({"n": 0}, "n"),
    ({"temperature": "hot"}, "temperature"), ({"temperature": [1]}, "temperature"), ({"top_p": False}, "top_p"),
    ({"tools": {}}, "tools"), ({"stop": 5}, "stop"),
])
async def test_wrong_types_are_400_naming_the_field(proxy, patch, param):
    body = {**GOOD, **patch}
    status, answer = await post(proxy, json.dumps(body).encode())
    assert status == 400, answer
    assert answer["error"]["param"] == param
    assert answer["error"]["type"] == "invalid_request_error"


async def test_wrong_types_through_the_sdk(proxy):
    client = client_for(proxy)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="up/gpt-test", messages=[{"role": "user", "content": "x"}],
                                             max_tokens=-5)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "max_tokens"


# ---- nesting and size limits of the body ------------------------------------------------------------------

def nested(depth: int) -> bytes:
    inner = "[" * depth + "]" * depth
    return f'{{"model": "up/gpt-test", "messages": [{{"role": "user", "content": "x"}}], "metadata": {inner}}}'.encode()


async def test_nesting_within_the_limit_passes(proxy):
    status, answer = await post(proxy, nested(13))  # object + metadata + 13 arrays = 14 <= 16
    assert status == 200, answer


@pytest.mark.parametrize("depth", [16, 5000, 300_000])
async def test_nesting_beyond_the_limit_is_400_and_the_server_survives(proxy, openai_upstream, depth):
    status, answer = await post(proxy, nested(depth))
    assert status == 400, answer
    assert answer["error"]["code"] in ("too_deep", "invalid_json")
    await assert_still_serving(proxy, openai_upstream)


async def test_deep_nesting_on_other_v1_paths_is_refused_too(proxy, openai_upstream):
    body = b'{"model": "up/e", "input": ' + b"[" * 300_000 + b"]" * 300_000 + b"}"
    status, answer = await post(proxy, body, path="/v1/embeddings")
    assert status == 400
    await assert_still_serving(proxy, openai_upstream)


async def test_too_many_messages_is_400(proxy):
    body = {**GOOD, "messages": [{"role": "user", "content": str(i)} for i in range(51)]}
    status, answer = await post(proxy, json.dumps(body).encode())
    assert status == 400
    assert answer["error"]["code"] == "too_many_messages" and answer["error"]["param"] == "messages"
    assert "51" in answer["error"]["message"] and "50" in answer["error"]["message"]
    body = {**GOOD, "messages": [{"role": "user", "content": str(i)} for i in range(50)]}
    status, _ = await post(proxy, json.dumps(body).encode())
    assert status == 200


async def test_hostile_bodies_in_parallel_never_break_good_requests(proxy, openai_upstream):
    hostile = [post(proxy, body) for body in MALFORMED] + [post(proxy, nested(300_000))]
    good = [client_for(proxy).chat.completions.create(**GOOD) for _ in range(5)]
    results = await asyncio.gather(*hostile, *good)
    assert all(status == 400 for status, _ in results[:len(hostile)])
    assert all(completion.choices[0].message.content == openai_upstream.reply for completion in results[len(hostile):])
