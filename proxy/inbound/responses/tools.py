"""Responses `tools` and `tool_choice` -> chat function tools.

Function tools map one to one. A custom tool (free-form text input, optionally constrained by a
grammar; Codex's apply_patch is one) has no chat counterpart, so it becomes a function with a
single required string parameter `input`; its grammar goes into the description, since a chat
model can only be told about it. Its name is remembered so the answer comes back as a
`custom_tool_call` carrying that string. A namespace groups function and custom tools under
one name (Codex declares its multi-agent tools so); a chat model sees each inner tool as
`<namespace>__<name>`, and its calls come back split again, with the item's `namespace` set.
Hosted tools (web search, code interpreter, MCP ...) run inside OpenAI; a chat upstream cannot
run them, so they are refused by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from proxy.inbound.responses.input_items import chat_tool_name, fail, required_text

# Tool types only a Responses-native upstream can serve (hosted by OpenAI, or Responses-only shapes).
BUILTIN_TOOL_TYPES = frozenset({
    "web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11",
    "file_search", "code_interpreter", "computer", "computer_use", "computer_use_preview",
    "image_generation", "mcp", "local_shell", "shell", "apply_patch", "programmatic_tool_calling"})
# Tools a client declares for itself that a chat model can do without: Codex CLI always declares
# `tool_search` (its own search over deferred tools); refusing it would refuse every Codex turn,
# and a chat model simply works with the tools declared directly.
CLIENT_SIDE_TOOL_TYPES = frozenset({"tool_search"})
CUSTOM_INPUT = "input"
_TOOL_CHOICE_MODES = ("auto", "none", "required")


@dataclass(frozen=True)
class DeclaredTools:
    """The tools as a chat upstream is told of them, and what it takes to read its calls back."""

    chat: list[dict[str, Any]] = field(default_factory=list)
    echo: list[dict[str, Any]] = field(default_factory=list)        # as the Response echoes them
    custom: frozenset[str] = frozenset()                             # chat names of custom tools
    namespaced: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # chat name -> (namespace, name)


def chat_tools(value: Any) -> DeclaredTools:
    if value is None:
        return DeclaredTools()
    if not isinstance(value, list):
        raise fail("'tools' must be an array", "tools", "invalid_type")
    declared = DeclaredTools(custom=set(), namespaced={})
    for index, tool in enumerate(value):
        where = f"tools[{index}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "namespace":
            declared.echo.append(_namespace(tool, where, declared))
        elif kind in CLIENT_SIDE_TOOL_TYPES:
            continue
        else:
            declared.echo.append(_declare(tool, kind, where, declared))
    return DeclaredTools(declared.chat, declared.echo, frozenset(declared.custom), declared.namespaced)


def _declare(tool: Any, kind: Any, where: str, declared: DeclaredTools, namespace: str | None = None) -> dict:
    """One function or custom tool into `declared`; the tool as the Response echoes it."""
    if kind == "function":
        chat_tool, echoed = _function(tool, where)
    elif kind == "custom":
        chat_tool, echoed = _custom(tool, where)
    else:
        raise _bad_tool(tool, kind, where)
    chat_name = echoed["name"]
    if namespace is not None:
        chat_name = chat_tool["function"]["name"] = chat_tool_name(echoed["name"], namespace)
        declared.namespaced[chat_name] = (namespace, echoed["name"])
    if kind == "custom":
        declared.custom.add(chat_name)
    declared.chat.append(chat_tool)
    return echoed


def _namespace(tool: dict[str, Any], where: str, declared: DeclaredTools) -> dict[str, Any]:
    namespace = _name(tool, where)
    inner = tool.get("tools")
    if not isinstance(inner, list):
        raise fail(f"'{where}.tools' must be an array of function or custom tools", f"{where}.tools", "invalid_type")
    echoed = [_declare(member, member.get("type") if isinstance(member, dict) else None, f"{where}.tools[{index}]",
                       declared, namespace) for index, member in enumerate(inner)]
    return {"type": "namespace", "name": namespace, "description": _optional_text(tool, "description", where),
            "tools": echoed}


def _bad_tool(tool: Any, kind: Any, where: str) -> Exception:
    if not isinstance(tool, dict):
        return fail(f"'{where}' must be an object", where, "invalid_type")
    if isinstance(kind, str) and kind in BUILTIN_TOOL_TYPES:
        return fail(f"'{where}': the built-in tool '{kind}' runs inside OpenAI and cannot be used with "
                    f"this model; only function and custom tools can", f"{where}.type")
    return fail(f"'{where}.type' must be 'function', 'custom' or 'namespace'", f"{where}.type",
                "missing_required_parameter" if kind is None else "invalid_value")


def _function(tool: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    name = _name(tool, where)
    description = _optional_text(tool, "description", where)
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise fail(f"'{where}.parameters' must be a JSON schema object", f"{where}.parameters", "invalid_type")
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise fail(f"'{where}.strict' must be a boolean", f"{where}.strict", "invalid_type")
    function: dict[str, Any] = {"name": name,
                                "parameters": parameters if parameters is not None else _EMPTY_OBJECT}
    if description:
        function["description"] = description
    if strict is not None:  # never default strict on: a non-strict schema would be refused
        function["strict"] = strict
    echoed = {"type": "function", "name": name, "description": description, "parameters": parameters,
              "strict": strict}
    return {"type": "function", "function": function}, echoed


_EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


def _custom(tool: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    name = _name(tool, where)
    description = _optional_text(tool, "description", where)
    grammar = _grammar(tool.get("format"), f"{where}.format")
    text = "\n\n".join(part for part in (description, grammar) if part)
    parameters = {"type": "object", "additionalProperties": False, "required": [CUSTOM_INPUT],
                  "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's input, as raw text."}}}
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if text:
        function["description"] = text
    echoed: dict[str, Any] = {"type": "custom", "name": name, "description": description}
    if tool.get("format") is not None:
        echoed["format"] = tool["format"]
    return {"type": "function", "function": function}, echoed


def _grammar(value: Any, where: str) -> str:
    """The instruction a grammar-constrained custom tool's description gains ('' for free text)."""
    if value is None:
        return ""
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return ""
    if kind != "grammar":
        raise fail(f"'{where}.type' must be 'text' or 'grammar'", f"{where}.type")
    syntax = required_text(value, "syntax", where)
    definition = required_text(value, "definition", where)
    return f"The input must match this {syntax} grammar:\n{definition}"


