"""Anthropic error answers and model lists, decoded without a network: each documented error
type to its OpenAI envelope and status, and pages of /v1/models to catalog entries."""
import pytest

from proxy.config.model import UpstreamConfig
from proxy.core.errors import UpstreamAuthError, UpstreamHTTPError, UpstreamProtocolError
from proxy.core.exchange import ProxyRequest, Target
from proxy.wire.anthropic import adapter as anthropic
from proxy.wire.anthropic import models as anthropic_models
from proxy.wire.anthropic.response import error_from_event

pytestmark = pytest.mark.timeout(30)
UPSTREAM = UpstreamConfig(name="claude", base_url="http://127.0.0.1:9/v1", format="anthropic")


def envelope(status, error_type, message="said upstream"):
    return (b'{"type":"error","error":{"type":"%s","message":"%s"},"request_id":"req_1"}'
            % (error_type.encode(), message.encode()))


@pytest.mark.parametrize("status, error_type, client_status, openai_type, code", [
    (400, "invalid_request_error", 400, "invalid_request_error", None),
    (404, "not_found_error", 404, "invalid_request_error", "not_found"),
    (413, "request_too_large", 413, "invalid_request_error", "request_too_large"),
    (429, "rate_limit_error", 429, "rate_limit_error", "rate_limit_exceeded"),
    (500, "api_error", 502, "server_error", "api_error"),
    (529, "overloaded_error", 503, "overloaded_error", "overloaded"),
    (402, "billing_error", 502, "insufficient_quota", "billing_error"),
])
def test_error_types_map_to_status_and_envelope(status, error_type, client_status, openai_type, code):
    error = anthropic.ADAPTER.decode_error(UPSTREAM, status, envelope(status, error_type), {})
    assert isinstance(error, UpstreamHTTPError)
    assert error.status == client_status and error.fallback_reason == str(status)
    body = error.envelope()["error"]
    assert (body["type"], body["code"]) == (openai_type, code)
    assert body["message"] == "upstream 'claude': said upstream"


@pytest.mark.parametrize("status, error_type", [(401, "authentication_error"), (403, "permission_error")])
def test_credential_refusals_are_the_proxys_problem_not_the_clients(status, error_type):
    error = anthropic.ADAPTER.decode_error(UPSTREAM, status, envelope(status, error_type), {})
    assert isinstance(error, UpstreamAuthError) and error.status == 502 and error.fallback_reason is None
    assert "upstream 'claude'" in error.message and error_type in error.message


def test_retry_after_is_kept_and_a_non_json_body_still_says_what_happened():
    limited = anthropic.ADAPTER.decode_error(UPSTREAM, 429, envelope(429, "rate_limit_error"), {"retry-after": "12"})
    assert limited.retry_after == 12 and limited.headers["Retry-After"] == "12"
    html = anthropic.ADAPTER.decode_error(UPSTREAM, 413, b"<html>413 Request Entity Too Large</html>", {})
    assert html.status == 413 and "413" in html.message


def test_stream_error_events_get_the_status_of_their_type():
    assert error_from_event("claude", {"type": "error", "error": {"type": "rate_limit_error", "message": "x"}}).status == 429
    assert error_from_event("claude", {"type": "error", "error": {"type": "something_new", "message": "x"}}).status == 502
    assert error_from_event("claude", {"type": "error"}).status == 502


def test_a_200_that_is_not_a_message_is_a_protocol_error():
    request = ProxyRequest(request_id="r", method="POST", path="chat/completions", body={})
    target = Target(UPSTREAM, "claude-sonnet-4-6")
    with pytest.raises(UpstreamProtocolError):
        anthropic.ADAPTER.decode_chat(b"<html>", request, target)
    with pytest.raises(UpstreamProtocolError):
        anthropic.ADAPTER.decode_chat(b'{"type": "message"}', request, target)


def test_model_pages_become_catalog_entries_and_say_where_the_next_page_is():
    page = {"data": [{"type": "model", "id": "claude-opus-4-8", "display_name": "Claude Opus 4.8",
                      "created_at": "2026-06-01T00:00:00Z", "max_input_tokens": 1000000, "max_tokens": 128000},
                     {"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5",
                      "created_at": "2025-10-01T00:00:00Z"},
                     {"type": "model"}],
            "has_more": True, "first_id": "claude-opus-4-8", "last_id": "claude-haiku-4-5"}
    assert anthropic_models.parse_models(page) == [
        {"id": "claude-opus-4-8", "display_name": "Claude Opus 4.8", "created_at": "2026-06-01T00:00:00Z",
         "max_input_tokens": 1000000, "max_tokens": 128000, "context_window": 1000000},
        {"id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5", "created_at": "2025-10-01T00:00:00Z"}]
    assert anthropic_models.next_page_params(page) == {"after_id": "claude-haiku-4-5", "limit": "1000"}
    assert anthropic_models.next_page_params({**page, "has_more": False}) is None
    assert anthropic_models.parse_models({"data": "nonsense"}) == []
