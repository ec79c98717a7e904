"""Stored responses, in the Responses API's terms: what a record holds, the ids that tell the
proxy's responses from an upstream's, and reading records back (retrieve, input_items, delete).

A record is one JSON object: the Response as the client saw it, `input_items` (every item the
model was given before this response's output: the earlier turns' inputs and outputs, then this
request's own input, oldest first; OpenAI lists a chained response's input items the same way),
and `carried` (the encrypted reasoning of output items whose client did not ask for it, so the
next turn can hand signed thinking back to the model). Continuing a response is replaying its
`conversation()` before the new input: one read, whichever replica, however long the chain.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from proxy.core import jsonutil
from proxy.core.errors import InvalidRequest, NotFound
from proxy.state.store import ResponseStore

# The proxy's own response ids: `resp_byok_` + 32 hex digits. Any other id was made by an
# upstream (OpenAI's are `resp_` + hex) and is left to that upstream's own store.
PROXY_ID_PREFIX = "resp_byok_"
_ROLE_PART = {"assistant": "output_text"}
_ITEM_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs",
                     "custom_tool_call": "ctc", "custom_tool_call_output": "ctco"}


def new_response_id() -> str:
    return PROXY_ID_PREFIX + uuid.uuid4().hex


def is_proxy_id(response_id: Any) -> bool:
    return isinstance(response_id, str) and response_id.startswith(PROXY_ID_PREFIX)


class ResponseNotFound(NotFound):
    code = None  # OpenAI's 404 carries no code


def not_found(response_id: str) -> ResponseNotFound:
    return ResponseNotFound(f"Response with id '{response_id}' not found.")


@dataclass(slots=True)
class StoredResponse:
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    carried: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return jsonutil.dumps({"response": self.response, "input_items": self.input_items, "carried": self.carried})

    @classmethod
    def decode(cls, record: bytes) -> "StoredResponse":
        data = jsonutil.loads(record)
        return cls(data["response"], data["input_items"], data.get("carried") or {})

    def conversation(self) -> list[dict[str, Any]]:
        """The items a continuation replays: the inputs, then the output (signed thinking kept)."""
        output = []
        for item in self.response.get("output") or ():
            token = self.carried.get(item.get("id")) if isinstance(item, dict) else None
            output.append({**item, "encrypted_content": token} if token else item)
        return [*self.input_items, *output]


# ---- records in and out of the store ----------------------------------------------------------------

async def load(store: Optional[ResponseStore], response_id: str) -> StoredResponse:
    """The stored response (GET, DELETE, input_items); OpenAI's 404 when there is none."""
    record = await store.get(response_id) if store is not None and is_proxy_id(response_id) else None
    if record is None:
        raise not_found(response_id)
    return StoredResponse.decode(record)


async def load_previous(store: Optional[ResponseStore], response_id: str) -> StoredResponse:
    """The response a create continues; OpenAI's 400 when there is none."""
    try:
        return await load(store, response_id)
    except ResponseNotFound:
        raise InvalidRequest(f"Previous response with id '{response_id}' not found.", param="previous_response_id",
                             code="previous_response_not_found") from None


def deleted(response_id: str) -> dict[str, Any]:
    return {"id": response_id, "object": "response", "deleted": True}


# ---- input items ---------------------------------------------------------------------------------------

def input_item_list(value: Any) -> list[dict[str, Any]]:
    """A request's `input` as stored input items: each an object with an `id`, messages with
    their content as parts (what GET .../input_items lists, and what replays as input)."""
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    items = []
    for raw in value if isinstance(value, list) else ():
        if not isinstance(raw, dict):
            continue
        item = dict(raw)
        kind = item.setdefault("type", "message")
        if kind == "message":
            if isinstance(item.get("content"), str):
                part = _ROLE_PART.get(item.get("role"), "input_text")
                text_part = {"type": part, "text": item["content"]}
                item["content"] = [{**text_part, "annotations": []} if part == "output_text" else text_part]
            item.setdefault("status", "completed")
        item.setdefault("id", f"{_ITEM_ID_PREFIXES.get(kind, 'item')}_{uuid.uuid4().hex}")
        items.append(item)
    return items


def input_items_page(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of `GET /v1/responses/{id}/input_items`, as OpenAI pages it: `order` (desc by
    default), `limit` (1-100, default 20), and the item-id cursors `after` and `before`."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", param="order",
                             code="invalid_value")
    limit = _limit(query.get("limit", "20"))
    ordered = list(items) if order == "asc" else list(reversed(items))
    ids = [item.get("id") for item in ordered]
    if query.get("after") is not None:
        after = query["after"]
        ordered = ordered[ids.index(after) + 1:] if after in ids else []
        page, has_more = ordered[:limit], len(ordered) > limit
    elif query.get("before") is not None:
        before = query["before"]
        ordered = ordered[:ids.index(before)] if before in ids else []
        page, has_more = ordered[-limit:], len(ordered) > limit
    else:
        page, has_more = ordered[:limit], len(ordered) > limit
    return {"object": "list", "data": page, "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None, "has_more": has_more}


def _limit(value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        raise InvalidRequest("Invalid 'limit': expected an integer.", param="limit", code="invalid_type") from None
    if not 1 <= limit <= 100:
        raise InvalidRequest(f"Invalid 'limit': expected a value from 1 to 100, but got {limit} instead.",
                             param="limit", code="invalid_value")
    return limit
