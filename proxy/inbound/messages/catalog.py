"""The model list as Anthropic clients read it."""
from __future__ import annotations

import datetime
from typing import Any, Mapping



def anthropic_model_list(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The catalog (OpenAI's list shape) as Anthropic's `GET /v1/models` page: `data` of
    {type, id, display_name, created_at}, with `has_more`, `first_id` and `last_id`. Every entry
    fits one page, so `has_more` is false."""
    data = [{"type": "model", "id": entry["id"], "display_name": entry.get("display_name") or entry["id"],
             "created_at": _iso(entry.get("created"))} for entry in payload.get("data", ())]
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def _iso(created: Any) -> str:
    seconds = created if isinstance(created, int) and created > 0 else 0
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
