"""Splicing rewritten top-level fields into a client's own bytes (proxy/core/splice.py), and the
passthrough that relies on it: the upstream gets the client's exact bytes but for those fields."""
from __future__ import annotations

import json

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.core import splice
from tests.big_bodies import agent_body

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=6), children, max_size=4), max_leaves=20)
SPACES = st.sampled_from(["", " ", "\n", "\t", "\r\n  ", "   "])
KEYS = st.text(max_size=8) | st.sampled_from(["model", "stream", "stream_options", "messages", "usage", 'we"ird\\'])


def write(value, style: int, space: str) -> str:
    """A JSON text in one of several styles: unicode escaped or raw, compact or spaced."""
    if isinstance(value, dict):
        members = [f"{space}{write(key, style, space)}{space}:{space}{write(item, style, space)}{space}"
                   for key, item in value.items()]
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(space + write(item, style, space) + space for item in value) + "]"
    return json.dumps(value, ensure_ascii=style == 0)


@st.composite
def objects(draw):
    members = draw(st.dictionaries(KEYS, VALUES, max_size=6))
    if draw(st.booleans()):  # `model` at any position among the others
        keys = [key for key in members if key != "model"]
        keys.insert(draw(st.integers(0, len(keys))), "model")
        members = {key: members.get(key, draw(VALUES)) for key in keys}
    return members


@PROPERTY
@given(objects(), st.integers(0, 1), SPACES, SPACES, st.data())
def test_a_splice_and_a_full_decode_and_encode_give_the_same_value(value, style, space, outer, data):
    raw = (outer + write(value, style, space) + outer).encode()
    top = splice.read_top_level(raw)
    assert [member.key for member in top.members] == list(value)
    body = dict(top.values)
    expected = dict(value)
    for key in data.draw(st.lists(st.sampled_from(sorted(value) or ["model"]), max_size=3, unique=True)):
        action = data.draw(st.sampled_from(["replace", "remove", "keep"]))
        if action == "replace":
            body[key] = expected[key] = data.draw(VALUES)
        elif action == "remove":
            body.pop(key, None)
            expected.pop(key, None)
    for key in data.draw(st.lists(KEYS, max_size=2, unique=True)):
        if key not in value:
            body[key] = expected[key] = data.draw(VALUES)
    written = splice.RawObject(top, top.values).encode(body)
    assert json.loads(written) == expected
    if body == top.values:  # nothing changed: the very same bytes
        assert written == raw


@PROPERTY
@given(objects(), SPACES, st.data())
def test_members_nobody_changed_keep_their_exact_bytes(value, space, data):
    value = {**value, "model": "alias"}
    raw = write(value, 0, space).encode()
    top = splice.read_top_level(raw)
    written = splice.RawObject(top, top.values).encode({**top.values, "model": "upstream-model"})
    for member in top.members:
        if member.key != "model":
            assert raw[member.key_start:member.value_end] in written


@PROPERTY
@given(st.dictionaries(KEYS, SCALARS, min_size=1, max_size=5), st.data(), SPACES)
def test_a_repeated_top_level_key_is_always_found(value, data, space):
    key = data.draw(st.sampled_from(sorted(value)))
    repeat = data.draw(SCALARS | st.just(value[key]))
    pairs = [f"{json.dumps(k)}{space}:{json.dumps(v)}" for k, v in value.items()]
    pairs.insert(data.draw(st.integers(0, len(pairs))), f"{json.dumps(key)}:{space}{json.dumps(repeat)}")
    with pytest.raises(splice.RepeatedKey) as caught:
        splice.read_top_level(("{" + ",".join(pairs) + "}").encode())
    assert caught.value.key == key


@PROPERTY
@given(VALUES, st.data())
def test_a_key_repeated_below_the_top_level_is_left_as_written(inner, data):
    raw = ('{"model": "a", "messages": [{"role": "user", "role": "system", "content": %s}]}'
           % json.dumps(inner)).encode()
    top = splice.read_top_level(raw)
    written = splice.RawObject(top, top.values).encode({**top.values, "model": "b"})
    assert written == raw.replace(b'"a"', b'"b"', 1)


def test_an_escaped_key_is_the_key_it_spells():
    top = splice.read_top_level(b'{"\\u006dodel": "x", "m\\"": 1}')
    assert [member.key for member in top.members] == ["model", 'm"']


def test_the_usage_member_is_cut_from_a_chunk_and_nothing_else():
    chunk = b' {"id":"c","choices":[{"delta":{"content":"\\"usage\\": {}"}}] ,  "usage" : {"prompt_tokens":1}}'
    assert splice.without(chunk, "usage") == b' {"id":"c","choices":[{"delta":{"content":"\\"usage\\": {}"}}]}'
    assert splice.without(b'{"usage":1,"id":"c"}', "usage") == b'{"id":"c"}'
    assert splice.without(b'{"id":"c"}', "usage") == b'{"id":"c"}'


# ---- through the server: a coding agent's 4 MiB body ------------------------------------------------

async def test_a_4_mib_body_reaches_the_upstream_as_sent_but_for_the_model(proxy_factory, openai_upstream):
    proxy = await proxy_factory(f"""
        upstreams:
          up: {{base_url: {openai_upstream.url}/v1, api_key: sk-upstream-splice, discover_models: false}}
        health: {{enabled: false}}
    """)
    body = agent_body(4 * 1024 * 1024)
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.url + "/v1/chat/completions", data=body,
                                headers={"Content-Type": "application/json"}) as response:
            assert response.status == 200, await response.text()
    assert openai_upstream.last.body == body.replace(b'"model" : "up/gpt-test"', b'"model" : "gpt-test"', 1)
