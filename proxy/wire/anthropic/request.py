"""OpenAI chat request -> Anthropic Messages request.

Pure functions: the client's body in, a new native body out, nothing mutated.
Every OpenAI parameter is either translated, dropped by a documented rule, or
refused with a 400 that says why (the README's Anthropic section lists them); nothing is
sent that the Messages API is known to refuse.
"""
from __future__ import annotations

from typing import Any, Mapping

from proxy.config.model import UpstreamConfig
from proxy.core.errors import InvalidRequest
from proxy.core.exchange import Target, requested_max_tokens
from proxy.wire.anthropic.messages import thinking_blocks_of, translate_messages

# max_tokens is required upstream; used when neither the request nor the config gives one.
# 4096 fits every Claude model's output limit, so the default can never cause a 400.
DEFAULT_MAX_TOKENS = 4096
# From this API version on, temperature/top_p/top_k are refused even at their defaults.
SAMPLING_REMOVED_IN = "2026-10-21"
MIN_THINKING_TOP_P = 0.95
# OpenAI parameters with no Anthropic equivalent that change nothing the client reads back:
# never sent (the reasoning ones are translated by the reasoning middleware before this).
DROPPED = ("frequency_penalty", "presence_penalty", "logit_bias", "seed", "store", "prediction",
           "stream_options", "verbosity", "web_search_options", "prompt_cache_key", "reasoning_effort",
           "reasoning", "parallel_tool_calls")


def encode_request(body: Mapping[str, Any], target: Target, stream: bool) -> dict[str, Any]:
    _refuse_unsupported(body)
    version = api_version(target.upstream)
    tools = _tools(body.get("tools"))
    tool_choice = _tool_choice(body, bool(tools))
    thinking = _thinking(body, tool_choice)
    thinking_on = thinking is not None and thinking.get("type") != "disabled"
    system, messages = translate_messages(_messages(body), keep_thinking=thinking_on)
    max_tokens = requested_max_tokens(body, target.alias_config, target.model_config) or DEFAULT_MAX_TOKENS
    native: dict[str, Any] = {"model": target.model, "max_tokens": max_tokens}
    if system is not None:
        native["system"] = system
    native["messages"] = messages
    if thinking is not None:
        native["thinking"] = thinking
    native.update(_sampling(body, thinking_on, version))
    stops = _stop_sequences(body.get("stop"))
    if stops:
        native["stop_sequences"] = stops
    if tools:
        native["tools"] = tools
        if tool_choice is not None:
            native["tool_choice"] = tool_choice
    _add_metadata(native, body)
    output_config = _output_config(body)
    if output_config:
        native["output_config"] = output_config
    if body.get("service_tier") in ("auto", "standard_only"):
        native["service_tier"] = body["service_tier"]
    if stream:
        native["stream"] = True
    return native


def api_version(upstream: UpstreamConfig) -> str:
    """The anthropic-version the upstream is called with (a configured header wins, as it does on the wire)."""
    for name, value in upstream.headers.items():
        if name.lower() == "anthropic-version":
            return value.reveal()
    return upstream.anthropic_version or ""


# ---- refusals: parameters whose answer the client would read but Anthropic cannot give ------------

def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("Anthropic upstreams return one choice; 'n' must be 1", param="n")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise InvalidRequest("Anthropic upstreams do not return log probabilities; remove 'logprobs'",
                             param="logprobs")
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        raise InvalidRequest("Anthropic upstreams cannot answer with audio", param="modalities")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise InvalidRequest("the legacy 'functions'/'function_call' parameters are not translated; "
                             "use 'tools' and 'tool_choice'", param="functions")


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidRequest(f"messages[{index}] must be an object", param=f"messages[{index}]")
    return messages


# ---- sampling ---------------------------------------------------------------------------------

def _sampling(body: Mapping[str, Any], thinking_on: bool, version: str) -> dict[str, Any]:
    """temperature/top_p/top_k under Anthropic's rules; anything it would refuse is left out."""
    if version >= SAMPLING_REMOVED_IN:
        return {}
    out: dict[str, Any] = {}
    temperature, top_p = _number(body, "temperature"), _number(body, "top_p")
    top_k = body.get("top_k")
    if temperature is not None:
        out["temperature"] = min(1.0, max(0.0, temperature))  # OpenAI's range is 0..2, Anthropic's 0..1
    if top_p is not None and temperature is None:  # newer models refuse both together
        out["top_p"] = top_p
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 0:
        out["top_k"] = top_k
    if thinking_on:  # thinking takes temperature 1 only, no top_k, top_p from 0.95
        if out.get("temperature", 1) != 1:
            del out["temperature"]
        out.pop("top_k", None)
        if out.get("top_p", 1) < MIN_THINKING_TOP_P:
            del out["top_p"]
    return out


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidRequest(f"'{name}' must be a non-negative number", param=name)
    return value


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidRequest("'stop' must be a string or an array of strings", param="stop")
    # Anthropic refuses whitespace-only stop sequences ("each stop sequence must contain non-whitespace").
    return [item for item in items if item.strip()]


