"""proxy/core/reasoning.py on its own: precedence, dialects, budgets, response normalization."""
from __future__ import annotations

import copy
import json

import pytest

from plugins.reasoning import ReasoningSettings
from proxy.config.model import EFFORT_LEVELS, AliasConfig, ModelSettings, UpstreamConfig
from proxy.core import reasoning
from proxy.core.errors import InvalidRequest

pytestmark = pytest.mark.timeout(30)

BUDGETS = dict(ReasoningSettings().budgets)
MESSAGES = [{"role": "user", "content": "hi"}]


def upstream(kind: str = "generic", fmt: str = "openai", **extra) -> UpstreamConfig:
    return UpstreamConfig(name=kind, base_url="http://127.0.0.1:1/v1", format=fmt, kind=kind, **extra)


def rewrite(body, up=None, alias=None, settings=None, **kwargs):
    original = copy.deepcopy(body)
    out = reasoning.rewrite_request(body, up or upstream(), alias, settings, BUDGETS, **kwargs)
    assert body == original, "the client's body must never be mutated"
    return out


# ---- nothing asked: nothing added, not even a copy --------------------------------------------

@pytest.mark.parametrize("kind,fmt", [("openai", "openai"), ("openrouter", "openai"), ("anthropic", "anthropic"),
                                      ("zai", "openai"), ("gemini", "openai")])
def test_nothing_asked_leaves_the_body_itself(kind, fmt):
    body = {"model": "m", "messages": MESSAGES, "temperature": 0.2}
    assert rewrite(body, upstream(kind, fmt)) is body


# ---- the effort dialect ----------------------------------------------------------------------

@pytest.mark.parametrize("level", EFFORT_LEVELS)
def test_openai_kind_gets_reasoning_effort_verbatim(level):
    out = rewrite({"messages": MESSAGES, "reasoning_effort": level}, upstream("openai"))
    assert out == {"messages": MESSAGES, "reasoning_effort": level}


@pytest.mark.parametrize("level,expected", [("none", "none"), ("minimal", "low"), ("low", "low"),
                                            ("medium", "medium"), ("high", "high"), ("xhigh", "high")])
def test_gemini_gets_only_the_values_it_accepts(level, expected):
    out = rewrite({"messages": MESSAGES, "reasoning_effort": level}, upstream("gemini"))
    assert out["reasoning_effort"] == expected


def test_openrouter_style_object_becomes_reasoning_effort_for_openai():
    out = rewrite({"messages": MESSAGES, "reasoning": {"effort": "low", "exclude": True}}, upstream("openai"))
    assert out == {"messages": MESSAGES, "reasoning_effort": "low"}


def test_a_token_budget_maps_to_the_smallest_level_that_covers_it():
    out = rewrite({"messages": MESSAGES, "reasoning": {"max_tokens": 3000}}, upstream("groq"))
    assert out["reasoning_effort"] == "medium"  # low is 2048, medium 8192
    out = rewrite({"messages": MESSAGES, "reasoning": {"max_tokens": 10**6}}, upstream("groq"))
    assert out["reasoning_effort"] == "xhigh"


# ---- OpenRouter ------------------------------------------------------------------------------

def test_openrouter_gets_the_reasoning_object():
    out = rewrite({"messages": MESSAGES, "reasoning_effort": "high"}, upstream("openrouter"))
    assert out == {"messages": MESSAGES, "reasoning": {"effort": "high"}}


def test_openrouter_keeps_max_tokens_and_exclude_and_unknown_keys():
    body = {"messages": MESSAGES, "reasoning": {"max_tokens": 2000, "exclude": True, "summary": "auto"}}
    out = rewrite(body, upstream("openrouter"))
    assert out["reasoning"] == {"max_tokens": 2000, "exclude": True, "summary": "auto"}


def test_openrouter_named_level_wins_over_max_tokens():
    out = rewrite({"messages": MESSAGES, "reasoning_effort": "low", "reasoning": {"max_tokens": 9000}},
                  upstream("openrouter"))
    assert out["reasoning"] == {"effort": "low"}


