"""The chat body read at its top level for a passthrough (proxy/inbound/shallow.py) against the
thorough path it stands in for: the same body, the same refusals, except inside `messages`."""
from __future__ import annotations

import json
import typing

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.model import LimitsConfig
from proxy.core import splice
from proxy.core.errors import InvalidRequest
from proxy.inbound import chat, shallow, validation
from tests.test_fuzz_validation import CHAT_BODIES, LIMITS, depth, has_wide_integer, serialize

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def thorough(raw: bytes):
    try:
        return chat.API.parse_fully(raw, LIMITS)
    except InvalidRequest as exc:
        return exc.code


def test_the_roles_read_in_c_are_the_validators_roles():
    hints = typing.get_type_hints(shallow._MessageHead)
    assert set(typing.get_args(hints["role"])) == validation.CHAT_ROLES


@FUZZ
@given(CHAT_BODIES, st.integers(0, 2))
def test_a_body_read_shallowly_is_the_body_read_thoroughly(body, style):
    raw = serialize(body, style)
    read = shallow.read_chat(raw, LIMITS)
    expected = thorough(raw)
    if read is None:
        return  # the thorough path answers: with the body or its refusal
    shallow_body, _ = read
    messages = body.get("messages")
    if has_wide_integer(messages) or depth(messages) + 1 > LIMITS.max_json_depth:
        return  # inside messages these are the upstream's to judge (docs/security.md)
    assert isinstance(expected, dict), expected
    assert {**shallow_body, "messages": splice.decode(shallow_body["messages"])} == expected


@FUZZ
@given(CHAT_BODIES, st.integers(0, 2), st.sampled_from(["model", "upstream/model-2"]))
def test_the_upstream_gets_the_same_value_as_a_full_encode(body, style, model):
    raw = serialize(body, style)
    read = shallow.read_chat(raw, LIMITS)
    if read is None:
        return
    shallow_body, spliced = read
    sent = spliced.encode({**shallow_body, "model": model, "stream_options": {"include_usage": True}})
    assert json.loads(sent) == {**json.loads(raw), "model": model, "stream_options": {"include_usage": True}}


def test_invalid_utf8_deep_in_a_long_conversation_is_found():
    turns = [{"role": "user", "content": "é" * 200_000}, {"role": "assistant", "content": "x" * 300_000}]
    raw = json.dumps({"model": "m", "messages": turns}, ensure_ascii=False).encode()
    cut = raw.replace(b"x" * 10, b"x" * 9 + b"\xc3", 1)
    assert shallow.read_chat(raw, LimitsConfig()) is not None  # its é straddle the 256 KiB blocks
    assert shallow.read_chat(cut, LimitsConfig()) is None
    assert thorough(cut) == "invalid_json"
