"""Every way a request to an upstream can fail below HTTP, recognised in one place.

proxy/upstream/pool.py and http1.py raise their own small set of exceptions (besides ssl and
OSError); `classify` turns any of them into a Failure of one Kind, and WORDS says what each
kind means to a person. Two readers build on it: the transport maps a kind into the error tree
(transport.map_client_error), and `byok-proxy check` and the health check describe it
(proxy/catalog/diagnose.py). A refused port, a name that does not resolve or an untrusted
certificate is therefore told apart here and nowhere else.
"""
from __future__ import annotations

import enum
import errno
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from proxy.upstream import egress, http1

# The problem classes of failures below HTTP, in the words `check` prints
# (proxy/catalog/diagnose.py adds the classes of HTTP answers).
TIMEOUT = "timeout"
TLS = "tls_failure"
DNS = "dns_failure"
REFUSED = "connection_refused"
CONNECT = "connect_failure"
PROXY = "proxy_failure"
BAD_RESPONSE = "bad_response"


class Kind(enum.Enum):
    CONNECT_TIMEOUT = "connect_timeout"  # no TCP/TLS connection within the connect timeout
    READ_TIMEOUT = "read_timeout"        # nothing arrived within the read timeout
    DEADLINE = "deadline"                # the attempt's deadline came first
    CERTIFICATE = "certificate"          # TLS: the upstream's certificate is not trusted
    TLS = "tls"                          # TLS: any other handshake failure
    DNS = "dns"                          # the host name does not resolve
    REFUSED = "refused"                  # nothing listens at host:port
    CONNECT = "connect"                  # the connection could not be made for another reason
    PROXY = "proxy"                      # the egress proxy cannot be reached, or refused or broke the tunnel
    DROPPED = "dropped"                  # closed or reset before the answer was complete
    MALFORMED = "malformed"              # the bytes are not an HTTP/1.x answer
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Failure:
    kind: Kind
    reason: str                        # the OS's or ssl's own words, or what was seen
    error: BaseException               # what was raised
    got_head: bool = False             # the answer's head had arrived (read timeouts, drops)
    certificate: str = "not trusted"   # for CERTIFICATE: what is wrong with it ("self-signed certificate")
    proxy: str = ""                    # for PROXY: the proxy (scheme, host, port; never credentials)
    proxy_source: str = ""             # for PROXY: where it was set (upstreams.NAME.proxy, HTTPS_PROXY)

    def describe(self, url: str, timeout: float, field: str) -> tuple[str, str, str]:
        """(problem class, summary, advice) for a request to `url` that had `timeout` seconds;
        `field` names the setting to fix (`upstreams.NAME.base_url`)."""
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port or (443 if parts.scheme == "https" else 80)
        problem, summary, advice = WORDS[self.kind]
        values = {"host": host, "port": port, "timeout": timeout, "field": field, "reason": self.reason,
                  "certificate": self.certificate, "error": f"{type(self.error).__name__}: {self.error}",
                  "proxy": self.proxy, "proxy_source": self.proxy_source}
        return problem, summary.format(**values), advice.format(**values)


def classify(exc: BaseException) -> Failure:
    """The one mapping from a client, asyncio or ssl exception to its kind."""
    if isinstance(exc, http1.ConnectTimeout):
        return Failure(Kind.DEADLINE if exc.by_deadline else Kind.CONNECT_TIMEOUT, "connect timed out", exc)
    if isinstance(exc, http1.ReadTimeout):
        return Failure(Kind.DEADLINE if exc.by_deadline else Kind.READ_TIMEOUT, "read timed out", exc,
                       got_head=exc.got_head)
    if isinstance(exc, TimeoutError):  # asyncio's timeouts; an OSError, so before that
        return Failure(Kind.DEADLINE, "timed out", exc)
    if isinstance(exc, egress.ProxyFailed):
        return Failure(Kind.PROXY, exc.reason, exc, proxy=exc.proxy, proxy_source=exc.source)
    if isinstance(exc, http1.ConnectFailed):
        return _connect_failure(exc, exc.os_error)
    if isinstance(exc, ssl.SSLError):
        return _tls_failure(exc, exc)
    if isinstance(exc, http1.ConnectionDropped):
        reason = type(exc.cause).__name__ if exc.cause is not None else "closed by the upstream"
        return Failure(Kind.DROPPED, reason, exc, got_head=exc.got_head)
    if isinstance(exc, OSError):  # ConnectionResetError and friends, raised while writing
        return Failure(Kind.DROPPED, type(exc).__name__, exc, got_head=getattr(exc, "got_head", False))
    if isinstance(exc, http1.MalformedResponse):
        return Failure(Kind.MALFORMED, str(exc), exc)
    return Failure(Kind.OTHER, reason_of(exc), exc)


