"""Per-upstream TLS (`tls: {ca_file, client_cert, client_key, server_name, verify}`), with
certificates made at test time: a private CA trusted by one upstream while another stays on the
system store; an upstream that requires a client certificate refuses a client without one and
serves one with it; `check` and the 502 name a wrong CA, an expired certificate and a missing
client certificate with advice; files are checked at load; a client key's contents appear nowhere."""
from __future__ import annotations

import asyncio
import json
import logging
import textwrap

import aiohttp
import pytest

from proxy.catalog import diagnose
from proxy.cli import check_upstreams
from proxy.config.model import ConfigError, parse_config
from tests.conftest import client_for
from tests.helpers import check_json
from tests.upstreams.certificates import PrivateCA, server_context
from tests.upstreams.scripted_upstream import MODEL_LIST, Reply, ScriptedUpstream, chat_completion

pytestmark = pytest.mark.timeout(60)

KEY = "sk-mtls-test-key-0001"
COMPLETION = chat_completion("over mtls")
ASK = {"model": "up/m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def company_ca(tmp_path):
    return PrivateCA(tmp_path, "company")


async def _upstream(context) -> ScriptedUpstream:
    return await ScriptedUpstream().on("POST", "/v1/chat/completions", Reply(body=COMPLETION)).on(
        "GET", "/v1/models", Reply(body=MODEL_LIST)).start(ssl_context=context)


@pytest.fixture
async def private_upstream(company_ca):
    """An https upstream whose certificate the company CA issued (no system store trusts it)."""
    upstream = await _upstream(server_context(company_ca.issue("gateway")))
    yield upstream
    await upstream.close()


@pytest.fixture
async def mtls_upstream(company_ca):
    """The same, and it requires a client certificate issued by the company CA."""
    upstream = await _upstream(server_context(company_ca.issue("mtls-gateway"), client_ca=company_ca))
    yield upstream
    await upstream.close()


def _upstream_yaml(name: str, upstream, tls: str = "") -> str:
    return (f"  {name}: {{base_url: '{upstream.url}/v1', api_key: {KEY}, models: [m], "
            f"timeout: {{connect: 5, first_byte: 5, total: 10}}{', tls: ' + tls if tls else ''}}}\n")


def _config(*upstreams: str) -> str:
    return "upstreams:\n" + "".join(upstreams) + "health: {enabled: false, timeout: 5}\n"


async def _post(proxy, model: str = "up/m") -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", json={**ASK, "model": model},
                                headers={"Authorization": "Bearer x"}) as response:
            return response.status, await response.text()


# ---- trust and identity ------------------------------------------------------------------------------

async def test_a_private_ca_is_trusted_by_its_upstream_only(private_upstream, company_ca, proxy_factory):
    proxy = await proxy_factory(_config(_upstream_yaml("up", private_upstream, f"{{ca_file: '{company_ca.path}'}}"),
                                        _upstream_yaml("other", private_upstream)))
    answer = await client_for(proxy).chat.completions.create(**ASK)
    assert answer.choices[0].message.content == "over mtls"
    status, body = await _post(proxy, "other/m")  # on the system store, which does not hold the company CA
    assert status == 502 and "certificate verify failed" in body


async def test_an_upstream_requiring_a_client_certificate_refuses_without_one_and_serves_with_it(
        mtls_upstream, company_ca, proxy_factory):
    client = company_ca.issue("proxy-client", client=True)
    with_cert = f"{{ca_file: '{company_ca.path}', client_cert: '{client.cert}', client_key: '{client.key}'}}"
    proxy = await proxy_factory(_config(_upstream_yaml("up", mtls_upstream, with_cert),
                                        _upstream_yaml("bare", mtls_upstream, f"{{ca_file: '{company_ca.path}'}}")))
    answer = await client_for(proxy).chat.completions.create(**ASK)
    assert answer.choices[0].message.content == "over mtls"
    status, body = await _post(proxy, "bare/m")
    assert status == 502
    message = json.loads(body)["error"]["message"]
    assert "client certificate" in message and "tls.client_cert" in message
    assert len([seen for seen in mtls_upstream.seen if seen.method == "POST"]) == 1


async def test_server_name_is_what_tls_sends_and_verifies(private_upstream, company_ca, proxy_factory):
    # the certificate names 127.0.0.1 and localhost; the base URL reaches it by address
    tls = f"{{ca_file: '{company_ca.path}', server_name: localhost}}"
    proxy = await proxy_factory(_config(_upstream_yaml("up", private_upstream, tls)))
    answer = await client_for(proxy).chat.completions.create(**ASK)
    assert answer.choices[0].message.content == "over mtls"


async def test_verify_false_is_allowed_for_loopback_with_a_warning(private_upstream, proxy_factory, caplog):
    caplog.set_level(logging.WARNING, logger="byok.config")
    proxy = await proxy_factory(_config(_upstream_yaml("up", private_upstream, "{verify: false}")))
    answer = await client_for(proxy).chat.completions.create(**ASK)
    assert answer.choices[0].message.content == "over mtls"
    assert "upstreams.up.tls.verify is false" in caplog.text


# ---- check classifies ---------------------------------------------------------------------------------

