"""Which egress proxy an upstream takes, decided at load: NO_PROXY in the forms curl and requests
accept, the lowercase variable over the uppercase one, an upstream's own `proxy:` over the
environment, and a bad proxy URL refused without quoting its password."""
from __future__ import annotations

import pytest

from proxy.config.egress import parse_no_proxy
from proxy.config.model import ConfigError, parse_config

PASSWORD = "pw-canary-0b7d51e3"


def _proxy_of(base_url: str, environ: dict[str, str], extra: str = ""):
    config = parse_config(f"upstreams:\n  up: {{base_url: '{base_url}', allow_http: true {extra}}}\n",
                          environ=environ)
    return config.upstreams["up"].egress_proxy


@pytest.mark.parametrize("no_proxy, host, port, bypassed", [
    ("example.com", "example.com", 443, True),
    ("example.com", "api.example.com", 443, True),
    ("example.com", "notexample.com", 443, False),
    (".example.com", "api.example.com", 443, True),
    ("*.example.com", "api.example.com", 443, True),
    ("*", "anything.at.all", 443, True),
    ("10.0.0.0/8", "10.1.2.3", 443, True),
    ("10.0.0.0/8", "11.1.2.3", 443, False),
    ("192.168.1.5", "192.168.1.5", 80, True),
    ("::1", "[::1]", 443, True),
    ("fd00::/8", "fd00::1", 443, True),
    ("example.com:8443", "example.com", 8443, True),
    ("example.com:8443", "example.com", 443, False),
    ("localhost, .internal ,10.0.0.1", "svc.internal", 443, True),
    ("", "example.com", 443, False),
])
def test_no_proxy_forms(no_proxy, host, port, bypassed):
    assert parse_no_proxy(no_proxy).bypasses(host, port) is bypassed


def test_the_scheme_picks_the_variable_and_a_url_without_scheme_is_http():
    environ = {"HTTPS_PROXY": "secure-egress:3128", "HTTP_PROXY": "http://plain-egress:8080"}
    assert _proxy_of("https://api.openai.com/v1", environ).shown == "http://secure-egress:3128"
    assert _proxy_of("http://10.0.0.7:8000/v1", environ).shown == "http://plain-egress:8080"


def test_the_lowercase_variable_wins_and_an_empty_one_turns_the_proxy_off():
    assert _proxy_of("https://api.openai.com/v1", {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}
                     ).shown == "http://lower:2"
    assert _proxy_of("https://api.openai.com/v1", {"HTTPS_PROXY": "http://upper:1", "https_proxy": ""}) is None


def test_no_proxy_applies_to_the_environment_only_never_to_an_upstreams_own_proxy():
    environ = {"HTTPS_PROXY": "http://env-egress:3128", "NO_PROXY": "openai.com"}
    assert _proxy_of("https://api.openai.com/v1", environ) is None
    own = _proxy_of("https://api.openai.com/v1", environ, ", proxy: 'http://own-egress:3128'")
    assert own.shown == "http://own-egress:3128" and own.source == "upstreams.up.proxy"
    assert _proxy_of("https://api.anthropic.com/v1", environ, ", proxy: none") is None


def test_credentials_become_secrets_and_leave_the_setting():
    config = parse_config(f"upstreams:\n  up: {{base_url: 'https://api.openai.com/v1', "
                          f"proxy: 'http://alice:{PASSWORD}@egress:3128'}}\n", environ={})
    upstream = config.upstreams["up"]
    assert upstream.egress_proxy.password.reveal() == PASSWORD
    assert PASSWORD not in repr(upstream) and "alice" not in repr(upstream)
    assert upstream.proxy.url == "http://egress:3128"


@pytest.mark.parametrize("url, words", [
    (f"socks5://alice:{PASSWORD}@egress:1080", "only http:// proxies"),
    (f"http://alice:{PASSWORD}@egress:3128/some/path", "without a path"),
    (f"http://alice:{PASSWORD}@egress:99999", "invalid port"),
])
def test_a_bad_proxy_url_is_a_config_problem_that_never_quotes_it(url, words):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"upstreams:\n  up: {{base_url: 'https://api.openai.com/v1', proxy: '{url}'}}\n", environ={})
    assert words in str(caught.value) and "upstreams.up.proxy (line 2)" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_bad_environment_proxy_is_reported_for_the_upstreams_that_would_use_it():
    with pytest.raises(ConfigError) as caught:
        parse_config("upstreams:\n  up: {base_url: 'https://api.openai.com/v1'}\n",
                     environ={"HTTPS_PROXY": f"socks5://alice:{PASSWORD}@egress:1080"})
    assert "HTTPS_PROXY: only http:// proxies" in str(caught.value) and PASSWORD not in str(caught.value)
    parse_config("upstreams:\n  up: {base_url: 'https://api.openai.com/v1', proxy: none}\n",
                 environ={"HTTPS_PROXY": "socks5://egress:1080"})
