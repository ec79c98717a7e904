"""A Responses API request (`POST /v1/responses`) -> a chat completions body (the pivot).

`to_chat` validates as it translates, so every mistake is a 400 in OpenAI's envelope whose
`param` points at the field (`input[3].type`, `tools[0].name`), never a KeyError. What the
chat body cannot carry but the Response object must echo back (the model as the client named
it, instructions, tools as sent, store, metadata ...) goes into a `ResponsesContext`.

Left to the caller: `previous_response_id` (a store's job; it is only recorded here) and
hosted tools (refused here; a Responses-native upstream could take the body unchanged).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from proxy.inbound.responses.input_items import fail, input_messages
from proxy.inbound.responses.thinking_token import TOKEN_PREFIX, decode_thinking_blocks, encode_thinking_blocks
from proxy.inbound.responses.tools import BUILTIN_TOOL_TYPES, chat_tool_choice, chat_tools

__all__ = ["BUILTIN_TOOL_TYPES", "REASONING_EFFORTS", "ResponsesContext", "TOKEN_PREFIX", "decode_thinking_blocks",
           "encode_thinking_blocks", "to_chat"]

REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_EFFORT_ALIASES = {"max": "xhigh"}  # the SDK's newest level; the proxy's vocabulary tops out at xhigh
SUMMARY_MODES = ("auto", "concise", "detailed")
ENCRYPTED_REASONING = "reasoning.encrypted_content"
# Fields that need state only OpenAI keeps; refused rather than silently ignored.
_NEEDS_OPENAI_STATE = {
    "conversation": "'conversation' needs OpenAI's conversation store; send the items in 'input'",
    "prompt": "'prompt' templates are stored at OpenAI; send 'instructions' and 'input' instead",
}
_JSON_TYPES = {"string": str, "boolean": bool, "object": dict, "array": list}


@dataclass(frozen=True, slots=True)
class ResponsesContext:
    """What the Response object echoes back, and what the answer side needs to shape items."""

    model: str
    instructions: str | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    reasoning: Mapping[str, Any] | None = None      # {"effort", "summary"} as sent
    text: Mapping[str, Any] | None = None           # {"format", "verbosity"?} as sent
    metadata: Mapping[str, Any] | None = None
    store: bool = True
    include: tuple[str, ...] = ()
    previous_response_id: str | None = None
    truncation: str = "disabled"
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    custom_tool_names: frozenset[str] = frozenset()
    namespaced_tools: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # chat name -> (namespace, name)
    stream: bool = False

    @property
    def wants_summary(self) -> bool:
        """OpenAI sends reasoning summaries only when `reasoning.summary` asks for them."""
        return bool(self.reasoning) and self.reasoning.get("summary") in SUMMARY_MODES

    @property
    def wants_encrypted_reasoning(self) -> bool:
        return ENCRYPTED_REASONING in self.include


def to_chat(body: Any) -> tuple[dict[str, Any], ResponsesContext]:
    """(chat body, context). Raises InvalidRequest for anything malformed or unsupported."""
    def messages(fields: dict[str, Any]) -> list[dict[str, Any]]:
        translated = input_messages(body.get("input"), fields["instructions"])
        if not translated and fields["previous_response_id"] is None:
            raise fail("'input' must not be empty", "input", "missing_required_parameter")
        return translated

    return _translated(body, messages)


def to_chat_around_input(body: dict[str, Any]) -> tuple[dict[str, Any], ResponsesContext]:
    """`to_chat` for a body whose `input` only a Responses upstream reads (proxy/inbound/responses/
    shallow.py): every other field is checked and translated alike, and the chat body's `messages`
    is the body's own `input`, untranslated."""
    return _translated(body, lambda fields: body.get("input"))


def _translated(body: Any, messages: Callable[[dict[str, Any]], Any]) -> tuple[dict[str, Any], ResponsesContext]:
    """The translation, with the chat messages made by `messages` from the checked scalar fields
    (called last, as `input` is read last: the first mistake refused is the same either way)."""
    if not isinstance(body, dict):
        raise fail("the request body must be a JSON object", "body", "invalid_type")
    _refuse_stateful(body)
    fields = _scalars(body)
    declared = chat_tools(body.get("tools"))
    tool_choice, tools = chat_tool_choice(body.get("tool_choice"), declared.chat)
    reasoning, effort = _reasoning(body.get("reasoning"))
    text, response_format, verbosity = _text(body.get("text"))
    chat = _chat_body(fields, messages(fields), tools, tool_choice)
    _put(chat, "reasoning_effort", effort)
    _put(chat, "response_format", response_format)
    _put(chat, "verbosity", verbosity)
    context = ResponsesContext(
        tools=tuple(declared.echo), tool_choice=body.get("tool_choice") or "auto", reasoning=reasoning,
        text=text, custom_tool_names=declared.custom, namespaced_tools=declared.namespaced, **fields)
    return chat, context


def routing_only(body: dict[str, Any]) -> tuple[dict[str, Any], ResponsesContext]:
    """The pivot of a request only a Responses upstream can take (`to_chat` refused it): what
    routing reads; and a context that names its model."""
    pivot = {"model": body.get("model"), "messages": [], **({"stream": True} if body.get("stream") is True else {})}
    return pivot, ResponsesContext(model=str(body.get("model")))


def _refuse_stateful(body: dict[str, Any]) -> None:
    for name, message in _NEEDS_OPENAI_STATE.items():
        if body.get(name) is not None:
            raise fail(message, name)
    if body.get("background") is True:
        raise fail("'background' responses need a store to poll; this proxy answers in the foreground, "
                   "so send background: false (or stream: true)", "background")


