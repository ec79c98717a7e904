"""The model list and the 1-token probe of OpenAI-format upstreams (and the built-in mock).

- `GET {base}/models`: `{"object": "list", "data": [...]}` (OpenAI and most compatibles,
  OpenRouter, vLLM; Gemini's compatibility API).
- Ollama (`kind: ollama`): its native `GET /api/tags` (`{"models": [...]}`), then
  `POST /api/show` per model for `capabilities` and `<arch>.context_length`, folded into
  each entry as `capabilities` and `context_length`.
- LM Studio (`kind: lmstudio`): its native `GET /api/v0/models` (with `type`,
  `max_context_length`, `capabilities`).
Both native lists live at the server root (the base URL without /v1); a server that does not
answer there (404 or 405) is asked at `{base}/models` instead.

The HTTP is the catalog's (`fetch`, see WireAdapter.list_models); the entries are returned
raw and read by proxy/catalog/discovery.py, which knows every provider's metadata fields.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from proxy.config.model import UpstreamConfig

NATIVE_LISTS = {"ollama": "/api/tags", "lmstudio": "/api/v0/models"}
OLLAMA_SHOW_LIMIT = 64    # /api/show is one POST per model; local servers hold a handful
OLLAMA_SHOW_PARALLEL = 4
PROBE_PROMPT = "Reply with OK."

Fetch = Callable[..., Awaitable[Any]]


async def list_models(upstream: UpstreamConfig, fetch: Fetch) -> tuple[str, list[Any]]:
    base = upstream.base_url or ""
    native = NATIVE_LISTS.get(upstream.kind or "")
    if native:
        url = server_root(base) + native
        payload = await fetch(url, absent=(404, 405))
        if payload is not None:
            entries = model_entries(payload)
            if upstream.kind == "ollama":
                entries = await _ollama_details(server_root(base) + "/api/show", entries, fetch)
            return url, entries
    url = f"{base}/models"
    return url, model_entries(await fetch(url))


def model_entries(payload: Any) -> list[Any]:
    """The entries of a list answer: its `data` (OpenAI) or `models` (Ollama, LM Studio v1) list."""
    if not isinstance(payload, dict):
        raise ValueError("the models answer is not a JSON object")
    for key in ("data", "models"):
        if isinstance(payload.get(key), list):
            return payload[key]
    raise ValueError("the models answer has neither a 'data' nor a 'models' list")


def server_root(base_url: str) -> str:
    """The base without its trailing version segment: where Ollama's and LM Studio's native APIs live."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


async def _ollama_details(url: str, entries: list[Any], fetch: Fetch) -> list[Any]:
    """Ollama's tags carry no context length or capabilities; /api/show does, per model."""
    gate = asyncio.Semaphore(OLLAMA_SHOW_PARALLEL)

    async def detail(entry: Any) -> Any:
        name = _name(entry)
        if name is None:
            return entry
        async with gate:
            # The list itself answered: a missing detail is not a failed discovery.
            shown = await fetch(url, body={"model": name}, required=False)
        return with_show_details(entry, shown)

    head = await asyncio.gather(*(detail(entry) for entry in entries[:OLLAMA_SHOW_LIMIT]))
    return list(head) + entries[OLLAMA_SHOW_LIMIT:]


def with_show_details(entry: dict, shown: Any) -> dict:
    """One `/api/show` answer (capabilities list, model_info) folded into a tags entry."""
    if not isinstance(shown, dict):
        return entry
    details: dict[str, Any] = {}
    if isinstance(shown.get("capabilities"), list):
        details["capabilities"] = shown["capabilities"]
    info = shown.get("model_info")
    if isinstance(info, dict):
        context = next((v for k, v in info.items() if k.endswith(".context_length") and isinstance(v, int)
                        and not isinstance(v, bool)), None)
        if context:
            details["context_length"] = context
    return {**entry, **details} if details else entry


def _name(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    return next((entry[key] for key in ("id", "name", "model") if isinstance(entry.get(key), str) and entry[key]),
                None)


def probe_body(model: str, cap_field: str) -> tuple[str, dict[str, Any]]:
    """The chain path and the Chat Completions body of the 1-token probe, capped by `cap_field`
    (`max_tokens`, or `max_completion_tokens` for models that take only that)."""
    return "chat/completions", {"model": model, "messages": [{"role": "user", "content": PROBE_PROMPT}],
                                cap_field: 1}
