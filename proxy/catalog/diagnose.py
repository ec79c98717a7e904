"""What went wrong talking to an upstream, in words a person can act on.

`byok-proxy check` feeds every failure through here. The provider's own error
type, code and message decide the class before the HTTP status does: OpenAI
says `insufficient_quota` with a 429 (billing, not throttling), Anthropic says
"credit balance is too low" with a 400, Gemini says "API key not valid" with a
400, OpenRouter says 402 for credits.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from proxy.config.secrets import quote, redact
from proxy.core import jsonutil
from proxy.core.errors import (InvalidRequest, ProxyError, RateLimited, ServiceUnavailable, UpstreamAuthError,
                               UpstreamError, UpstreamHTTPError, UpstreamProtocolError, UpstreamTimeout)
from proxy.upstream import failures
from proxy.upstream.failures import BAD_RESPONSE, CONNECT, DNS, PROXY, REFUSED, TIMEOUT, TLS  # noqa: F401 (re-exported)

# The classes, in the words the table prints.
# Those of failures below HTTP (timeout, tls_failure, dns_failure, connection_refused, connect_failure, proxy_failure,
# bad_response) are proxy/upstream/failures.py's, imported above.
INVALID_KEY = "invalid_key"
PERMISSION = "permission"
BILLING = "billing"
BASE_URL = "wrong_base_url"
MODEL_NOT_FOUND = "model_not_found"
RATE_LIMITED = "rate_limited"
NOT_SSE = "stream_not_sse"
UPSTREAM_ERROR = "upstream_error"
BAD_REQUEST = "bad_request"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    problem: str   # one of the class names above
    summary: str   # what is wrong, one line
    advice: str    # what to do about it

    def to_json(self) -> dict[str, str]:
        return {"class": self.problem, "message": redact(self.summary), "advice": redact(self.advice)}


@dataclass(frozen=True, slots=True)
class ProviderError:
    """The fields every provider's error body carries in some form."""

    type: str = ""
    code: str = ""
    message: str = ""

    @property
    def words(self) -> str:
        return f"{self.type} {self.code} {self.message}".lower()


def provider_error(body: bytes) -> ProviderError:
    """OpenAI `{"error": {type, code, message}}`, Anthropic `{"type": "error", "error": {type, message}}`,
    OpenRouter `{"error": {code: 402, message}}`, Gemini `[{"error": {status, message}}]`, or plain text."""
    try:
        payload: Any = jsonutil.loads(body)
    except ValueError:
        text = body.decode("utf-8", errors="replace").strip()
        return ProviderError(message=quote(text, 300) if not text.startswith("<") else "")
    if isinstance(payload, list) and payload:
        payload = payload[0]
    if not isinstance(payload, dict):
        return ProviderError()
    error = payload.get("error", payload)
    if isinstance(error, str):
        return ProviderError(message=error)
    if not isinstance(error, dict):
        return ProviderError()
    kind = error.get("type") or error.get("status") or ""
    message = error.get("message") or payload.get("message") or payload.get("detail") or ""
    return ProviderError(str(kind), str(error.get("code") or ""), str(message))


# ---- HTTP answers --------------------------------------------------------------------------------