async def _check_problem(config_text: str) -> diagnose.Diagnosis:
    [report] = await check_upstreams(parse_config(config_text), ["up"])
    problems = [diagnosis for _, diagnosis in report.problems()]
    assert problems, "expected a failure"
    return problems[0]


async def test_check_names_a_wrong_ca_with_advice(private_upstream, tmp_path):
    other_ca = PrivateCA(tmp_path, "other")
    problem = await _check_problem(_config(_upstream_yaml("up", private_upstream, f"{{ca_file: '{other_ca.path}'}}")))
    assert problem.problem == diagnose.TLS and "unable to get local issuer certificate" in problem.summary
    assert "tls.ca_file" in problem.advice


async def test_check_names_an_expired_certificate_with_advice(company_ca):
    upstream = await _upstream(server_context(company_ca.issue("stale-gateway", expired=True)))
    try:
        problem = await _check_problem(_config(_upstream_yaml("up", upstream, f"{{ca_file: '{company_ca.path}'}}")))
    finally:
        await upstream.close()
    assert problem.problem == diagnose.TLS and "expired" in problem.summary
    assert "renewed" in problem.advice


async def test_check_says_a_client_certificate_is_wanted(mtls_upstream, company_ca):
    problem = await _check_problem(_config(_upstream_yaml("up", mtls_upstream, f"{{ca_file: '{company_ca.path}'}}")))
    assert problem.problem == diagnose.TLS and "client certificate" in problem.summary
    assert "tls.client_cert and tls.client_key" in problem.advice


async def test_check_passes_with_the_client_certificate(mtls_upstream, company_ca):
    client = company_ca.issue("check-client", client=True)
    tls = f"{{ca_file: '{company_ca.path}', client_cert: '{client.cert}', client_key: '{client.key}'}}"
    [report] = await check_upstreams(parse_config(_config(_upstream_yaml("up", mtls_upstream, tls))), ["up"])
    assert report.catalog_error is None


# ---- checked at load ----------------------------------------------------------------------------------

def _load_problem(tls_yaml: str, base_url: str = "https://gateway.example/v1") -> str:
    text = f"upstreams:\n  up:\n    base_url: {base_url}\n    tls:\n" + textwrap.indent(tls_yaml, "      ") + "\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return str(caught.value)


def test_a_missing_ca_file_is_a_config_error_naming_path_and_line(tmp_path):
    message = _load_problem(f"ca_file: {tmp_path}/nowhere.pem")
    assert f"upstreams.up.tls.ca_file (line 5): cannot read {tmp_path}/nowhere.pem: no such file" in message


def test_a_file_without_a_certificate_is_a_config_error(tmp_path):
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    assert f"{tmp_path}/empty.pem holds no PEM certificate" in _load_problem(f"ca_file: {tmp_path}/empty.pem")


def test_a_key_that_does_not_match_its_certificate_is_a_config_error(company_ca):
    one, other = company_ca.issue("one", client=True), company_ca.issue("other", client=True)
    message = _load_problem(f"client_cert: {one.cert}\nclient_key: {other.key}")
    assert f"upstreams.up.tls.client_key (line 6): the key in {other.key} does not belong to the certificate " \
           f"in {one.cert}" in message
    assert other.key_body() not in message and one.key_body() not in message


def test_a_missing_client_key_file_names_it(company_ca, tmp_path):
    one = company_ca.issue("one", client=True)
    message = _load_problem(f"client_cert: {one.cert}\nclient_key: {tmp_path}/gone-key.pem")
    assert f"upstreams.up.tls.client_key (line 6): cannot read {tmp_path}/gone-key.pem" in message


def test_verify_false_is_refused_for_a_public_host():
    message = _load_problem("verify: false")
    assert "upstreams.up.tls.verify (line 5): verify: false is only allowed for loopback and private" in message


# ---- the key never shows --------------------------------------------------------------------------------

async def test_the_client_keys_contents_appear_in_no_log_error_endpoint_or_check_output(
        mtls_upstream, company_ca, proxy_factory, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    client = company_ca.issue("leak-client", client=True)
    stranger = PrivateCA(tmp_path, "stranger").issue("stranger-client", client=True)  # a CA the server does not trust
    good = f"{{ca_file: '{company_ca.path}', client_cert: '{client.cert}', client_key: '{client.key}'}}"
    refused = f"{{ca_file: '{company_ca.path}', client_cert: '{stranger.cert}', client_key: '{stranger.key}'}}"
    config = _config(_upstream_yaml("up", mtls_upstream, good), _upstream_yaml("bad", mtls_upstream, refused)
                     ).replace("enabled: false", "interval: 0.2")
    proxy = await proxy_factory(config)
    seen = [await _post(proxy), await _post(proxy, "bad/m")]
    assert seen[0][0] == 200 and seen[1][0] == 502
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # until the health check has tried both
            async with session.get(f"{proxy.base_url}/upstreams") as response:
                upstreams = await response.text()
            if "unknown" not in upstreams:
                break
            await asyncio.sleep(0.1)
    report, printed = await check_json(config, tmp_path)
    assert report["up"]["catalog"]["ok"] and report["bad"]["catalog"]["error"]["class"] == "tls_failure"
    texts = [str(seen), upstreams, printed, caplog.text]
    for key in (client.key_body(), stranger.key_body()):
        for text in texts:
            assert key not in text and key[:40] not in text
