"""JSON in one place: orjson when installed (it is several times faster), else the stdlib.

Both paths reject NaN/Infinity (and numbers that overflow to them) and lone
surrogates on input, so a hostile body cannot smuggle non-standard values
through to an upstream. Both raise ValueError for what JSON cannot carry, in
either direction (dumps too: nesting or an integer past 64 bits from upstream).
"""
from __future__ import annotations

import json
import re
from typing import Any

try:  # pragma: no cover - exercised by whichever is installed
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:24]} is out of range")
    return value


_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB]")


def _stdlib_loads(data: bytes | str) -> Any:
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")
    text = data.strip()
    try:
        value, end = _decoder.raw_decode(text)
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if end != len(text):
        raise ValueError("extra data after JSON value")
    if _SURROGATE_ESCAPE.search(text):
        _reject_lone_surrogates(value)
    return value


def _reject_lone_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


# orjson before 3.9.15 has no nesting limit: a few hundred KB of '[' overflow the C stack and
# kill the process (CVE-2024-27454). With such a version, text that could nest that deep is
# parsed by the stdlib, which raises instead.
_ORJSON_NESTING_SAFE = _orjson is not None and _version(_orjson.__version__) >= (3, 9, 15)
_BRACKETS_SAFE_FOR_OLD_ORJSON = 1024


def _may_nest_deeply(data: bytes | str) -> bool:
    if isinstance(data, str):
        return data.count("[") + data.count("{") > _BRACKETS_SAFE_FOR_OLD_ORJSON
    raw = data if isinstance(data, bytes) else bytes(data)
    return raw.count(b"[") + raw.count(b"{") > _BRACKETS_SAFE_FOR_OLD_ORJSON


if _orjson is not None:
    def loads(data: bytes | str) -> Any:
        if not _ORJSON_NESTING_SAFE and _may_nest_deeply(data):
            return _stdlib_loads(data)
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None

    def dumps(value: Any) -> bytes:
        try:
            return _orjson.dumps(value)
        except _orjson.JSONEncodeError as exc:  # nesting or an integer JSON here cannot carry
            raise ValueError(f"cannot write as JSON: {exc}") from None

    def dumps_str(value: Any) -> str:
        return dumps(value).decode()
else:  # pragma: no cover
    loads = _stdlib_loads

    def dumps_str(value: Any) -> str:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except RecursionError:
            raise ValueError("cannot write as JSON: nested too deeply") from None

    def dumps(value: Any) -> bytes:
        return dumps_str(value).encode()


# A string literal whose characters JSON writes as they are (no quote, backslash or control
# character): its bytes are already what `dumps` writes for its text.
_PLAIN_STRING = re.compile(rb'"[^"\\\x00-\x1f]*"')


def read_string(literal: bytes) -> tuple[str, bytes] | None:
    """A JSON string literal's text, and the literal as `dumps` writes it (a stream writing the
    text back out uses those bytes as they are); None when `literal` is not exactly one string.
    A literal without escapes is not parsed, only decoded from UTF-8: the hot path of the
    translated streams, whose text deltas are nearly all such."""
    if not (literal.startswith(b'"') and literal.endswith(b'"')):
        return None  # whitespace around it is JSON's, but it would be part of the event's line
    try:
        if _PLAIN_STRING.fullmatch(literal):
            return literal[1:-1].decode(), literal
        text = loads(literal)
    except ValueError:  # not UTF-8 (UnicodeDecodeError is one), or not JSON
        return None
    return (text, dumps(text)) if isinstance(text, str) else None
