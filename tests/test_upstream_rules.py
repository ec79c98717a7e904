"""Base URL normalization, the http/https policy and well-known hosts (PRODUCT.md)."""
import pytest

from proxy.config.model import ConfigError, parse_config
from proxy.config.urls import BaseURLError, detect_format, detect_kind, normalize_base_url


@pytest.mark.parametrize("raw, wire_format, expected", [
    ("https://api.groq.com/openai", "openai", "https://api.groq.com/openai/v1"),
    ("https://api.groq.com/openai/v1", "openai", "https://api.groq.com/openai/v1"),
    ("https://api.openai.com/v1/chat/completions", "openai", "https://api.openai.com/v1"),
    ("https://api.openai.com", "openai", "https://api.openai.com/v1"),
    ("https://openrouter.ai/api/v1/", "openai", "https://openrouter.ai/api/v1"),
    ("https://openrouter.ai", "openai", "https://openrouter.ai/api/v1"),
    ("https://api.anthropic.com", "anthropic", "https://api.anthropic.com/v1"),
    ("https://api.anthropic.com/v1/messages", "anthropic", "https://api.anthropic.com/v1"),
    ("https://generativelanguage.googleapis.com/v1beta/openai", "openai",
     "https://generativelanguage.googleapis.com/v1beta/openai"),
    ("https://generativelanguage.googleapis.com", "openai", "https://generativelanguage.googleapis.com/v1beta/openai"),
    ("https://open.bigmodel.cn/api/paas/v4", "openai", "https://open.bigmodel.cn/api/paas/v4"),
    ("https://api.deepseek.com", "openai", "https://api.deepseek.com"),
    ("https://api.perplexity.ai", "openai", "https://api.perplexity.ai"),
    ("https://api.fireworks.ai/inference", "openai", "https://api.fireworks.ai/inference/v1"),
    ("http://localhost:11434", "openai", "http://localhost:11434/v1"),
    ("http://localhost:1234/v1", "openai", "http://localhost:1234/v1"),
    ("https://gateway.corp.example/llm", "openai", "https://gateway.corp.example/llm/v1"),
    ("http://10.0.0.5:8000", "openai", "http://10.0.0.5:8000/v1"),
    ("http://172.20.1.1", "openai", "http://172.20.1.1/v1"),
    ("http://192.168.1.10:4000", "openai", "http://192.168.1.10:4000/v1"),
    ("http://[fd12::1]:8000", "openai", "http://[fd12::1]:8000/v1"),
    ("http://vllm.default.svc.cluster.local:8000", "openai", "http://vllm.default.svc.cluster.local:8000/v1"),
])
def test_normalization(raw, wire_format, expected):
    assert normalize_base_url(raw, wire_format) == expected


def test_append_v1_false_keeps_the_path():
    assert normalize_base_url("https://gateway.corp.example/llm", "openai", append_v1=False) == \
        "https://gateway.corp.example/llm"


@pytest.mark.parametrize("raw, words", [
    ("http://api.example.com/v1", "only allowed for loopback"),
    ("http://8.8.8.8/v1", "only allowed for loopback"),
    ("http://172.32.0.1/v1", "only allowed for loopback"),
    ("https://api.openai.com/v1/responses", "Responses API"),
    ("https://user:pw@api.example.com/v1", "credentials"),
    ("api.example.com/v1", r"not an http\(s\) URL"),
])
def test_refusals(raw, words):
    with pytest.raises(BaseURLError, match=words):
        normalize_base_url(raw, "openai")


@pytest.mark.parametrize("url, kind, wire_format", [
    ("https://openrouter.ai/api/v1", "openrouter", "openai"),
    ("https://api.groq.com/openai/v1", "groq", "openai"),
    ("https://api.together.xyz/v1", "together", "openai"),
    ("https://api.mistral.ai/v1", "mistral", "openai"),
    ("https://api.perplexity.ai", "perplexity", "openai"),
    ("https://api.fireworks.ai/inference/v1", "fireworks", "openai"),
    ("https://api.deepseek.com", "deepseek", "openai"),
    ("https://api.anthropic.com", "anthropic", "anthropic"),
    ("https://generativelanguage.googleapis.com/v1beta/openai", "gemini", "openai"),
    ("http://localhost:1234", "lmstudio", "openai"),
    ("http://localhost:4000", "litellm", "openai"),
    ("http://localhost:11434", "ollama", "openai"),
    ("https://api.z.ai/api/paas/v4", "zai", "openai"),
    ("https://api.moonshot.ai/v1", "moonshot", "openai"),
    ("https://llm.corp.example/v1", "generic", "openai"),
])
def test_well_known_hosts_set_kind_and_format(url, kind, wire_format):
    assert detect_format(url) == wire_format
    assert detect_kind(url, wire_format) == kind


def test_kind_and_format_set_by_hand_win():
    config = parse_config("""
upstreams:
  local:
    base_url: http://localhost:8000
    kind: vllm
  claude_gateway:
    base_url: https://gateway.corp.example
    format: anthropic
""")
    assert config.upstreams["local"].kind == "vllm"
    assert config.upstreams["claude_gateway"].format == "anthropic"
    assert config.upstreams["claude_gateway"].kind == "anthropic"
    assert config.upstreams["claude_gateway"].base_url == "https://gateway.corp.example/v1"


def test_allow_http_opts_in_for_a_named_internal_host():
    with pytest.raises(ConfigError):
        parse_config("upstreams:\n  a: {base_url: 'http://vllm:8000'}\n")
    config = parse_config("upstreams:\n  a: {base_url: 'http://vllm:8000', allow_http: true}\n")
    assert config.upstreams["a"].base_url == "http://vllm:8000/v1"
