"""Egress proxies: the proxy URL, and HTTPS_PROXY / HTTP_PROXY / NO_PROXY as curl and requests read them.

Read once, at load (proxy/config/model.py resolves each upstream's proxy with these); the
upstream client only follows the result. The rules, as curl and requests have them:
- each variable in either case; the lowercase one wins when both are set (as in requests);
- HTTPS_PROXY serves https:// upstreams and HTTP_PROXY http:// ones; a proxy URL without a
  scheme is http://, and its port defaults to 80 (http) or 443 (https);
- NO_PROXY is a comma-separated list: `*` (every host), a host name that matches itself and
  every name below it (`example.com`, `.example.com` and `*.example.com` alike), an IP
  address, or a CIDR block (`10.0.0.0/8`); an entry may end in `:port` to match that port only;
- NO_PROXY applies to a proxy from the environment only, never to an upstream's own `proxy:`.

Credentials in a proxy URL (`http://user:pass@host:3128`) become Secrets at once: the URL a
person sees (`shown`) never holds them, and neither does any message here.
"""
from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import unquote, urlsplit

from proxy.config.secrets import Secret, remember

NO_PROXY_WORD = "none"  # `proxy: none`: connect directly, whatever the environment says


@dataclass(frozen=True, slots=True)
class ProxyURL:
    """A forward proxy: where it listens, and the credentials it wants (never shown)."""

    host: str
    port: int
    username: Optional[Secret] = None
    password: Optional[Secret] = None
    source: str = "proxy"  # where it was set: `upstreams.NAME.proxy` or `HTTPS_PROXY`

    @property
    def shown(self) -> str:
        """The proxy as messages name it: scheme, host and port, never credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def authorization(self) -> str | None:
        """The Proxy-Authorization value (Basic), or None without credentials."""
        if self.username is None:
            return None
        password = self.password.reveal() if self.password is not None else ""
        token = base64.b64encode(f"{self.username.reveal()}:{password}".encode()).decode()
        remember(token)  # the encoded pair is as secret as the pair
        return f"Basic {token}"


class ProxyURLError(ValueError):
    """A proxy URL that cannot be used; the message never quotes the URL (it may hold a password)."""


def parse_proxy_url(text: str, source: str) -> ProxyURL:
    raw = text.strip()
    parts = urlsplit(raw if "://" in raw else f"http://{raw}")
    if parts.scheme != "http":
        raise ProxyURLError(f"only http:// proxies are supported (got {parts.scheme}://); the tunnel to an "
                            f"https upstream is still end-to-end TLS")
    try:
        port = parts.port or 80
    except ValueError:
        raise ProxyURLError("the proxy URL has an invalid port") from None
    if not parts.hostname:
        raise ProxyURLError("the proxy URL has no host (expected http://[user:password@]host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyURLError("a proxy URL is http://[user:password@]host:port, without a path or query")
    username = Secret(unquote(parts.username)) if parts.username else None
    password = Secret(unquote(parts.password)) if parts.password else None
    return ProxyURL(parts.hostname, port, username, password, source)


# ---- NO_PROXY ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NoProxyEntry:
    name: str = ""                                       # a host name and everything below it
    network: Optional[ipaddress._BaseNetwork] = None     # an address or a CIDR block
    port: Optional[int] = None                           # only this port, when given

    def matches(self, host: str, address: Optional[ipaddress._BaseAddress], port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address is not None and address.version == self.network.version and address in self.network
        return host == self.name or host.endswith("." + self.name)


@dataclass(frozen=True, slots=True)
class NoProxy:
    everything: bool = False
    entries: tuple[NoProxyEntry, ...] = ()

    def bypasses(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        host = host.lower().strip("[]").rstrip(".")
        address = _address(host)
        return any(entry.matches(host, address, port) for entry in self.entries)


def parse_no_proxy(text: str) -> NoProxy:
    entries = []
    for item in text.replace(" ", ",").split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item == "*":
            return NoProxy(everything=True)
        entry = _no_proxy_entry(item)
        if entry is not None:
            entries.append(entry)
    return NoProxy(entries=tuple(entries))


def _no_proxy_entry(item: str) -> NoProxyEntry | None:
    try:  # an IPv6 address or block has colons of its own: try it whole first
        return NoProxyEntry(network=ipaddress.ip_network(item.strip("[]"), strict=False))
    except ValueError:
        pass
    host, port = item, None
    if item.startswith("[") and "]:" in item:
        host, _, digits = item[1:].partition("]:")
        port = int(digits) if digits.isdigit() else None
    elif item.count(":") == 1:
        host, _, digits = item.partition(":")
        port = int(digits) if digits.isdigit() else None
    try:
        return NoProxyEntry(network=ipaddress.ip_network(host.strip("[]"), strict=False), port=port)
    except ValueError:
        pass
    name = host.removeprefix("*").lstrip(".").rstrip(".")
    return NoProxyEntry(name=name, port=port) if name else None


def _address(host: str) -> Optional[ipaddress._BaseAddress]:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# ---- the environment -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EnvProxies:
    """The egress proxies the environment names, read once at load."""

    http: Optional[ProxyURL] = None
    https: Optional[ProxyURL] = None
    no_proxy: NoProxy = NoProxy()
    problems: tuple[tuple[str, str], ...] = ()  # (variable, what is wrong), reported when an upstream needs it

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "EnvProxies":
        found: dict[str, Optional[ProxyURL]] = {}
        problems = []
        for scheme in ("http", "https"):
            variable, value = _variable(environ, f"{scheme}_proxy")
            found[scheme] = None
            if value:
                try:
                    found[scheme] = parse_proxy_url(value, variable)
                except ProxyURLError as exc:
                    problems.append((variable, str(exc)))
        _, no_proxy = _variable(environ, "no_proxy")
        return cls(found["http"], found["https"], parse_no_proxy(no_proxy or ""), tuple(problems))

    def for_url(self, scheme: str, host: str, port: int) -> tuple[Optional[ProxyURL], Optional[str]]:
        """The proxy for an upstream at scheme://host:port and, when the variable that names it
        cannot be read, what is wrong with it."""
        if self.no_proxy.bypasses(host, port):
            return None, None
        proxy = self.https if scheme == "https" else self.http
        variable = f"{scheme}_proxy"
        problem = next((f"{name}: {message}" for name, message in self.problems if name.lower() == variable), None)
        return proxy, problem


def _variable(environ: Mapping[str, str], lower: str) -> tuple[str, str | None]:
    """The variable's name and value; lowercase wins over uppercase when both are set."""
    if lower in environ:  # even empty: an empty lowercase variable turns the proxy off
        return lower, environ[lower]
    upper = lower.upper()
    return upper, environ.get(upper)
