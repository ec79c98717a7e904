"""The client's own body for an upstream that speaks the client's API (Messages to Anthropic,
Responses to a Responses upstream): read at its top level once, and only the fields the chain
owns spliced into the client's bytes (proxy/core/splice.py).

The inbound API may have read the body that way already (ProxyRequest.spliced: a large body
bound only for such upstreams); otherwise it is read here, at the top level only.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from msgspec import Raw

from proxy.core import splice
from proxy.core.errors import InvalidRequest
from proxy.core.exchange import ProxyRequest, Target
from proxy.core.options import merge_options, option_layers


def client_object(request: ProxyRequest) -> splice.RawObject:
    """The client's body as an object to splice into, its members still `Raw`."""
    if request.spliced is not None:
        return request.spliced
    try:
        top = splice.read_top_level(request.native_body)
    except (ValueError, RecursionError):
        raise InvalidRequest("the request body is not valid JSON") from None
    return splice.RawObject(top, top.values)


def spliced_body(client: splice.RawObject, body: dict[str, Any], options_of: Optional[Target]) -> list[Any]:
    """`body` (the client's members, some replaced or added) with the `options:` of `options_of`
    merged in (none when None), as the buffers the transport writes: views of the client's bytes
    between the re-encoded parts (splice.RawObject.pieces), so megabytes are sent without a copy."""
    if options_of is not None:
        body = merge_options(_decoded_where_merged(body, options_of), options_of)
    return client.pieces(body)


def _decoded_where_merged(body: dict[str, Any], target: Target) -> dict[str, Any]:
    """`options:` merge an object into the client's object key by key, so those values are decoded."""
    for layer in option_layers(target):
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(body.get(key), Raw):
                body[key] = splice.decode(body[key])
    return body