def _name(tool: dict[str, Any], where: str) -> str:
    name = required_text(tool, "name", where)
    if not name:
        raise fail(f"'{where}.name' must not be empty", f"{where}.name")
    return name


def _optional_text(holder: dict[str, Any], name: str, where: str) -> str | None:
    value = holder.get(name)
    if value is not None and not isinstance(value, str):
        raise fail(f"'{where}.{name}' must be a string", f"{where}.{name}", "invalid_type")
    return value


# ---- tool_choice ------------------------------------------------------------------------------------

def chat_tool_choice(value: Any, tools: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """(chat tool_choice or None, the chat tools it leaves). allowed_tools narrows the tool list,
    the closest a chat upstream comes to "only these, without changing the prompt"."""
    if value is None or value in _TOOL_CHOICE_MODES:
        return value, tools
    kind = value.get("type") if isinstance(value, dict) and isinstance(value.get("type"), str) else None
    if kind in ("function", "custom"):
        name = required_text(value, "name", "tool_choice")
        return {"type": "function", "function": {"name": name}}, tools
    if kind == "allowed_tools":
        return _allowed(value, tools)
    if kind is not None and (kind in BUILTIN_TOOL_TYPES or kind.startswith(("web_search", "computer"))):
        raise fail(f"'tool_choice' names the built-in tool '{kind}', which this model cannot use", "tool_choice")
    raise fail("'tool_choice' must be auto, none, required, or an object naming a function or custom "
               "tool, or allowed_tools", "tool_choice", "invalid_type" if kind is None else "invalid_value")


def _allowed(value: dict[str, Any], tools: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    mode = value.get("mode")
    if mode not in ("auto", "required"):
        raise fail("'tool_choice.mode' must be auto or required", "tool_choice.mode")
    listed = value.get("tools")
    if not isinstance(listed, list) or not all(isinstance(entry, dict) for entry in listed):
        raise fail("'tool_choice.tools' must be an array of tool objects", "tool_choice.tools", "invalid_type")
    names = {entry.get("name") for entry in listed
             if entry.get("type") in ("function", "custom") and isinstance(entry.get("name"), str)}
    kept = [tool for tool in tools if tool["function"]["name"] in names]
    if not kept and mode == "required":
        raise fail("'tool_choice' requires a tool call but allows none of the function or custom tools",
                   "tool_choice.tools")
    return mode, kept
