"""JSON in one place: orjson when installed (it is several times faster), else the stdlib.

Both paths reject NaN/Infinity on input, so a hostile body cannot smuggle
non-standard numbers through to an upstream.
"""
from __future__ import annotations

import json
from typing import Any

try:  # pragma: no cover - exercised by whichever is installed
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


if _orjson is not None:
    def loads(data: bytes | str) -> Any:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None

    def dumps(value: Any) -> bytes:
        return _orjson.dumps(value)

    def dumps_str(value: Any) -> str:
        return _orjson.dumps(value).decode()
else:  # pragma: no cover
    _decoder = json.JSONDecoder(parse_constant=_reject_constant)

    def loads(data: bytes | str) -> Any:
        if isinstance(data, (bytes, bytearray)):
            data = bytes(data).decode("utf-8")
        try:
            value, end = _decoder.raw_decode(data.strip())
        except json.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None
        if end != len(data.strip()):
            raise ValueError("extra data after JSON value")
        return value

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    def dumps_str(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
