"""Reasoning translation: one effort vocabulary in, each provider's native form out.

Pure functions and tables, no I/O: the `plugins/reasoning.py` middleware calls
`rewrite_request` on the way out and `normalize_*` on the way back; the catalog
calls `levels_for` to show what a model accepts.

The vocabulary a client (or the config) speaks:
  * `reasoning_effort`: none | minimal | low | medium | high | xhigh
  * OpenRouter-style `reasoning: {effort | max_tokens, exclude, enabled}`
Precedence: the request > the alias's `reasoning_effort` > the model's > the
default an upstream catalog advertises. When nobody asks, nothing is added.

Dialects (what an upstream understands), chosen by the model's
`reasoning_style`, else by the upstream's format and kind:
  effort      `reasoning_effort` (values mapped per kind where a provider takes fewer)
  openrouter  `reasoning: {effort | max_tokens, exclude}`
  budget      Anthropic `thinking: {type: enabled, budget_tokens}` with max_tokens above the budget
  adaptive    Anthropic `thinking: {type: adaptive}` + `output_config: {effort}`
  binary      `thinking: {type: enabled | disabled}` (GLM on z.ai, Kimi on Moonshot)
  off         the model is marked `thinking: false`: reasoning fields removed
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

from proxy.config.formats import FORMATS
from proxy.config.model import EFFORT_LEVELS, AliasConfig, ModelSettings, UpstreamConfig
from proxy.core import jsonutil
from proxy.core.errors import InvalidRequest
from proxy.core.exchange import requested_max_tokens

# Anthropic refuses a thinking budget below this (and one not below max_tokens).
MIN_THINKING_BUDGET = 1024
# Room left for the visible answer when the request names no max_tokens at all.
DEFAULT_ANSWER_TOKENS = 4096
# The level used when a client only says `reasoning: {enabled: true}` and nothing is configured.
DEFAULT_ON_LEVEL = "medium"
# With thinking on, Anthropic accepts top_p only from this value up, and no temperature other than 1.
ANTHROPIC_MIN_TOP_P = 0.95

# Gemini's OpenAI-compatible endpoint answers 400 to anything but none/low/medium/high
# ("Invalid reasoning_effort: minimal. Valid values are: high, low, medium, none").
_EFFORT_VALUES_BY_KIND: Mapping[str, Mapping[str, str]] = {
    "gemini": {"none": "none", "minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"},
}
# Anthropic's output_config.effort is low | medium | high | max (xhigh exists on Opus 4.7 only,
# max on every model that takes adaptive thinking), so our xhigh becomes max.
ADAPTIVE_EFFORT: Mapping[str, str] = {"minimal": "low", "low": "low", "medium": "medium", "high": "high",
                                      "xhigh": "max"}
_DIALECT_BY_KIND: Mapping[str, str] = {"openrouter": "openrouter", "anthropic": "budget",
                                       "zai": "binary", "moonshot": "binary"}
# What the client may send in our vocabulary; removed once translated into a native form.
_CLIENT_FIELDS = ("reasoning_effort", "reasoning")
# Everything that asks for reasoning, removed for a model marked `thinking: false`.
_ALL_REASONING_FIELDS = ("reasoning_effort", "reasoning", "thinking")


@dataclass(frozen=True, slots=True)
class Reasoning:
    """What was asked, after precedence: a level, or an exact budget, or only `exclude`."""

    level: Optional[str] = None           # one of EFFORT_LEVELS; None when no level was asked
    budget_tokens: Optional[int] = None   # an exact thinking budget (OpenRouter-style max_tokens)
    exclude: Optional[bool] = None        # OpenRouter's "think, but do not send me the reasoning"
    source: str = "request"               # request | alias | model | catalog | default
    # `reasoning: {enabled: true}` alone: on, at whatever level is configured (settled in resolve()).
    default_level: bool = False

    @property
    def asks_for_thinking(self) -> bool:
        return self.level not in (None, "none") or bool(self.budget_tokens)

    @property
    def asks_for_nothing(self) -> bool:
        return self.level is None and self.budget_tokens is None


# ---- which dialect, which levels ---------------------------------------------------------

def dialect_for(upstream: UpstreamConfig, settings: ModelSettings | None) -> str:
    if settings is not None and settings.thinking is False:
        return "off"
    if settings is not None and settings.reasoning_style:
        return settings.reasoning_style
    fixed = FORMATS[upstream.format].reasoning_dialect if upstream.format else None
    if fixed:
        return fixed
    return _DIALECT_BY_KIND.get(upstream.kind or "generic", "effort")


def levels_for(target_kind: str, settings: ModelSettings | None) -> tuple[tuple[str, ...], Optional[str]]:
    """(accepted levels, default level) for the catalog; ((), None) when nothing is known.

    Configured `reasoning_levels` (or levels a catalog discovered and merged into the
    settings) win; a model marked `thinking: true` takes the whole vocabulary, since
    every dialect maps each level; a model marked `thinking: false` takes none.
    """
    if settings is None or settings.thinking is False:
        return (), None
    default = settings.reasoning_effort
    if settings.reasoning_levels:
        levels = tuple(settings.reasoning_levels)
        if default is not None and default not in levels:
            default = nearest_level(default, levels)
        return levels, default
    if settings.thinking or settings.reasoning_style:
        return EFFORT_LEVELS, default
    return (), default


def nearest_level(level: str, accepted: Sequence[str]) -> str:
    """The accepted level closest to `level` on the effort scale (the lower one on a tie)."""
    known = [candidate for candidate in accepted if candidate in EFFORT_LEVELS]
    if not known:
        return level
    rank = EFFORT_LEVELS.index(level)
    return min(known, key=lambda candidate: (abs(EFFORT_LEVELS.index(candidate) - rank),
                                             EFFORT_LEVELS.index(candidate)))


def level_for_budget(budget: int, budgets: Mapping[str, int]) -> str:
    """The smallest level whose configured budget covers `budget` tokens (xhigh beyond the table)."""
    if budget <= 0:
        return "none"
    for level in EFFORT_LEVELS[1:]:
        if budgets.get(level, 0) >= budget:
            return level
    return EFFORT_LEVELS[-1]


# ---- what was asked -------------------------------------------------------------------------

def client_reasoning(body: Mapping[str, Any]) -> Reasoning | None:
    """The client's own ask, validated; None when the body says nothing about reasoning."""
    effort = body.get("reasoning_effort")
    block = body.get("reasoning")
    if effort is None and block is None:
        return None
    if effort is not None:
        _check_level(effort, "reasoning_effort")
    if block is None:
        return Reasoning(level=effort)
    if not isinstance(block, Mapping):
        raise InvalidRequest("'reasoning' must be an object such as {\"effort\": \"high\"}", param="reasoning")
    block_effort, budget = block.get("effort"), block.get("max_tokens")
    exclude, enabled = block.get("exclude"), block.get("enabled")
    if block_effort is not None:
        _check_level(block_effort, "reasoning.effort")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        raise InvalidRequest("'reasoning.max_tokens' must be a non-negative integer", param="reasoning.max_tokens")
    for name, value in (("exclude", exclude), ("enabled", enabled)):
        if value is not None and not isinstance(value, bool):
            raise InvalidRequest(f"'reasoning.{name}' must be true or false", param=f"reasoning.{name}")
    level = effort if effort is not None else block_effort
    if enabled is False or (level is None and budget == 0):
        level, budget = "none", None
    if level is not None:
        budget = None  # OpenRouter takes one of effort and max_tokens; the named level wins
    return Reasoning(level=level, budget_tokens=budget, exclude=exclude,
                     default_level=bool(enabled) and level is None and budget is None)


