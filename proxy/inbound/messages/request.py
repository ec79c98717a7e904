"""Anthropic Messages request -> OpenAI chat request (the proxy's pivot).

Used for every upstream that is not Anthropic (Anthropic upstreams get the
client's bytes). Pure: the body in, a new chat body and a MessagesContext out,
nothing mutated. Every field is translated, dropped by a rule written here, or
refused with InvalidRequest whose `param` is the field's path
(`messages[2].content[0].source.media_type`); a malformed body never surfaces
as KeyError or TypeError.

Dropped: `top_k` (no chat counterpart), tools' `cache_control` and other
Anthropic-only tool options, `thinking.display`, and request hints with no
effect on what the answer contains (`cache_control`, `context_management`,
`inference_geo`, `speed`, ...). Refused: `container` and `mcp_servers`, which
would make the answer depend on Anthropic's servers.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from proxy.core.errors import InvalidRequest
from proxy.inbound.messages.content import AnthropicOnly, chat_messages, system_message
from proxy.inbound.messages.count import estimate_input_tokens

# A thinking budget becomes the smallest effort level whose budget covers it (xhigh past the
# table). These are the defaults of the config's `reasoning.budgets`, the table the reasoning
# middleware uses to turn a level back into a budget, so a budget-style upstream gets at least
# the budget asked for. Claude Code's "think" (4,000) is medium, "think hard" (10,000) high,
# "ultrathink" (31,999) xhigh. Pass `budgets=` to use the configured table instead.
DEFAULT_BUDGETS: Mapping[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384,
                                      "xhigh": 32768}
_LEVELS = ("minimal", "low", "medium", "high", "xhigh")
# output_config.effort -> reasoning_effort; the pivot's vocabulary tops out at xhigh.
EFFORTS: Mapping[str, str] = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}
# Anthropic's service tiers -> OpenAI's ("default" is OpenAI's standard tier).
SERVICE_TIERS: Mapping[str, str] = {"auto": "auto", "standard_only": "default"}
# The name OpenAI requires on a json_schema response format; Anthropic's format has none.
RESPONSE_FORMAT_NAME = "response"
_ANTHROPIC_ONLY = "can only be used with an Anthropic upstream; this model is served by a chat-completions upstream"


@dataclass(frozen=True, slots=True)
class MessagesContext:
    """What translating the answer back needs from the request."""

    model: str                              # as the client named it; every answer reports this
    max_tokens: int
    stop_sequences: tuple[str, ...] = ()    # to tell stop_sequence from end_turn
    thinking: bool = False                  # thinking enabled/adaptive: reasoning is returned as thinking blocks
    stream: bool = False
    estimated_input_tokens: int = 1         # count.estimate_input_tokens; message_start's input_tokens
    # Set when only an Anthropic upstream can serve the request: raised if routing finds none first.
    anthropic_only: AnthropicOnly | None = None


def to_chat(body: Any, *, budgets: Mapping[str, int] | None = None) -> tuple[dict[str, Any], MessagesContext]:
    """The chat body for the middleware chain, and the context for the answer.

    `budgets`: the effort level -> thinking budget table (the config's `reasoning.budgets`);
    DEFAULT_BUDGETS when not given.
    """
    chat, context = _translated(body, budgets or DEFAULT_BUDGETS,
                                lambda system: ([system] if system else []) + chat_messages(body.get("messages")))
    return chat, dataclasses.replace(context, estimated_input_tokens=estimate_input_tokens(body))


def to_chat_around_messages(body: dict[str, Any]) -> tuple[dict[str, Any], MessagesContext]:
    """`to_chat` for a body whose `messages` only an Anthropic upstream reads (proxy/inbound/messages/
    shallow.py): every other field is checked and translated alike, and the chat body's `messages`
    is the body's own, untranslated. The context's token estimate is left at its default: only a
    translated answer reports it."""
    return _translated(body, DEFAULT_BUDGETS, lambda system: body.get("messages"))


def _translated(body: Any, budgets: Mapping[str, int],
                messages: Callable[[dict[str, Any] | None], Any]) -> tuple[dict[str, Any], MessagesContext]:
    """The translation, with the chat messages made by `messages` from the system message (called in
    its turn, so a body with several mistakes is refused for the first one, as the fields come)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model, max_tokens = _model(body), _max_tokens(body)
    for name in ("container", "mcp_servers"):
        if body.get(name) is not None:
            raise AnthropicOnly(f"'{name}' {_ANTHROPIC_ONLY}", param=name)
    chat: dict[str, Any] = {"model": model, "messages": messages(system_message(body.get("system"))),
                            "max_tokens": max_tokens}
    chat.update(_tool_fields(body.get("tools"), body.get("tool_choice")))
    stops = _stop_sequences(body.get("stop_sequences"))
    chat.update(_options(body, stops))
    effort, thinking = _reasoning(body.get("thinking"), body.get("output_config"), budgets)
    if effort is not None:
        chat["reasoning_effort"] = effort
    context = MessagesContext(model=model, max_tokens=max_tokens, stop_sequences=stops, thinking=thinking,
                              stream=chat.get("stream", False))
    return chat, context


def passthrough_only(body: dict[str, Any], refusal: AnthropicOnly) -> tuple[dict[str, Any], MessagesContext]:
    """The chain's body for a request only an Anthropic upstream can serve (`refusal` says why),
    which is never translated: what the chain reads (model, max_tokens, stream, the reasoning level)
    and the messages as they are, for the limits on their number and shape. No token estimate: the
    answer is Anthropic's own, which reports its usage."""
    model, max_tokens = _model(body), _max_tokens(body)
    effort, thinking = _reasoning(body.get("thinking"), body.get("output_config"), DEFAULT_BUDGETS)
    stream = _flag(body, "stream")
    chat: dict[str, Any] = {"model": model, "messages": body.get("messages"), "max_tokens": max_tokens,
                            **({"stream": True} if stream else {}),
                            **({"reasoning_effort": effort} if effort is not None else {}),
                            **_forced_tool_choice(body.get("tool_choice"))}
    return chat, MessagesContext(model=model, max_tokens=max_tokens, thinking=thinking, stream=stream,
                                 anthropic_only=refusal)


def _forced_tool_choice(choice: Any) -> dict[str, Any]:
    """A tool choice that forces a tool, in the pivot's words: the reasoning middleware then adds
    no default thinking, which Anthropic refuses beside one. Read leniently: the client's own bytes
    go to Anthropic, which judges the choice itself."""
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "any":
        return {"tool_choice": _CHOICES[kind]}
    if kind == "tool":
        return {"tool_choice": _named_choice(str(choice.get("name")))}
    return {}


Translation = Callable[[dict[str, Any]], tuple[dict[str, Any], MessagesContext]]


def chat_body(body: dict[str, Any], translate: Translation = to_chat) -> tuple[dict[str, Any], MessagesContext]:
    """The chain's body for a Messages request: translated (`translate`: to_chat, or
    to_chat_around_messages), or, when only an Anthropic upstream can serve it, the few fields
    the chain reads (passthrough_only)."""
    try:
        return translate(body)
    except AnthropicOnly as refusal:
        return passthrough_only(body, refusal)


def _options(body: dict[str, Any], stops: tuple[str, ...]) -> dict[str, Any]:
    """stop, sampling, user, stream, response_format and service_tier."""
    out: dict[str, Any] = {"stop": list(stops)} if stops else {}
    out.update(_sampling(body))
    user = _user_id(body.get("metadata"))
    if user:
        out["user"] = user
    if _flag(body, "stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    response_format = _response_format(body.get("output_config"))
    if response_format is not None:
        out["response_format"] = response_format
    if body.get("service_tier") is not None:
        out["service_tier"] = _service_tier(body["service_tier"])
    return out


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required and must be a non-empty string", param="model")
    return model


def _max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_tokens")
    if not _is_int(value) or value < 1:
        raise InvalidRequest("max_tokens is required and must be a positive integer", param="max_tokens")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a boolean", param=name)
    return bool(value)


# ---- tools ------------------------------------------------------------------------------------

def _tool_fields(tools: Any, choice: Any) -> dict[str, Any]:
    """tools, tool_choice and parallel_tool_calls; the last two only with tools, as OpenAI refuses
    them alone (a tool_choice without tools is still checked)."""
    functions = _tools(tools)
    fields = _tool_choice(choice, {tool["function"]["name"] for tool in functions})
    return {"tools": functions, **fields} if functions else {}


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be an array", param="tools")
    return [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]


def _tool(tool: Any, where: str) -> dict[str, Any]:
    """A custom tool -> a function tool. Server tools (web search, bash, text editor, computer
    use, code execution...) run on Anthropic's side, so there is nothing to translate them to."""
    if not isinstance(tool, dict):
        raise InvalidRequest(f"{where} must be an object", param=where)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise AnthropicOnly(f"{where}.type: '{kind}' is an Anthropic server tool and {_ANTHROPIC_ONLY}",
                            param=f"{where}.type")
    name, schema, description = tool.get("name"), tool.get("input_schema"), tool.get("description")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where}.name must be a non-empty string", param=f"{where}.name")
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{where}.input_schema must be a JSON schema object", param=f"{where}.input_schema")
    if description is not None and not isinstance(description, str):
        raise InvalidRequest(f"{where}.description must be a string", param=f"{where}.description")
    function: dict[str, Any] = {"name": name}
    if description:
        function["description"] = description
    function["parameters"] = schema
    if tool.get("strict") is True:
        function["strict"] = True
    return {"type": "function", "function": function}


# Anthropic's tool_choice types -> the pivot's; a "tool" choice becomes _named_choice.
_CHOICES: Mapping[str, str] = {"auto": "auto", "any": "required", "none": "none"}


def _named_choice(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def _tool_choice(choice: Any, names: set[str]) -> dict[str, Any]:
    """auto/any/tool/none -> auto/required/named/none; disable_parallel_tool_use -> parallel_tool_calls."""
    if choice is None:
        return {}
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise InvalidRequest("tool_choice.type must be auto, any, tool or none", param="tool_choice.type")
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("tool_choice.name is required for type 'tool'", param="tool_choice.name")
        if name not in names:
            raise InvalidRequest(f"tool_choice.name '{name}' is not one of the tools", param="tool_choice.name")
        out: dict[str, Any] = {"tool_choice": _named_choice(name)}
    else:
        out = {"tool_choice": _CHOICES[kind]}
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise InvalidRequest("tool_choice.disable_parallel_tool_use must be a boolean",
                             param="tool_choice.disable_parallel_tool_use")
    if disable and kind != "none":
        out["parallel_tool_calls"] = False
    return out


# ---- sampling, stop, metadata, tier -------------------------------------------------------------

def _stop_sequences(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest("stop_sequences must be an array of strings", param="stop_sequences")
    for k, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise InvalidRequest(f"stop_sequences[{k}] must be a non-empty string", param=f"stop_sequences[{k}]")
    return tuple(value)


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    """temperature and top_p pass (Anthropic's 0..1 means the same in OpenAI's 0..2); top_k is
    checked, then dropped."""
    out: dict[str, Any] = {}
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InvalidRequest(f"{name} must be a number from 0 to 1", param=name)
        out[name] = value
    top_k = body.get("top_k")
    if top_k is not None and (not _is_int(top_k) or top_k < 0):
        raise InvalidRequest("top_k must be a non-negative integer", param="top_k")
    return out


def _user_id(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be an object", param="metadata")
    user_id = metadata.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise InvalidRequest("metadata.user_id must be a string", param="metadata.user_id")
    return user_id or None


def _service_tier(value: Any) -> str:
    if not isinstance(value, str) or value not in SERVICE_TIERS:
        raise InvalidRequest("service_tier must be 'auto' or 'standard_only'", param="service_tier")
    return SERVICE_TIERS[value]


# ---- thinking, effort, output format --------------------------------------------------------------

def _reasoning(thinking: Any, output_config: Any, budgets: Mapping[str, int]) -> tuple[str | None, bool]:
    """(reasoning_effort or None, whether thinking blocks were asked for).

    enabled: the budget's band (see DEFAULT_BUDGETS); adaptive (and between_tools): the
    output_config effort if given, else none is sent and the upstream model's default
    applies, as Anthropic's does; disabled: "none"; absent: output_config.effort alone.
    """
    effort = _effort(output_config)
    if thinking is None:
        return effort, False
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not _is_int(budget) or budget < 1:
            raise InvalidRequest("thinking.budget_tokens must be a positive integer", param="thinking.budget_tokens")
        return level_for_budget(budget, budgets), True
    if kind in ("adaptive", "between_tools"):
        return effort, True
    if kind == "disabled":
        return "none", False
    raise InvalidRequest("thinking.type must be enabled, adaptive or disabled", param="thinking.type")


def level_for_budget(budget: int, budgets: Mapping[str, int] = DEFAULT_BUDGETS) -> str:
    """The smallest effort level whose budget covers `budget` tokens; xhigh beyond the table."""
    for level in _LEVELS:
        if budgets.get(level, 0) >= budget:
            return level
    return _LEVELS[-1]


def _effort(output_config: Any) -> str | None:
    if output_config is None:
        return None
    if not isinstance(output_config, dict):
        raise InvalidRequest("output_config must be an object", param="output_config")
    effort = output_config.get("effort")
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in EFFORTS:
        raise InvalidRequest("output_config.effort must be low, medium, high, xhigh or max",
                             param="output_config.effort")
    return EFFORTS[effort]


def _response_format(output_config: Any) -> dict[str, Any] | None:
    """output_config.format (json_schema) -> a strict json_schema response_format: Anthropic's
    structured outputs guarantee the schema, which is what OpenAI's strict mode promises."""
    spec = output_config.get("format") if isinstance(output_config, dict) else None
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "json_schema":
        raise InvalidRequest("output_config.format.type must be 'json_schema'", param="output_config.format.type")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest("output_config.format.schema must be a JSON schema object",
                             param="output_config.format.schema")
    return {"type": "json_schema", "json_schema": {"name": RESPONSE_FORMAT_NAME, "schema": schema, "strict": True}}
