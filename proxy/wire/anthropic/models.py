"""The model list and the 1-token probe of Anthropic Messages API upstreams.

`GET {base}/models` answers one page `{"data", "has_more", "first_id", "last_id"}`; the next
page is asked for with `after_id` = `last_id`. Entries carry `max_input_tokens`, `max_tokens`
and `capabilities.{image_input, thinking, effort}`; they are returned raw and read by
proxy/catalog/discovery.py, since capabilities and effort levels are catalog metadata.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from proxy.config.model import UpstreamConfig
from proxy.wire.openai_models import PROBE_PROMPT

PAGE_LIMIT = 1000
MAX_PAGES = 20  # a runaway paginator must not keep the health loop busy


async def list_models(upstream: UpstreamConfig, fetch: Callable[..., Awaitable[Any]]) -> tuple[str, list[Any]]:
    url = f"{upstream.base_url}/models"
    payload = await fetch(url, params={"limit": str(PAGE_LIMIT)})
    entries: list[Any] = []
    for _ in range(MAX_PAGES):
        entries.extend(page_entries(payload))
        params = next_page_params(payload, PAGE_LIMIT)
        if params is None:
            break
        payload = await fetch(url, params=params)
    return url, entries


def page_entries(payload: Any) -> list[Any]:
    if not isinstance(payload, dict):
        raise ValueError("the models answer is not a JSON object")
    if not isinstance(payload.get("data"), list):
        raise ValueError("the models answer has no 'data' list")
    return payload["data"]


def parse_models(payload: dict) -> list[dict]:
    """One page of `GET /v1/models` (`{"data", "has_more", "first_id", "last_id"}`) as catalog entries."""
    data = payload.get("data") if isinstance(payload, dict) else None
    models = []
    for item in data if isinstance(data, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        entry: dict[str, Any] = {"id": item["id"]}
        for name in ("display_name", "created_at", "max_input_tokens", "max_tokens"):
            if item.get(name) is not None:
                entry[name] = item[name]
        if isinstance(item.get("max_input_tokens"), int):
            entry["context_window"] = item["max_input_tokens"]
        models.append(entry)
    return models


def next_page_params(payload: dict, limit: int = PAGE_LIMIT) -> dict[str, str] | None:
    """The query for the page after this one, or None when this was the last."""
    if not isinstance(payload, dict) or payload.get("has_more") is not True:
        return None
    last_id = payload.get("last_id")
    return {"after_id": last_id, "limit": str(limit)} if isinstance(last_id, str) and last_id else None


def probe_body(model: str, cap_field: str) -> tuple[str, dict[str, Any]]:
    """The chain path and the Chat Completions body of the 1-token probe. The Messages API has one
    output cap, `max_tokens`, which the request encoder fills from either cap field; it is sent
    as `max_tokens` whatever `cap_field` says."""
    return "chat/completions", {"model": model, "messages": [{"role": "user", "content": PROBE_PROMPT}],
                                "max_tokens": 1}