def _check_level(value: Any, param: str) -> None:
    if value not in EFFORT_LEVELS:
        raise InvalidRequest(f"'{param}' must be one of {', '.join(EFFORT_LEVELS)}; got {value!r}", param=param)


def configured_level(alias: AliasConfig | None, settings: ModelSettings | None,
                     advertised_default: str | None = None) -> tuple[str | None, str]:
    """The saved default and where it came from: alias > model > catalog."""
    if alias is not None and alias.reasoning_effort:
        return alias.reasoning_effort, "alias"
    if settings is not None and settings.reasoning_effort:
        return settings.reasoning_effort, "model"
    if advertised_default:
        return advertised_default, "catalog"
    return None, ""


def resolve(body: Mapping[str, Any], alias: AliasConfig | None, settings: ModelSettings | None,
            accepted: Sequence[str] = (), advertised_default: str | None = None,
            model_label: str = "this model") -> Reasoning | None:
    """The reasoning to send, after precedence; None when neither client nor config asks.

    `accepted` (from the catalog or `reasoning_levels`) limits the levels: a client's level
    outside it is a 400 listing the accepted ones; a configured default outside it moves to
    the nearest accepted level, so a saved default never breaks every request.
    """
    asked = client_reasoning(body)
    saved, source = configured_level(alias, settings, advertised_default)
    if saved is not None and accepted and saved not in accepted:
        saved = nearest_level(saved, accepted)
    if asked is None:
        return Reasoning(level=saved, source=source) if saved is not None else None
    if asked.default_level:
        asked = Reasoning(level=saved or DEFAULT_ON_LEVEL, exclude=asked.exclude, source=source or "default")
    elif asked.asks_for_nothing and saved is not None:
        asked = Reasoning(level=saved, exclude=asked.exclude, source=source)
    if accepted and asked.level is not None and asked.source == "request" and asked.level not in accepted:
        raise InvalidRequest(f"reasoning_effort '{asked.level}' is not supported by {model_label}; "
                             f"accepted levels: {', '.join(accepted)}", param="reasoning_effort")
    return asked


