"""The model list and token counting as Anthropic clients read them."""
from __future__ import annotations

import datetime
from typing import Any, Mapping

from proxy.inbound.messages.count import estimate_input_tokens
from proxy.inbound.messages.request import to_chat


def anthropic_model_list(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The catalog (OpenAI's list shape) as Anthropic's `GET /v1/models` page: `data` of
    {type, id, display_name, created_at}, with `has_more`, `first_id` and `last_id`. Every entry
    fits one page, so `has_more` is false."""
    data = [{"type": "model", "id": entry["id"], "display_name": entry.get("display_name") or entry["id"],
             "created_at": _iso(entry.get("created"))} for entry in payload.get("data", ())]
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def count_tokens(body: Any) -> dict[str, int]:
    """`POST /v1/messages/count_tokens`, answered offline: the body is checked as a Messages
    request would be (it has no max_tokens, so one is assumed), then estimated (count.py)."""
    to_chat({"max_tokens": 1, **body} if isinstance(body, dict) else body)
    return {"input_tokens": estimate_input_tokens(body)}


def _iso(created: Any) -> str:
    seconds = created if isinstance(created, int) and created > 0 else 0
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