def _connect_failure(exc: BaseException, os_error: OSError) -> Failure:
    if isinstance(os_error, ssl.SSLError):
        return _tls_failure(exc, os_error)
    if isinstance(os_error, socket.gaierror):
        return Failure(Kind.DNS, reason_of(os_error), exc)
    if isinstance(os_error, ConnectionRefusedError) or getattr(os_error, "errno", None) == errno.ECONNREFUSED \
            or "connect call failed" in str(os_error).lower():  # asyncio's words when every address refused
        return Failure(Kind.REFUSED, reason_of(os_error), exc)
    return Failure(Kind.CONNECT, reason_of(os_error), exc)


def _tls_failure(exc: BaseException, error: ssl.SSLError) -> Failure:
    if isinstance(error, ssl.SSLCertVerificationError):
        return Failure(Kind.CERTIFICATE, reason_of(error), exc, certificate=error.verify_message or "not trusted")
    return Failure(Kind.TLS, reason_of(error), exc)


def reason_of(exc: BaseException) -> str:
    inner = getattr(exc, "os_error", None) or exc
    return getattr(inner, "strerror", None) or str(inner) or type(inner).__name__


_TIMEOUT_WORDS = (TIMEOUT, "no answer from {host}:{port} within {timeout:g} s",
                  "check that the server is up and not overloaded; on a slow network or a cold local "
                  "model raise health.timeout (catalog) or the upstream's timeout.first_byte (probe)")
_BROKEN_WORDS = (BAD_RESPONSE, "{host}:{port} broke off the exchange: {error}",
                 "check that the base URL points at the API itself and not at something in front of it")

# Each kind for a person: (problem class, summary, advice), formatted by Failure.describe.
WORDS: dict[Kind, tuple[str, str, str]] = {
    Kind.CONNECT_TIMEOUT: _TIMEOUT_WORDS,
    Kind.READ_TIMEOUT: _TIMEOUT_WORDS,
    Kind.DEADLINE: _TIMEOUT_WORDS,
    Kind.CERTIFICATE: (TLS, "TLS failure: the certificate of {host} is {certificate}",
                       "a self-signed or private-CA certificate must be trusted: add its CA to the system "
                       "store or point SSL_CERT_FILE at a bundle that holds it; also check that the host name "
                       "in the base URL matches the certificate"),
    Kind.TLS: (TLS, "TLS failure talking to {host}:{port}: {reason}",
               "check that {host}:{port} speaks HTTPS (use http:// for a plain local server) "
               "and that no proxy intercepts TLS"),
    Kind.DNS: (DNS, "DNS failure: the name {host} does not resolve",
               "check the spelling of the host in {field}, and this machine's DNS or network"),
    Kind.REFUSED: (REFUSED, "connection refused: nothing listens at {host}:{port}",
                   "start the server (a local one: ollama serve, LM Studio's server, vllm serve) "
                   "or fix the host/port in {field}"),
    Kind.CONNECT: (CONNECT, "cannot connect to {host}:{port}: {reason}",
                   "check the network path to {host} (firewall, VPN, HTTP proxy settings)"),
    Kind.PROXY: (PROXY, "the egress proxy {proxy} {reason}",
                 "check the proxy's address and credentials ({proxy_source}), or let {host} bypass it "
                 "(NO_PROXY for a proxy from the environment, proxy: none on the upstream)"),
    Kind.DROPPED: _BROKEN_WORDS,
    Kind.MALFORMED: _BROKEN_WORDS,
    Kind.OTHER: _BROKEN_WORDS,
}