# ---- Anthropic budget --------------------------------------------------------------------------

def test_anthropic_budget_with_small_max_tokens_keeps_the_answer_room():
    body = {"messages": MESSAGES, "reasoning_effort": "high", "max_tokens": 1000,
            "temperature": 0.3, "top_k": 5, "top_p": 0.5}
    out = rewrite(body, upstream("anthropic", "anthropic"))
    assert out["thinking"] == {"type": "enabled", "budget_tokens": BUDGETS["high"]}
    assert out["max_tokens"] == BUDGETS["high"] + 1000
    assert out["thinking"]["budget_tokens"] < out["max_tokens"]
    assert not {"temperature", "top_k", "top_p", "reasoning_effort"} & set(out)


def test_anthropic_budget_leaves_a_large_enough_max_tokens_and_allowed_sampling():
    body = {"messages": MESSAGES, "reasoning_effort": "low", "max_completion_tokens": 30000,
            "temperature": 1, "top_p": 0.97}
    out = rewrite(body, upstream("anthropic", "anthropic"))
    assert out["max_tokens"] == 30000 and "max_completion_tokens" not in out
    assert out["temperature"] == 1 and out["top_p"] == 0.97


def test_anthropic_budget_without_any_max_tokens_adds_default_answer_room():
    out = rewrite({"messages": MESSAGES, "reasoning_effort": "minimal"}, upstream("anthropic", "anthropic"))
    assert out["thinking"]["budget_tokens"] == 1024
    assert out["max_tokens"] == 1024 + reasoning.DEFAULT_ANSWER_TOKENS


def test_anthropic_budget_uses_the_configured_max_tokens_default():
    out = rewrite({"messages": MESSAGES, "reasoning_effort": "medium"}, upstream("anthropic", "anthropic"),
                  settings=ModelSettings(max_tokens=20000))
    assert out["max_tokens"] == 20000


def test_anthropic_exact_budget_is_raised_to_the_minimum():
    out = rewrite({"messages": MESSAGES, "reasoning": {"max_tokens": 100}}, upstream("anthropic", "anthropic"))
    assert out["thinking"]["budget_tokens"] == reasoning.MIN_THINKING_BUDGET


def test_anthropic_none_means_no_thinking_and_no_other_change():
    body = {"messages": MESSAGES, "reasoning_effort": "none", "temperature": 0.2, "max_tokens": 50}
    out = rewrite(body, upstream("anthropic", "anthropic"))
    assert out == {"messages": MESSAGES, "temperature": 0.2, "max_tokens": 50}


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "f"}}])
def test_anthropic_forced_tool_choice_wins_over_thinking(choice):
    out = rewrite({"messages": MESSAGES, "reasoning_effort": "high", "tool_choice": choice, "temperature": 0.1},
                  upstream("anthropic", "anthropic"))
    assert "thinking" not in out and out["temperature"] == 0.1


# ---- Anthropic adaptive --------------------------------------------------------------------

@pytest.mark.parametrize("level,effort", [("minimal", "low"), ("low", "low"), ("medium", "medium"),
                                          ("high", "high"), ("xhigh", "max")])
def test_adaptive_model_gets_adaptive_thinking_and_effort(level, effort):
    body = {"messages": MESSAGES, "reasoning_effort": level, "max_tokens": 1000, "temperature": 0.5,
            "output_config": {"format": {"type": "json_schema"}}}
    out = rewrite(body, upstream("anthropic", "anthropic"), settings=ModelSettings(reasoning_style="adaptive"))
    assert out["thinking"] == {"type": "adaptive"}
    assert out["output_config"] == {"format": {"type": "json_schema"}, "effort": effort}
    assert out["max_tokens"] == 1000 and "temperature" not in out