# ---- the request on its way out -------------------------------------------------------------------

def rewrite_request(body: dict[str, Any], upstream: UpstreamConfig, alias: AliasConfig | None,
                    settings: ModelSettings | None, budgets: Mapping[str, int],
                    accepted: Sequence[str] = (), advertised_default: str | None = None,
                    model_label: str = "this model") -> dict[str, Any]:
    """The body with reasoning in the upstream's dialect. Returns `body` itself (not a copy)
    when there is nothing to do, so the passthrough path stays zero-copy; never mutates it."""
    dialect = dialect_for(upstream, settings)
    if dialect == "off":
        return _without(body, _ALL_REASONING_FIELDS)
    reasoning = resolve(body, alias, settings, accepted, advertised_default, model_label)
    if reasoning is None:
        return body
    out = _without(body, _CLIENT_FIELDS)
    if out is body:
        out = dict(body)
    if dialect == "effort":
        _write_effort(out, reasoning, upstream.kind or "generic", budgets)
    elif dialect == "openrouter":
        _write_openrouter(out, reasoning, body.get("reasoning"))
    elif dialect == "binary":
        if not reasoning.asks_for_nothing:
            out["thinking"] = {"type": "enabled" if reasoning.asks_for_thinking else "disabled"}
    elif dialect == "budget" and not reasoning.asks_for_nothing:
        _write_budget(out, reasoning, budgets, alias, settings)
    elif dialect == "adaptive" and not reasoning.asks_for_nothing:
        _write_adaptive(out, reasoning, budgets)
    return out


