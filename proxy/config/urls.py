"""Upstream base URLs: normalization, the http/https policy, and well-known hosts.

Detection only supplies defaults (kind, format, where the version segment
lives); whatever the config says by hand wins, and nothing here limits what
an upstream may do.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from proxy.config.formats import FORMATS as _FORMAT_SPECS

KINDS = ("openai", "openrouter", "anthropic", "gemini", "groq", "mistral", "deepseek", "together",
         "fireworks", "perplexity", "zai", "moonshot", "lmstudio", "ollama", "vllm", "litellm", "generic")
FORMATS = tuple(_FORMAT_SPECS)


@dataclass(frozen=True, slots=True)
class KnownHost:
    kind: str
    format: str = "openai"
    # The path to use when the configured URL has no version segment.
    default_path: str = "/v1"


# host suffix (or host:port for local servers) -> what that provider needs
_KNOWN_HOSTS: tuple[tuple[str, KnownHost], ...] = (
    ("api.openai.com", KnownHost("openai")),
    ("openrouter.ai", KnownHost("openrouter", default_path="/api/v1")),
    ("groq.com", KnownHost("groq", default_path="/openai/v1")),
    ("together.xyz", KnownHost("together")),
    ("together.ai", KnownHost("together")),
    ("mistral.ai", KnownHost("mistral")),
    ("perplexity.ai", KnownHost("perplexity", default_path="")),
    ("fireworks.ai", KnownHost("fireworks", default_path="/inference/v1")),
    ("deepseek.com", KnownHost("deepseek", default_path="")),
    ("api.anthropic.com", KnownHost("anthropic", format="anthropic")),
    ("generativelanguage.googleapis.com", KnownHost("gemini", default_path="/v1beta/openai")),
    ("z.ai", KnownHost("zai", default_path="/api/paas/v4")),
    ("bigmodel.cn", KnownHost("zai", default_path="/api/paas/v4")),
    ("moonshot.ai", KnownHost("moonshot")),
    ("moonshot.cn", KnownHost("moonshot")),
)
_KNOWN_LOCAL_PORTS = {1234: KnownHost("lmstudio"), 4000: KnownHost("litellm"), 11434: KnownHost("ollama")}

_VERSION_SEGMENT = re.compile(r"^v\d+[a-z0-9]*$")


class BaseURLError(ValueError):
    """The base URL cannot be used; the message says what to write instead."""


def known_host(url: str) -> KnownHost | None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for suffix, known in _KNOWN_HOSTS:
        if host == suffix or host.endswith("." + suffix):
            return known
    if _is_loopback_name(host) and parts.port in _KNOWN_LOCAL_PORTS:
        return _KNOWN_LOCAL_PORTS[parts.port]
    return None


def detect_format(url: str | None) -> str:
    known = known_host(url) if url else None
    return known.format if known else "openai"


def detect_kind(url: str | None, wire_format: str) -> str:
    known = known_host(url) if url else None
    if known:
        return known.kind
    return _FORMAT_SPECS[wire_format].default_kind


def normalize_base_url(raw: str, wire_format: str, append_v1: bool = True, allow_http: bool = False) -> str:
    """The base every endpoint path is appended to (`{base}/chat/completions`)."""
    url = raw.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BaseURLError(f"'{raw}' is not an http(s) URL with a host")
    if parts.query or parts.fragment:
        raise BaseURLError(f"'{raw}' must not carry a query or fragment")
    if parts.username or parts.password:
        raise BaseURLError("credentials do not belong in the base URL; use api_key or headers")
    if parts.scheme == "http" and not allow_http and not is_private_host(parts.hostname):
        raise BaseURLError(f"http:// is only allowed for loopback, .local and private addresses; use https://{parts.netloc}{parts.path}")
    path = parts.path.rstrip("/")
    trailing = _FORMAT_SPECS[wire_format].trailing_endpoints
    if "/responses" not in trailing and (path.endswith("/responses") or "/responses/" in path + "/"):
        raise BaseURLError("a /responses URL is the OpenAI Responses API: set `format: responses` on this upstream "
                           "to send it Responses requests, or give the base without /responses (for example "
                           "https://api.openai.com/v1) to send it Chat Completions")
    for suffix in trailing:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    if append_v1 and not _has_version_segment(path):
        path = _with_version(path, known_host(url))
    return urlunsplit((parts.scheme, parts.netloc.lower(), path, "", ""))


def _with_version(path: str, known: KnownHost | None) -> str:
    """Append the version segment: the provider's documented path where the host is known."""
    if known is None:
        return path + "/v1"
    if (known.default_path + "/").startswith(path + "/"):
        return known.default_path  # e.g. groq's /openai -> /openai/v1
    return path if not known.default_path else path + "/v1"


def _has_version_segment(path: str) -> bool:
    return any(_VERSION_SEGMENT.match(segment) for segment in path.split("/"))


def _is_loopback_name(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_PRIVATE_NETWORKS = tuple(ipaddress.ip_network(net) for net in
                          ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


def is_private_host(host: str) -> bool:
    """Loopback, `.local` names and RFC 1918 / ULA addresses: where plain http is acceptable."""
    host = host.lower().strip("[]")
    if _is_loopback_name(host) or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in _PRIVATE_NETWORKS if network.version == address.version)


def is_loopback_bind(host: str) -> bool:
    """Whether a listen address only accepts connections from this machine."""
    return _is_loopback_name(host.lower().strip("[]"))


# RFC 9110 field names are tokens; a value may not hold CR, LF or NUL (they would end the
# header and start another one: request smuggling through a config or an env var).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def header_problem(name: str, value: str) -> str | None:
    """What is wrong with a header the config would send upstream, or None. Never quotes the value."""
    if not _HEADER_NAME.fullmatch(name):
        return f"'{name}' is not a valid HTTP header name"
    if "\r" in value or "\n" in value or "\0" in value:
        return "the value contains a line break or NUL (a trailing newline from a file or variable?)"
    return None
