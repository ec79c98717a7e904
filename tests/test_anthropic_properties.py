"""Property: any valid OpenAI chat request translates into a Messages body that the official
`anthropic` SDK's request types accept (field by field, no unknown keys at any depth) and that
the Messages API's documented rules accept, for both API versions the proxy may speak."""
import collections.abc
import json
import typing
from typing import Any

import pytest
import typing_extensions
from anthropic.types import message_create_params
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.model import UpstreamConfig
from proxy.core.exchange import Target
from proxy.wire.anthropic.request import encode_request
from tests.upstreams import anthropic_rules as rules

pytestmark = pytest.mark.timeout(300)
TOOL_NAMES = ("get_weather", "lookup-1", "do_it")


# ---- the SDK's TypedDicts as a strict schema ---------------------------------------------------------

def conforms(value: Any, annotation: Any) -> bool:
    """Whether `value` fits a type from the SDK's request types; TypedDicts reject unknown keys.
    (pydantic validates Iterable fields lazily and its unions also admit response models, so the
    SDK's types are walked here directly.)"""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation in (object, typing.Any):
        return True
    if origin in (typing_extensions.Required, typing_extensions.NotRequired, typing_extensions.Annotated):
        return conforms(value, args[0])
    if origin is typing.Union:
        return any(conforms(value, option) for option in args)
    if origin is typing.Literal:
        return value in args
    if annotation is type(None):
        return value is None
    if typing_extensions.is_typeddict(annotation):
        return _typed_dict(value, annotation)
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence) or annotation is list:
        return isinstance(value, list) and all(conforms(item, args[0] if args else object) for item in value)
    if origin in (dict, collections.abc.Mapping) or annotation is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation in (int, str, bool):
        return isinstance(value, annotation) and (annotation is bool or not isinstance(value, bool))
    return False  # response models and anything else are not request params


def _typed_dict(value: Any, annotation: Any) -> bool:
    if not isinstance(value, dict):
        return False
    hints = typing_extensions.get_type_hints(annotation, include_extras=True)
    if set(value) - set(hints):
        return False
    for name, hint in hints.items():
        required = typing.get_origin(hint) is typing_extensions.Required
        if name not in value:
            if required:
                return False
            continue
        if not conforms(value[name], hint):
            return False
    return True


def test_the_schema_walker_rejects_what_the_sdk_types_do_not_allow():
    base = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    params = message_create_params.MessageCreateParamsNonStreaming
    assert conforms(base, params)
    assert not conforms({**base, "frequency_penalty": 0.1}, params)
    assert not conforms({**base, "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "n": 1}]}]}, params)
    assert not conforms({**base, "tool_choice": {"type": "required"}}, params)
    assert not conforms({k: v for k, v in base.items() if k != "max_tokens"}, params)


# ---- random valid OpenAI requests --------------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30) \
    .filter(lambda value: value.strip())
_tool_id = st.from_regex(r"call[_:.a-zA-Z0-9-]{1,12}", fullmatch=True)
_json_args = st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True),
                             st.integers() | st.text(max_size=8) | st.booleans(), max_size=3)
_image = st.sampled_from(["data:image/png;base64,iVBORw0KGgo=", "data:image/jpeg;base64,/9j/4AAQ",
                          "data:image/webp;base64,UklGRg==", "https://example.com/cat.png"])
_user_part = st.one_of(_text.map(lambda t: {"type": "text", "text": t}),
                       _image.map(lambda url: {"type": "image_url", "image_url": {"url": url}}))
_user = st.one_of(_text, st.lists(_user_part, min_size=1, max_size=3)).map(lambda c: {"role": "user", "content": c})
_system = st.builds(lambda role, content: {"role": role, "content": content},
                    st.sampled_from(["system", "developer"]), _text)