# ---- binary ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["zai", "moonshot"])
@pytest.mark.parametrize("level", EFFORT_LEVELS)
def test_binary_kinds_get_enabled_or_disabled(kind, level):
    out = rewrite({"messages": MESSAGES, "reasoning_effort": level}, upstream(kind))
    assert out == {"messages": MESSAGES, "thinking": {"type": "disabled" if level == "none" else "enabled"}}


def test_reasoning_style_overrides_the_kind():
    out = rewrite({"messages": MESSAGES, "reasoning_effort": "low"}, upstream("openai"),
                  settings=ModelSettings(reasoning_style="binary"))
    assert out["thinking"] == {"type": "enabled"}
    out = rewrite({"messages": MESSAGES, "reasoning_effort": "low"}, upstream("zai"),
                  settings=ModelSettings(reasoning_style="effort"))
    assert out == {"messages": MESSAGES, "reasoning_effort": "low"}


# ---- thinking: false -----------------------------------------------------------------------------

def test_thinking_false_removes_every_reasoning_field():
    body = {"messages": MESSAGES, "reasoning_effort": "high", "reasoning": {"effort": "high"},
            "thinking": {"type": "enabled"}}
    out = rewrite(body, upstream("openai"), alias=AliasConfig(reasoning_effort="high"),
                  settings=ModelSettings(thinking=False))
    assert out == {"messages": MESSAGES}


# ---- precedence -------------------------------------------------------------------------------

def test_precedence_request_over_alias_over_model():
    up = upstream("openai")
    alias, model = AliasConfig(reasoning_effort="low"), ModelSettings(reasoning_effort="high")
    assert rewrite({"messages": MESSAGES, "reasoning_effort": "minimal"}, up, alias, model)["reasoning_effort"] == "minimal"
    assert rewrite({"messages": MESSAGES}, up, alias, model)["reasoning_effort"] == "low"
    assert rewrite({"messages": MESSAGES}, up, None, model)["reasoning_effort"] == "high"
    assert rewrite({"messages": MESSAGES}, up, None, None, advertised_default="medium")["reasoning_effort"] == "medium"


def test_enabled_alone_takes_the_configured_level_else_medium():
    up = upstream("openai")
    body = {"messages": MESSAGES, "reasoning": {"enabled": True}}
    assert rewrite(body, up, AliasConfig(reasoning_effort="high"))["reasoning_effort"] == "high"
    assert rewrite(body, up)["reasoning_effort"] == "medium"
    assert rewrite({"messages": MESSAGES, "reasoning": {"enabled": False}}, up)["reasoning_effort"] == "none"


def test_exclude_alone_keeps_the_configured_level_for_openrouter():
    out = rewrite({"messages": MESSAGES, "reasoning": {"exclude": True}}, upstream("openrouter"),
                  AliasConfig(reasoning_effort="low"))
    assert out["reasoning"] == {"effort": "low", "exclude": True}


# ---- accepted levels --------------------------------------------------------------------------

def test_a_level_outside_the_accepted_ones_is_a_400_listing_them():
    with pytest.raises(InvalidRequest) as caught:
        rewrite({"messages": MESSAGES, "reasoning_effort": "xhigh"}, upstream("lmstudio"),
                accepted=("low", "medium", "high"), model_label="lms/qwen")
    assert caught.value.status == 400 and caught.value.param == "reasoning_effort"
    assert "low, medium, high" in caught.value.message and "lms/qwen" in caught.value.message


def test_a_configured_default_outside_the_accepted_ones_moves_to_the_nearest():
    out = rewrite({"messages": MESSAGES}, upstream("lmstudio"), AliasConfig(reasoning_effort="xhigh"),
                  accepted=("low", "medium", "high"))
    assert out["reasoning_effort"] == "high"


def test_the_advertised_default_applies_when_nothing_is_configured():
    out = rewrite({"messages": MESSAGES}, upstream("lmstudio"), accepted=("none", "low", "high"),
                  advertised_default="low")
    assert out["reasoning_effort"] == "low"