# ---- tools ------------------------------------------------------------------------------------

def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    return [_tool(tool, index) for index, tool in enumerate(tools)]


def _tool(tool: Any, index: int) -> dict[str, Any]:
    param = f"tools[{index}]"
    if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
        raise InvalidRequest(f"{param}: only function tools can be sent to an Anthropic upstream", param=param)
    function = tool.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
        raise InvalidRequest(f"{param}.function.name is required", param=f"{param}.function.name")
    schema = function.get("parameters")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    elif not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        raise InvalidRequest(f"{param}.function.parameters must be a JSON schema of type object",
                             param=f"{param}.function.parameters")
    elif "type" not in schema:
        schema = {"type": "object", **schema}
    out: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str) and function["description"]:
        out["description"] = function["description"]
    out["input_schema"] = schema
    if function.get("strict") is True:
        out["strict"] = True
    return out


def _tool_choice(body: Mapping[str, Any], has_tools: bool) -> dict[str, Any] | None:
    """auto/none/required/named -> auto/none/any/tool; `parallel_tool_calls: false` rides along."""
    if not has_tools:
        return None  # Anthropic has nothing to choose from; a tool_choice alone is meaningless
    choice = body.get("tool_choice")
    if choice is None or choice == "auto":
        native: dict[str, Any] = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        native = {"type": "any"}
    elif isinstance(choice, Mapping) and choice.get("type") == "function" \
            and isinstance(choice.get("function"), Mapping) and isinstance(choice["function"].get("name"), str):
        native = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise InvalidRequest("'tool_choice' must be auto, none, required or {\"type\": \"function\", "
                             "\"function\": {\"name\": ...}}", param="tool_choice")
    if body.get("parallel_tool_calls") is False:
        native["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # the upstream's default is auto already
    return native


# ---- thinking, output format, metadata ------------------------------------------------------------

def _thinking(body: Mapping[str, Any], tool_choice: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The native `thinking` to send (None: none was asked for).

    Two documented Anthropic refusals are avoided by turning asked-for thinking off
    (explicitly, as some models think unless told not to): a forced tool choice
    ("any"/"tool"), and a tool loop whose last assistant turn carries no signed
    thinking block to send back (Anthropic then demands one).
    """
    thinking = body.get("thinking")
    if not isinstance(thinking, Mapping) or not isinstance(thinking.get("type"), str):
        return None
    if thinking["type"] == "disabled":
        return {"type": "disabled"}
    forced_tool = tool_choice is not None and tool_choice.get("type") in ("any", "tool")
    if forced_tool or _pending_tool_turn_lacks_thinking(body.get("messages")):
        return {"type": "disabled"}
    return dict(thinking)


def _pending_tool_turn_lacks_thinking(messages: Any) -> bool:
    """Whether the conversation ends in tool results (perhaps followed by user text, which joins
    their turn) answering an assistant turn that carries no signed thinking."""
    answered_tools = False
    for message in reversed(messages if isinstance(messages, list) else ()):
        role = message.get("role") if isinstance(message, Mapping) else None
        if role == "assistant":
            return answered_tools and not thinking_blocks_of(message)
        answered_tools = answered_tools or role == "tool"
    return False


def _output_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(body["output_config"]) if isinstance(body.get("output_config"), Mapping) else {}
    response_format = body.get("response_format")
    if not isinstance(response_format, Mapping) or "format" in config:
        return config
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidRequest("response_format.json_schema.schema must be a JSON schema object",
                                 param="response_format")
        config["format"] = {"type": "json_schema", "schema": dict(schema)}
    # json_object and text have no native switch: OpenAI's json_object already requires the
    # prompt to ask for JSON, and that instruction reaches Claude unchanged.
    return config


def _add_metadata(native: dict[str, Any], body: Mapping[str, Any]) -> None:
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, Mapping) else None
    if not isinstance(user_id, str) or not user_id:
        user_id = next((body[name] for name in ("user", "safety_identifier")
                        if isinstance(body.get(name), str) and body[name]), None)
    if user_id:
        native["metadata"] = {"user_id": user_id}