@st.composite
def _tool_exchange(draw, signed: bool):
    """An assistant turn calling tools (maybe with signed thinking), then one tool message per call."""
    ids = draw(st.lists(_tool_id, min_size=1, max_size=3, unique=True))
    calls = [{"id": call_id, "type": "function",
              "function": {"name": draw(st.sampled_from(TOOL_NAMES)), "arguments": json.dumps(draw(_json_args))}}
             for call_id in ids]
    assistant: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | _text), "tool_calls": calls}
    if signed:
        thought = draw(_text)
        assistant["reasoning_content"] = thought
        assistant["thinking_blocks"] = [{"type": "thinking", "thinking": thought, "signature": rules.sign(thought)}]
    results = [{"role": "tool", "tool_call_id": call_id, "content": draw(_text)} for call_id in ids]
    return [assistant, *results]


@st.composite
def chat_requests(draw):
    messages = draw(st.lists(_system, max_size=2))
    if draw(st.booleans()):
        messages.append({"role": "assistant", "content": draw(_text)})  # an app's opening greeting
    for _ in range(draw(st.integers(0, 3))):
        messages.append(draw(_user))
        if draw(st.booleans()):
            messages.extend(draw(_tool_exchange(signed=draw(st.booleans()))))
        else:
            messages.append({"role": "assistant", "content": draw(_text)})
    messages.append(draw(_user))
    if draw(st.booleans()):
        messages.extend(draw(_tool_exchange(signed=draw(st.booleans()))))
    body: dict[str, Any] = {"model": "main", "messages": messages}
    optional = {
        "temperature": st.floats(0, 2), "top_p": st.floats(0, 1), "top_k": st.integers(0, 100),
        "stop": st.one_of(_text, st.lists(st.one_of(_text, st.just("\n")), max_size=3)),
        "user": _text, "seed": st.integers(), "n": st.just(1), "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2), "parallel_tool_calls": st.booleans(),
        "service_tier": st.sampled_from(["auto", "default", "flex", "standard_only"]),
        "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"},
                                            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}]),
        "stream_options": st.just({"include_usage": True}), "metadata": st.just({"user_id": "u-1", "team": "a"}),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    if draw(st.booleans()):
        body["tools"] = [{"type": "function", "function": {"name": name, "description": "d",
                                                           "parameters": {"type": "object", "properties": {}}}}
                         for name in TOOL_NAMES]
        body["tool_choice"] = draw(st.sampled_from(["auto", "none", "required", None,
                                                    {"type": "function", "function": {"name": "do_it"}}]))
        if body["tool_choice"] is None:
            del body["tool_choice"]
    budget = draw(st.integers(1024, 8000))
    if draw(st.booleans()):
        body["max_tokens"] = budget + draw(st.integers(1, 8000))
        body["thinking"] = draw(st.sampled_from([{"type": "enabled", "budget_tokens": budget}, {"type": "adaptive"},
                                                 {"type": "disabled"}]))
    elif draw(st.booleans()):
        body[draw(st.sampled_from(["max_tokens", "max_completion_tokens"]))] = draw(st.integers(1, 64000))
    return body


def _target(version: str) -> Target:
    upstream = UpstreamConfig(name="claude", base_url="http://127.0.0.1:9/v1", format="anthropic", anthropic_version=version)
    return Target(upstream=upstream, model="claude-sonnet-4-6")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=chat_requests(), stream=st.booleans())
def test_property_translated_bodies_fit_the_sdk_request_types(body, stream):
    native = encode_request(body, _target("2026-10-21"), stream)
    params = message_create_params.MessageCreateParamsStreaming if stream \
        else message_create_params.MessageCreateParamsNonStreaming
    assert conforms(native, params), json.dumps(native)[:2000]
    assert rules.check_request(native, "2026-10-21") is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=chat_requests(), stream=st.booleans())
def test_property_translated_bodies_pass_the_messages_api_rules_with_sampling(body, stream):
    native = encode_request(body, _target("2023-06-01"), stream)
    problem = rules.check_request(native, "2023-06-01")
    assert problem is None, f"{problem}\n{json.dumps(native)[:2000]}"
    assert native["max_tokens"] >= 1 and native["messages"][0]["role"] == "user"