@pytest.mark.parametrize("body,param", [
    ({"reasoning_effort": "max"}, "reasoning_effort"),
    ({"reasoning_effort": 3}, "reasoning_effort"),
    ({"reasoning": "high"}, "reasoning"),
    ({"reasoning": {"effort": "huge"}}, "reasoning.effort"),
    ({"reasoning": {"max_tokens": -1}}, "reasoning.max_tokens"),
    ({"reasoning": {"max_tokens": True}}, "reasoning.max_tokens"),
    ({"reasoning": {"exclude": "yes"}}, "reasoning.exclude"),
])
def test_malformed_reasoning_is_a_400_naming_the_field(body, param):
    with pytest.raises(InvalidRequest) as caught:
        rewrite({"messages": MESSAGES, **body}, upstream("openai"))
    assert caught.value.param == param


# ---- levels_for (the catalog's view) --------------------------------------------------------------

def test_levels_for():
    assert reasoning.levels_for("openai", None) == ((), None)
    assert reasoning.levels_for("openai", ModelSettings(thinking=False, reasoning_effort="low")) == ((), None)
    assert reasoning.levels_for("anthropic", ModelSettings(thinking=True, reasoning_effort="high")) == (EFFORT_LEVELS, "high")
    assert reasoning.levels_for("lmstudio", ModelSettings(reasoning_levels=("low", "high"), reasoning_effort="medium")) \
        == (("low", "high"), "low")
    assert reasoning.levels_for("openai", ModelSettings(reasoning_effort="low")) == ((), "low")


# ---- the answer back -------------------------------------------------------------------------------

def test_normalize_payload_maps_openrouter_reasoning():
    payload = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "4",
                                                               "reasoning": "2+2 is 4"}}]}).encode()
    out = json.loads(reasoning.normalize_payload(payload))
    assert out["choices"][0]["message"]["reasoning_content"] == "2+2 is 4"
    assert out["choices"][0]["message"]["reasoning"] == "2+2 is 4"


def test_normalize_payload_reads_reasoning_details_text():
    details = [{"type": "reasoning.text", "text": "first "}, {"type": "reasoning.encrypted", "data": "xx"},
               {"type": "reasoning.summary", "summary": "then"}]
    payload = json.dumps({"choices": [{"message": {"content": "", "reasoning_details": details}}]}).encode()
    out = json.loads(reasoning.normalize_payload(payload))
    assert out["choices"][0]["message"]["reasoning_content"] == "first then"


@pytest.mark.parametrize("payload", [
    b'{"choices":[{"message":{"content":"no thinking here"}}]}',
    b'{"choices":[{"message":{"reasoning_content":"already","reasoning":"x"}}]}',
    b'not json but mentions "reasoning"',
])
def test_normalize_payload_returns_the_same_bytes_when_nothing_changes(payload):
    assert reasoning.normalize_payload(payload) is payload


def test_exclude_alone_leaves_a_native_anthropic_thinking_untouched():
    body = {"messages": MESSAGES, "reasoning": {"exclude": True},
            "thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 5000}
    out = rewrite(body, upstream("anthropic", "anthropic"))
    assert out == {"messages": MESSAGES, "thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 5000}


def test_a_level_replaces_a_native_anthropic_thinking():
    body = {"messages": MESSAGES, "reasoning_effort": "none", "thinking": {"type": "enabled", "budget_tokens": 2000}}
    assert rewrite(body, upstream("anthropic", "anthropic")) == {"messages": MESSAGES}


@pytest.mark.parametrize("field,value", [("max_tokens", "many"), ("max_completion_tokens", 0), ("max_tokens", True)])
def test_a_malformed_max_tokens_is_refused_not_overwritten(field, value):
    with pytest.raises(InvalidRequest) as caught:
        rewrite({"messages": MESSAGES, "reasoning_effort": "low", field: value}, upstream("anthropic", "anthropic"))
    assert caught.value.param == field
