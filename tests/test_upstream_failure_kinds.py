"""One classification of client failures (proxy/upstream/failures.py), read by both the transport's
errors and `check`'s diagnosis: a real refused port, a name that cannot resolve and an untrusted
certificate each come out as the same kind on both sides."""
from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

from proxy.catalog.diagnose import classify_error, classify_exception
from proxy.config.model import parse_config
from proxy.upstream import failures, http1
from proxy.upstream import pool as upstream_client
from proxy.upstream.failures import Kind
from proxy.upstream.transport import map_client_error
from tests.helpers import free_port
from tests.upstreams.scripted_upstream import ScriptedUpstream, self_signed_context

pytestmark = pytest.mark.timeout(30)


def _certificate_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.verify_message = "self-signed certificate"
    return error


@pytest.mark.parametrize("exc, kind, problem", [
    (http1.ConnectTimeout(False), Kind.CONNECT_TIMEOUT, failures.TIMEOUT),
    (http1.ReadTimeout(False, True), Kind.READ_TIMEOUT, failures.TIMEOUT),
    (http1.ReadTimeout(True, False), Kind.DEADLINE, failures.TIMEOUT),
    (asyncio.TimeoutError(), Kind.DEADLINE, failures.TIMEOUT),
    (http1.ConnectFailed(_certificate_error()), Kind.CERTIFICATE, failures.TLS),
    (http1.ConnectFailed(ssl.SSLError(1, "wrong version number")), Kind.TLS, failures.TLS),
    (http1.ConnectFailed(socket.gaierror(-2, "Name or service not known")), Kind.DNS, failures.DNS),
    (http1.ConnectFailed(ConnectionRefusedError(111, "Connection refused")), Kind.REFUSED, failures.REFUSED),
    (http1.ConnectFailed(OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 1)")),
     Kind.REFUSED, failures.REFUSED),
    (http1.ConnectFailed(OSError(101, "Network is unreachable")), Kind.CONNECT, failures.CONNECT),
    (http1.ConnectionDropped(True, ConnectionResetError()), Kind.DROPPED, failures.BAD_RESPONSE),
    (http1.MalformedResponse("invalid chunk size"), Kind.MALFORMED, failures.BAD_RESPONSE),
    (RuntimeError("boom"), Kind.OTHER, failures.BAD_RESPONSE),
])
def test_each_client_failure_has_one_kind_for_the_transport_and_for_check(exc, kind, problem):
    upstream = parse_config("upstreams:\n  u: {base_url: 'https://api.example.com/v1'}\n").upstreams["u"]
    error = map_client_error(upstream, exc, phase="request")
    assert error.failure.kind is kind  # the transport's error carries the one classification
    said = classify_exception(exc, url="https://api.example.com/v1/models", upstream="u", timeout=5)
    assert said.problem == problem
    # check reads the chain's error and says the same as for the raw failure
    assert classify_error(error, url="https://api.example.com/v1/models", base_url="https://api.example.com/v1",
                          upstream="u", timeout=5) == said


async def _send_once(url: str) -> None:
    pool = upstream_client.Pool(url)
    try:
        response = await upstream_client.send(pool, "GET", pool.target("models"), {}, b"", connect_timeout=20,
                                              read_timeout=20, deadline=asyncio.get_running_loop().time() + 20)
        response.close()
    finally:
        pool.close()


@pytest.mark.parametrize("case", ["refused", "dns", "certificate"])
async def test_real_failures_are_recognised_once(case, tmp_path):
    upstream = None
    if case == "refused":
        url = f"http://127.0.0.1:{free_port()}/v1"
    elif case == "dns":
        url = "https://no-such-upstream.invalid/v1"
    else:
        upstream = await ScriptedUpstream().start(ssl_context=self_signed_context(tmp_path))
        url = upstream.url + "/v1"
    try:
        with pytest.raises(http1.ClientFailure) as caught:
            await _send_once(url)
    finally:
        if upstream is not None:
            await upstream.close()
    failure = failures.classify(caught.value)
    assert failure.kind is {"refused": Kind.REFUSED, "dns": Kind.DNS, "certificate": Kind.CERTIFICATE}[case]
    problem, summary, advice = failure.describe(url + "/models", 20, "upstreams.u.base_url")
    if case == "certificate":
        assert problem == failures.TLS and "self-signed" in summary and "SSL_CERT_FILE" in advice
    elif case == "refused":
        assert problem == failures.REFUSED and "nothing listens at 127.0.0.1:" in summary
    else:
        assert problem == failures.DNS and "no-such-upstream.invalid" in summary