def classify_http(status: int, body: bytes, headers: Mapping[str, str], *, url: str, base_url: str,
                  upstream: str, model: str | None = None, known_models: Iterable[str] = ()) -> Diagnosis:
    said = provider_error(body)
    words = said.words
    quoted = f': "{_short(said.message)}"' if said.message else ""
    field = f"upstreams.{upstream}"
    if _billing(status, said, words):
        return Diagnosis(BILLING, f"billing: the account has no credit or hit its spending limit (HTTP {status}){quoted}",
                         "add credits or raise the spending limit in the provider's billing settings; "
                         "the key itself is fine")
    if _invalid_key(status, said, words):
        revoked = any(w in words for w in ("revoked", "disabled", "deactivated", "expired"))
        what = "revoked or disabled" if revoked else "invalid or revoked"
        return Diagnosis(INVALID_KEY, f"the API key is {what} (HTTP {status}){quoted}",
                         f"create a new key in the provider's console and set {field}.api_key "
                         "(check that the ${ENV} variable holds the whole key, with no quotes or spaces)")
    if _permission(status, said, words):
        return Diagnosis(PERMISSION, f"the key lacks permission (HTTP {status}){quoted}",
                         "give the key (or its project/workspace) access to this model or endpoint, "
                         "or use a key that has it")
    if model is not None and _model_missing(status, said, words):
        close = difflib.get_close_matches(model, list(known_models), n=5, cutoff=0.4)
        hint = f"close matches: {', '.join(close)}" if close else "list them with GET /v1/models on the proxy"
        return Diagnosis(MODEL_NOT_FOUND, f"model '{model}' is not known to this upstream (HTTP {status}){quoted}",
                         f"fix the model id under {field}.models or the alias targets; {hint}")
    if _rate_limited(status, said, words):
        retry = headers.get("Retry-After") or headers.get("retry-after")
        wait = f"; it asks to wait {retry} s" if retry else ""
        return Diagnosis(RATE_LIMITED, f"rate limited (HTTP {status}){quoted}{wait}",
                         "wait and run check again; if it persists, lower max_concurrent_requests "
                         "or ask the provider for a higher limit")
    if status in (404, 405) or _looks_like_a_web_page(status, headers, body):
        return Diagnosis(BASE_URL, f"nothing answers at {url} (HTTP {status}): the base URL looks wrong",
                         _base_url_advice(base_url, field))
    if status < 400:
        return Diagnosis(BAD_RESPONSE, f"{url} answered HTTP {status} with something that is not the API's JSON",
                         "check that the base URL points at the API itself and not at something in front of it")
    if status >= 500:
        return Diagnosis(UPSTREAM_ERROR, f"the upstream failed on its side (HTTP {status}){quoted}",
                         "retry later and look at the provider's status page")
    return Diagnosis(BAD_REQUEST, f"the upstream refused the request (HTTP {status}){quoted}",
                     f"check {field}.options and headers; the provider's message says what it did not accept")


def _billing(status: int, said: ProviderError, words: str) -> bool:
    codes = ("insufficient_quota", "billing_hard_limit_reached", "credit_balance_exhausted", "payment_required",
             "billing_not_active", "insufficient_balance")
    phrases = ("credit balance", "insufficient credits", "insufficient balance", "exceeded your current quota",
               "out of credits", "add more credits", "billing details", "payment required", "no credits")
    return status == 402 or said.type == "billing_error" or said.code in codes or said.type in codes or \
        any(phrase in words for phrase in phrases)


def _invalid_key(status: int, said: ProviderError, words: str) -> bool:
    phrases = ("invalid api key", "incorrect api key", "invalid x-api-key", "api key not valid", "invalid_api_key",
               "no auth credentials", "invalid authentication", "api key is invalid", "unauthorized",
               "user not found", "key has been revoked")
    return status == 401 or said.type in ("authentication_error", "unauthenticated", "UNAUTHENTICATED") or \
        said.code in ("invalid_api_key", "invalid_authentication") or any(phrase in words for phrase in phrases)


def _permission(status: int, said: ProviderError, words: str) -> bool:
    phrases = ("permission", "not allowed", "does not have access", "not authorized", "forbidden",
               "insufficient permissions", "not supported in your region", "country, region")
    return status == 403 or said.type in ("permission_error", "PERMISSION_DENIED") or \
        said.code in ("permission_denied", "unsupported_country_region_territory") or \
        (status in (400, 404) and any(phrase in words for phrase in phrases))


def _model_missing(status: int, said: ProviderError, words: str) -> bool:
    if said.code in ("model_not_found", "invalid_model"):
        return True
    if status not in (400, 404, 422):
        return False
    model_phrases = ("not found", "does not exist", "not a valid model", "unknown model", "no such model",
                     "invalid model", "not supported model", "model not", "no endpoints found")
    return ("model" in words and any(phrase in words for phrase in model_phrases)) or \
        (said.type == "not_found_error" and "model" in words)


def _rate_limited(status: int, said: ProviderError, words: str) -> bool:
    return status == 429 or said.type in ("rate_limit_error", "RESOURCE_EXHAUSTED") or \
        said.code in ("rate_limit_exceeded", "rate_limited") or "rate limit" in words


def _looks_like_a_web_page(status: int, headers: Mapping[str, str], body: bytes) -> bool:
    content_type = (headers.get("Content-Type") or headers.get("content-type") or "").lower()
    return "text/html" in content_type or body.lstrip()[:15].lower().startswith((b"<!doctype", b"<html"))


def _base_url_advice(base_url: str, field: str) -> str:
    path = urlsplit(base_url).path.rstrip("/")
    if path.endswith("/v1"):
        other = base_url.rstrip("/")[: -len("/v1")]
        return (f"try the base URL without /v1 ({other}) with append_v1: false, or check the host's documented "
                f"API path; {field}.base_url is {base_url}")
    return (f"try the base URL with /v1 ({base_url.rstrip('/')}/v1), or check the host's documented API path; "
            f"{field}.base_url is {base_url}")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- failures below HTTP -----------------------------------------------------------------------

