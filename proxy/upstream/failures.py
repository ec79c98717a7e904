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

from proxy.config.model import UpstreamConfig
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
    CLIENT_CERTIFICATE = "client_certificate"  # TLS: the upstream wants a client certificate, or not ours
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
                  "proxy": self.proxy, "proxy_source": self.proxy_source,
                  "certificate_advice": _certificate_advice(self.certificate).format(host=host)}
        return problem, summary.format(**values), advice.format(**values)


def early_close_hint(upstream: UpstreamConfig) -> str | None:
    """What it likely means when an https upstream closes a fresh connection right after the TLS
    handshake: under TLS 1.3 a server refusing the client's certificate (or its absence) often
    just closes instead of saying so. None for a plain http upstream."""
    if not (upstream.base_url or "").startswith("https:"):
        return None
    if upstream.tls.client_cert:
        return "closed the connection right after the TLS handshake: it may have refused the client certificate"
    return "closed the connection right after the TLS handshake: it may require a client certificate"


def classify(exc: BaseException, early_close: str | None = None) -> Failure:
    """The one mapping from a client, asyncio or ssl exception to its kind. `early_close`: the
    upstream's early_close_hint, for a connection closed before any byte of the answer."""
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
        return _dropped(exc, early_close)
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
    refusal = _client_certificate_refusal(error)
    if refusal is not None:
        return Failure(Kind.CLIENT_CERTIFICATE, refusal, exc)
    return Failure(Kind.TLS, reason_of(error), exc)


# The alerts a server sends about the client's certificate (OpenSSL's reason codes).
_CLIENT_CERTIFICATE_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "requires a client certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "refused the client certificate (bad certificate)",
    "TLSV1_ALERT_UNKNOWN_CA": "does not trust the issuer of the client certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "refused the client certificate as expired",
}


def _client_certificate_refusal(error: BaseException | None) -> str | None:
    if not isinstance(error, ssl.SSLError):
        return None
    return _CLIENT_CERTIFICATE_ALERTS.get((getattr(error, "reason", None) or "").upper())


def _dropped(exc: http1.ConnectionDropped, early_close: str | None) -> Failure:
    refusal = _client_certificate_refusal(exc.cause)
    if refusal is not None:  # TLS 1.3: the server's verdict on our certificate arrives with the first read
        return Failure(Kind.CLIENT_CERTIFICATE, refusal, exc)
    if early_close is not None and exc.early:
        return Failure(Kind.CLIENT_CERTIFICATE, early_close, exc)
    reason = type(exc.cause).__name__ if exc.cause is not None else "closed by the upstream"
    return Failure(Kind.DROPPED, reason, exc, got_head=exc.got_head)


def reason_of(exc: BaseException) -> str:
    inner = getattr(exc, "os_error", None) or exc
    return getattr(inner, "strerror", None) or str(inner) or type(inner).__name__


def _certificate_advice(certificate: str) -> str:
    """What to do about the upstream's certificate, by what the verification found."""
    found = certificate.lower()
    if "expired" in found:
        return ("the certificate of {host} has expired: it must be renewed on the server "
                "(or this machine's clock is wrong)")
    if "not yet valid" in found:
        return "the certificate of {host} is not valid yet: check this machine's clock"
    if "mismatch" in found:
        return ("the certificate does not name {host}: fix the host in the base URL, or set tls.server_name "
                "to the name the certificate holds")
    return ("a self-signed or private-CA certificate must be trusted: set tls.ca_file on the upstream to its "
            "CA bundle, or add the CA to the system store or point SSL_CERT_FILE at a bundle that holds it; "
            "also check that the host name in the base URL matches the certificate")


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
    Kind.CERTIFICATE: (TLS, "TLS failure: the certificate of {host} is {certificate}", "{certificate_advice}"),
    Kind.CLIENT_CERTIFICATE: (TLS, "TLS failure: {host}:{port} {reason}",
                              "set tls.client_cert and tls.client_key on the upstream (a certificate from the "
                              "CA the server trusts for clients); when they are set, check that the server "
                              "trusts their issuer and that the certificate has not expired"),
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
