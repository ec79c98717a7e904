"""Inbound body checks: bytes -> a JSON object that is safe to route, or a 400.

Only what the proxy itself relies on is checked (model, messages, stream and
the numeric fields it may rewrite); everything else is the upstream's to judge,
so provider extras keep working.
"""
from __future__ import annotations

import json
from typing import Any

from proxy.config.model import LimitsConfig
from proxy.config.secrets import quote
from proxy.core import jsonutil
from proxy.core.errors import InvalidRequest

CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def parse_json_object(raw: bytes, limits: LimitsConfig) -> dict[str, Any]:
    if not raw.strip():
        raise InvalidRequest("the request body is empty; send a JSON object", code="invalid_json")
    try:
        value = jsonutil.loads(raw)
    except UnicodeDecodeError:
        raise InvalidRequest("the request body is not valid UTF-8", code="invalid_json") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {_short(exc)}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"the request body must be a JSON object, not {_json_type(value)}", code="invalid_json")
    _check_depth(raw, value, limits.max_json_depth)
    _check_keys_and_integers(raw)
    return value


# ---- what the fast parser lets through -------------------------------------------------------------
#
# orjson keeps the last of two equal keys and turns integers past 64 bits into floats; either
# way the upstream would get something other than what the client wrote. Rule: a key repeated
# in one object, or an integer outside [-2**63, 2**64), is a 400. A second pass with the
# stdlib's C scanner finds both exactly; it builds no objects, and measured cheaper than the
# byte-counting heuristics tried first (the README's Security section has the figures).

INTEGER_RANGE = (-2**63, 2**64 - 1)
# Every byte a digit becomes "0", every other byte " ": a run of 19 zeros marks a number (or a
# digit run inside a string) long enough to fall outside INTEGER_RANGE, found at C speed.
_DIGITS_AS_ZEROS = bytes(ord("0") if 48 <= byte <= 57 else ord(" ") for byte in range(256))
_NINETEEN_DIGITS = b"0" * 19


def _check_keys_and_integers(raw: bytes) -> None:
    def unique_keys(pairs: list[tuple[str, Any]]) -> None:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = quote(key, 40)
                raise InvalidRequest(f"the request body repeats the key {shown!r} in one object; "
                                     f"send each key once", code="duplicate_key")
            seen.add(key)

    def bounded_integer(text: str) -> None:
        if len(text.lstrip("-")) > 20 or not INTEGER_RANGE[0] <= int(text) <= INTEGER_RANGE[1]:
            shown = text if len(text) <= 24 else text[:24] + "..."
            raise InvalidRequest(f"the request body has an integer outside the 64-bit range ({shown})",
                                 code="number_out_of_range")

    # Python-level hooks cost a call per value: the integer check only runs when a long digit run
    # exists (a body of token ids stays fast); floats and constants keep the scanner's C path.
    wide = _NINETEEN_DIGITS in raw.translate(_DIGITS_AS_ZEROS)
    try:
        json.loads(raw.decode("utf-8"), object_pairs_hook=unique_keys, parse_int=bounded_integer if wide else None)
    except (ValueError, RecursionError) as exc:  # the fast parser accepted it; report, never crash
        raise InvalidRequest(f"the request body is not valid JSON: {_short(exc)}", code="invalid_json") from None


def _check_depth(raw: bytes, value: Any, max_depth: int) -> None:
    # Cheap pre-check: a body with fewer brackets than the limit cannot be too deep.
    if raw.count(b"{") + raw.count(b"[") <= max_depth:
        return
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise InvalidRequest(f"the request body nests deeper than {max_depth} levels", code="too_deep")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, (dict, list)))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))


def check_chat(body: dict[str, Any], limits: LimitsConfig, messages_checked: bool = False) -> None:
    """`messages_checked`: its shape was checked on the client's bytes (proxy/inbound/shallow.py)."""
    _require_text(body, "model")
    if not messages_checked:
        _check_messages(body, limits)
    _optional_type(body, "stream", bool, "a boolean")
    _optional_type(body, "stream_options", dict, "an object")
    for name in ("max_tokens", "max_completion_tokens", "n"):
        _optional_int(body, name, minimum=0 if name != "n" else 1)
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        _optional_number(body, name)
    _optional_type(body, "tools", list, "an array")
    _optional_type(body, "stop", (str, list), "a string or an array of strings")


def _check_messages(body: dict[str, Any], limits: LimitsConfig) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages", code="invalid_type"
                             if "messages" in body else "missing_required_parameter")
    if len(messages) > limits.max_messages:
        raise InvalidRequest(f"'messages' has {len(messages)} entries; the limit is {limits.max_messages}",
                             param="messages", code="too_many_messages")
    for index, message in enumerate(messages):
        _check_message(message, index)


def check_model_field(body: dict[str, Any]) -> str | None:
    """For non-chat endpoints: the model, if one is given, must be text."""
    if "model" not in body:
        return None
    return _require_text(body, "model")


def _check_message(message: Any, index: int) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise InvalidRequest(f"'{where}' must be an object", param=where, code="invalid_type")
    role = message.get("role")
    if not isinstance(role, str) or role not in CHAT_ROLES:
        raise InvalidRequest(f"'{where}.role' must be one of {', '.join(sorted(CHAT_ROLES))}",
                             param=f"{where}.role", code="invalid_value")
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise InvalidRequest(f"'{where}.content' must be a string or an array of content parts",
                             param=f"{where}.content", code="invalid_type")


def _require_text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if name not in body:
        raise InvalidRequest(f"'{name}' is required", param=name, code="missing_required_parameter")
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{name}' must be a non-empty string, not {_json_type(value)}", param=name,
                             code="invalid_type")
    return value


def _optional_type(body: dict[str, Any], name: str, kind: type | tuple, described: str) -> None:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise InvalidRequest(f"'{name}' must be {described}, not {_json_type(value)}", param=name, code="invalid_type")


def _optional_int(body: dict[str, Any], name: str, minimum: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{name}' must be an integer, not {_json_type(value)}", param=name, code="invalid_type")
    if value < minimum or value > 2**31:
        raise InvalidRequest(f"'{name}' must be between {minimum} and {2**31}", param=name, code="invalid_value")


def _optional_number(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InvalidRequest(f"'{name}' must be a number, not {_json_type(value)}", param=name, code="invalid_type")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def _short(exc: Exception) -> str:
    return quote(str(exc), 200)
