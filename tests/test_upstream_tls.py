"""HTTPS upstreams through the proxy's own client (proxy/upstream/pool.py): a certificate the system
trusts works for answers and streams; one it does not trust
is a 502 naming the TLS failure, never a 500 or a hang."""
import pytest

from proxy.upstream import pool as upstream_client
from tests.conftest import client_for
from tests.upstreams.scripted_upstream import Reply, ScriptedUpstream, self_signed_context

COMPLETION = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "over tls"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}


def _chunk(delta, finish=None):
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _reply(seen):
    if b'"stream":true' in seen.body.replace(b" ", b""):
        return Reply(sse=[_chunk({"role": "assistant", "content": ""}), _chunk({"content": "streamed "}),
                          _chunk({"content": "over tls"}), _chunk({}, "stop"), "data: [DONE]\n\n"])
    return Reply(body=COMPLETION)


@pytest.fixture
async def tls_upstream(tmp_path):
    upstream = await ScriptedUpstream().on("POST", "/v1/chat/completions", _reply).start(
        ssl_context=self_signed_context(tmp_path))
    yield upstream
    await upstream.close()


def _config(upstream):
    return f"""
    upstreams:
      secure: {{base_url: "https://127.0.0.1:{upstream.port}/v1", api_key: sk-tls-test-0001,
               timeout: {{connect: 2, first_byte: 2, total: 5}}}}
    """


async def test_untrusted_certificate_is_a_502_naming_tls(tls_upstream, proxy_factory):
    proxy = await proxy_factory(_config(tls_upstream))
    client = client_for(proxy)
    with pytest.raises(Exception) as caught:
        await client.chat.completions.create(model="secure/m", messages=[{"role": "user", "content": "x"}])
    error = caught.value
    assert getattr(error, "status_code", None) == 502
    assert "TLS handshake failed" in str(error) and "certificate verify failed" in str(error)
    assert tls_upstream.seen == []  # nothing was sent over an unverified connection


async def test_trusted_certificate_serves_answers_and_streams(tls_upstream, proxy_factory,
                                                          tmp_path, monkeypatch):
    # The way a user trusts a private CA: SSL_CERT_FILE, read when the client's TLS context is made.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
    monkeypatch.setattr(upstream_client, "_default_tls", None)
    proxy = await proxy_factory(_config(tls_upstream))
    client = client_for(proxy)
    answer = await client.chat.completions.create(model="secure/m", messages=[{"role": "user", "content": "x"}])
    assert answer.choices[0].message.content == "over tls"
    stream = await client.chat.completions.create(model="secure/m", stream=True,
                                                  messages=[{"role": "user", "content": "x"}])
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == "streamed over tls"
    again = await client.chat.completions.create(model="secure/m", messages=[{"role": "user", "content": "x"}])
    assert again.choices[0].message.content == "over tls"
    # the three requests above; the background health check's GET /models now also trusts SSL_CERT_FILE
    assert len([seen for seen in tls_upstream.seen if seen.method == "POST"]) == 3
    assert all(seen.headers.get("Authorization") == "Bearer sk-tls-test-0001" for seen in tls_upstream.seen)