def classify_exception(exc: BaseException | None, *, url: str, upstream: str, timeout: float,
                       early_close: str | None = None) -> Diagnosis:
    """A client failure (proxy/upstream/pool.py's) in the words of proxy/upstream/failures.py's table
    (`early_close`: failures.early_close_hint of the upstream)."""
    if exc is None:
        return Diagnosis(BAD_RESPONSE, f"{url}: the exchange failed for an unknown reason",
                         "check that the base URL points at the API itself and not at something in front of it")
    failure = failures.classify(exc, early_close)
    return Diagnosis(*failure.describe(url, timeout, f"upstreams.{upstream}.base_url"))


# ---- errors from the chain (check's probe) ----------------------------------------------------------

# How both wire formats word a refused key: "refused the proxy's credentials (403 permission_error): ..."
_REFUSED_KEY = re.compile(r"refused the proxy's credentials \((\d{3})[^)]*\): (.*?)(?:\. Check api_key for upstream .*)?$",
                          re.DOTALL)
# How proxy/wire/openai.py words an in-stream {"error": ...} event that carries no HTTP status.
_STREAM_FAILED = "the stream failed: "


def classify_error(error: ProxyError, *, url: str, base_url: str, upstream: str, model: str | None = None,
                   known_models: Iterable[str] = (), timeout: float, streamed: bool = False) -> Diagnosis | None:
    """An error the chain raised for a probe -> its class, as the upstream's own answer would have
    been classified. `streamed`: the upstream had answered with an event stream. None means the
    probe passed after all: like the probe before the chain, a stream is judged by its status, its
    type and its first events, so a stream the upstream opened and then ended early is not a failure."""
    where = dict(url=url, base_url=base_url, upstream=upstream)
    if isinstance(error, UpstreamHTTPError):
        body = jsonutil.dumps({"error": error.upstream_body}) if error.upstream_body is not None \
            else error.detail.encode()
        return classify_http(error.upstream_status, body, error.headers, model=model, known_models=known_models,
                             **where)
    if isinstance(error, UpstreamAuthError):
        said = _REFUSED_KEY.match(error.detail)
        status, message = (int(said.group(1)), said.group(2)) if said else (401, error.detail)
        return classify_http(status, jsonutil.dumps({"error": {"message": message}}), {}, model=model,
                             known_models=known_models, **where)
    failure = getattr(error, "failure", None)  # set by the transport for failures below HTTP
    if isinstance(failure, failures.Failure):
        return Diagnosis(*failure.describe(url, timeout, f"upstreams.{upstream}.base_url"))
    if isinstance(error, UpstreamTimeout):
        return classify_exception(TimeoutError(), url=url, upstream=upstream, timeout=timeout)
    if isinstance(error, UpstreamProtocolError):
        if error.detail.startswith(_STREAM_FAILED):  # an error event inside a 200 stream
            body = jsonutil.dumps({"error": {"message": error.detail[len(_STREAM_FAILED):]}})
            return classify_http(400, body, {}, model=model, known_models=known_models, **where)
        if streamed:
            return None
        return Diagnosis(BAD_RESPONSE, f"{url} answered with something that is not the API's answer: {error.detail}",
                         "check that the base URL points at the API itself and not at something in front of it")
    if isinstance(error, RateLimited):  # the proxy's own: the upstream asked it to wait (a 429's Retry-After)
        return Diagnosis(RATE_LIMITED, f"rate limited: {error.message}",
                         "wait and run check again; if it persists, lower max_concurrent_requests "
                         "or ask the provider for a higher limit")
    if isinstance(error, (UpstreamError, ServiceUnavailable)):
        return Diagnosis(UPSTREAM_ERROR, f"the upstream failed: {error.message}",
                         "retry later and look at the provider's status page")
    if isinstance(error, InvalidRequest):
        return Diagnosis(BAD_REQUEST, f"the proxy refused the probe: {error.message}",
                         f"check upstreams.{upstream} (models, options, headers) and the plugins")
    return Diagnosis(BAD_RESPONSE, f"the probe failed: {error.message}",
                     "run byok-proxy validate, then check again")


def not_sse(content_type: str, url: str) -> Diagnosis:
    return Diagnosis(NOT_SSE, f"asked {url} for a stream and got {content_type or 'no content type'}, not "
                              "text/event-stream",
                     "something between the proxy and the upstream buffers or rewrites the answer (a corporate "
                     "proxy, an API gateway): exempt this host, or set streaming: false on the upstream")