def _without(body: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    present = [name for name in fields if name in body]
    if not present:
        return body
    return {key: value for key, value in body.items() if key not in present}


def _level_of(reasoning: Reasoning, budgets: Mapping[str, int]) -> str | None:
    if reasoning.level is not None:
        return reasoning.level
    if reasoning.budget_tokens is not None:
        return level_for_budget(reasoning.budget_tokens, budgets)
    return None


def _write_effort(out: dict[str, Any], reasoning: Reasoning, kind: str, budgets: Mapping[str, int]) -> None:
    level = _level_of(reasoning, budgets)
    if level is not None:
        out["reasoning_effort"] = _EFFORT_VALUES_BY_KIND.get(kind, {}).get(level, level)


def _write_openrouter(out: dict[str, Any], reasoning: Reasoning, client_block: Any) -> None:
    block = {key: value for key, value in client_block.items()
             if key not in ("effort", "max_tokens", "enabled")} if isinstance(client_block, Mapping) else {}
    if reasoning.budget_tokens is not None:
        block["max_tokens"] = reasoning.budget_tokens
    elif reasoning.level is not None:
        block["effort"] = reasoning.level
    if reasoning.exclude is not None:
        block["exclude"] = reasoning.exclude
    if block:
        out["reasoning"] = block


def _thinking_allowed(out: dict[str, Any], reasoning: Reasoning) -> bool:
    """Whether to turn Anthropic thinking on. Called once a level or budget was asked, so any
    `thinking` the client sent natively is replaced either way. Anthropic refuses thinking with
    a forced tool choice; the client's explicit tool_choice wins."""
    out.pop("thinking", None)
    if not reasoning.asks_for_thinking:
        return False
    choice = out.get("tool_choice")
    return not (choice == "required" or isinstance(choice, Mapping))


def _write_budget(out: dict[str, Any], reasoning: Reasoning, budgets: Mapping[str, int],
                  alias: AliasConfig | None, settings: ModelSettings | None) -> None:
    if not _thinking_allowed(out, reasoning):
        return
    budget = reasoning.budget_tokens or budgets.get(reasoning.level or "", 0) or budgets.get(DEFAULT_ON_LEVEL, 0)
    budget = max(MIN_THINKING_BUDGET, budget)
    answer = requested_max_tokens(out, alias, settings)
    # Thinking tokens count against max_tokens: keep the client's answer room on top of the budget.
    out["max_tokens"] = answer if answer is not None and answer > budget else budget + (answer or DEFAULT_ANSWER_TOKENS)
    out.pop("max_completion_tokens", None)
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    _drop_refused_sampling(out)


def _write_adaptive(out: dict[str, Any], reasoning: Reasoning, budgets: Mapping[str, int]) -> None:
    if not _thinking_allowed(out, reasoning):
        return
    level = _level_of(reasoning, budgets) or DEFAULT_ON_LEVEL
    config = dict(out["output_config"]) if isinstance(out.get("output_config"), Mapping) else {}
    config["effort"] = ADAPTIVE_EFFORT.get(level, "high")
    out["thinking"] = {"type": "adaptive"}
    out["output_config"] = config
    _drop_refused_sampling(out)


def _drop_refused_sampling(out: dict[str, Any]) -> None:
    """With thinking on, Anthropic refuses temperature other than 1, any top_k, and top_p below 0.95."""
    if "temperature" in out and out["temperature"] != 1:
        del out["temperature"]
    out.pop("top_k", None)
    top_p = out.get("top_p")
    if isinstance(top_p, (int, float)) and top_p < ANTHROPIC_MIN_TOP_P:
        del out["top_p"]


# ---- the answer on its way back -----------------------------------------------------------------

def reasoning_text(holder: Mapping[str, Any]) -> str | None:
    """OpenRouter's reasoning on a message or delta: `reasoning`, else the text of `reasoning_details`."""
    text = holder.get("reasoning")
    if isinstance(text, str) and text:
        return text
    details = holder.get("reasoning_details")
    if not isinstance(details, list):
        return None
    parts = [item.get("text") or item.get("summary") for item in details if isinstance(item, Mapping)]
    joined = "".join(part for part in parts if isinstance(part, str))
    return joined or None


def normalize_completion(completion: Any) -> bool:
    """Adds `reasoning_content` to each choice's message or delta that carries OpenRouter
    reasoning and lacks it. Mutates `completion` in place; True when anything changed."""
    changed = False
    choices = completion.get("choices") if isinstance(completion, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        for key in ("message", "delta"):
            holder = choice.get(key)
            if isinstance(holder, dict) and holder.get("reasoning_content") is None:
                text = reasoning_text(holder)
                if text is not None:
                    holder["reasoning_content"] = text
                    changed = True
    return changed


def normalize_payload(payload: bytes) -> bytes:
    """A non-streaming answer with `reasoning_content` added; the same bytes when nothing changes."""
    if b'"reasoning' not in payload:
        return payload
    try:
        completion = jsonutil.loads(payload)
    except ValueError:
        return payload
    return jsonutil.dumps(completion) if normalize_completion(completion) else payload