def _scalars(body: dict[str, Any]) -> dict[str, Any]:
    """The context's plain fields, each type-checked, with OpenAI's defaults."""
    model = _typed(body, "model", "string")
    if not model:
        raise fail("'model' is required and must be a non-empty string", "model",
                   "missing_required_parameter" if "model" not in body else "invalid_type")
    include = _typed(body, "include", "array") or []
    metadata = _typed(body, "metadata", "object")
    if metadata and not all(isinstance(value, str) for value in metadata.values()):
        raise fail("'metadata' values must be strings", "metadata", "invalid_type")
    if not all(isinstance(entry, str) for entry in include):
        raise fail("'include' must be an array of strings", "include", "invalid_type")
    return {
        "model": model, "instructions": _typed(body, "instructions", "string"),
        "parallel_tool_calls": _default(_typed(body, "parallel_tool_calls", "boolean"), True),
        "temperature": _number(body, "temperature"), "top_p": _number(body, "top_p"),
        "max_output_tokens": _count(body, "max_output_tokens"), "max_tool_calls": _count(body, "max_tool_calls"),
        "metadata": metadata, "store": _default(_typed(body, "store", "boolean"), True),
        "include": tuple(include), "previous_response_id": _typed(body, "previous_response_id", "string"),
        "truncation": _default(_typed(body, "truncation", "string"), "disabled"),
        "user": _typed(body, "user", "string"), "safety_identifier": _typed(body, "safety_identifier", "string"),
        "prompt_cache_key": _typed(body, "prompt_cache_key", "string"),
        "service_tier": _typed(body, "service_tier", "string"),
        "stream": bool(_typed(body, "stream", "boolean")),
    }


def _chat_body(fields: dict[str, Any], messages: Any, tools: list[dict[str, Any]],
               tool_choice: Any) -> dict[str, Any]:
    chat: dict[str, Any] = {"model": fields["model"], "messages": messages}
    if fields["stream"]:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    if tools:  # chat refuses tool_choice and parallel_tool_calls without tools
        chat["tools"] = tools
        _put(chat, "tool_choice", tool_choice)
        chat["parallel_tool_calls"] = fields["parallel_tool_calls"]
    for chat_name, name in (("max_completion_tokens", "max_output_tokens"), ("temperature", "temperature"),
                            ("top_p", "top_p"), ("service_tier", "service_tier"),
                            ("prompt_cache_key", "prompt_cache_key")):
        _put(chat, chat_name, fields[name])
    _put(chat, "user", fields["user"] or fields["safety_identifier"])
    return chat


def _reasoning(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the echo {"effort", "summary"}, chat reasoning_effort)."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise fail("'reasoning' must be an object", "reasoning", "invalid_type")
    effort = value.get("effort")
    level = _EFFORT_ALIASES.get(effort, effort) if isinstance(effort, str) else effort
    if effort is not None and level not in REASONING_EFFORTS:
        raise fail(f"'reasoning.effort' must be one of {', '.join(REASONING_EFFORTS)}", "reasoning.effort")
    summary = value.get("summary", value.get("generate_summary"))
    if summary is not None and summary not in SUMMARY_MODES:
        raise fail(f"'reasoning.summary' must be one of {', '.join(SUMMARY_MODES)}", "reasoning.summary")
    return {"effort": effort, "summary": summary}, level


def _text(value: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """(the echo, chat response_format, chat verbosity)."""
    if value is None:
        return None, None, None
    if not isinstance(value, dict):
        raise fail("'text' must be an object", "text", "invalid_type")
    verbosity = value.get("verbosity")
    if verbosity is not None and verbosity not in ("low", "medium", "high"):
        raise fail("'text.verbosity' must be low, medium or high", "text.verbosity")
    fmt = value.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return dict(value), None, verbosity
    if kind == "json_object":
        return dict(value), {"type": "json_object"}, verbosity
    if kind != "json_schema":
        raise fail("'text.format.type' must be text, json_schema or json_object", "text.format.type")
    return dict(value), {"type": "json_schema", "json_schema": _json_schema(fmt)}, verbosity


def _json_schema(fmt: dict[str, Any]) -> dict[str, Any]:
    name = fmt.get("name")
    if not isinstance(name, str) or not name:
        raise fail("'text.format.name' is required and must be a string", "text.format.name",
                   "missing_required_parameter" if name is None else "invalid_type")
    if not isinstance(fmt.get("schema"), dict):
        raise fail("'text.format.schema' is required and must be a JSON schema object", "text.format.schema",
                   "missing_required_parameter" if "schema" not in fmt else "invalid_type")
    schema: dict[str, Any] = {"name": name, "schema": fmt["schema"]}
    for optional, kind in (("strict", bool), ("description", str)):
        if fmt.get(optional) is not None:
            if not isinstance(fmt[optional], kind):
                raise fail(f"'text.format.{optional}' has the wrong type", f"text.format.{optional}", "invalid_type")
            schema[optional] = fmt[optional]
    return schema


# ---- small typed readers ------------------------------------------------------------------------------

def _typed(body: dict[str, Any], name: str, json_type: str) -> Any:
    value = body.get(name)
    if value is not None and not isinstance(value, _JSON_TYPES[json_type]):
        raise fail(f"'{name}' must be a{'n' if json_type[0] in 'ao' else ''} {json_type}", name, "invalid_type")
    return value


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise fail(f"'{name}' must be a number", name, "invalid_type")
    return value


def _count(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise fail(f"'{name}' must be a positive integer", name, "invalid_type")
    return value


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _put(target: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        target[name] = value
