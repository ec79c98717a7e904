"""An offline estimate of a Messages request's input tokens.

Used where no tokenizer can answer: `POST /v1/messages/count_tokens` for a model
served by a non-Anthropic upstream, and the `input_tokens` of `message_start`,
which must be sent before the upstream reports its real usage.

No tokenizer is downloaded or run. Text is priced at 3.5 characters a token for
ASCII (English prose runs ~4, code and JSON ~3) and one token a character for
anything else (CJK runs ~1-1.5, accented Latin less): expect the estimate to be
within about ±25% of a real tokenizer for English prose and code, worse for
mixed scripts, and different models' tokenizers differ from each other by that
much anyway. Images and documents are not decoded, so each costs a fixed upper
bound. It never raises: a malformed part is skipped, since validation is the
translator's job and an estimate is asked for before or without it.
"""
from __future__ import annotations

from typing import Any

from proxy.core import jsonutil

ASCII_CHARS_PER_TOKEN = 3.5
# Role markers and turn separators every chat template adds around a message.
MESSAGE_OVERHEAD = 4
# The framing a provider puts around each function definition (name, "parameters" keys).
TOOL_OVERHEAD = 12
# Anthropic resizes images to at most ~1.15 megapixels, which costs ~1,600 tokens
# (width * height / 750); with the pixels unknown, every image is priced at that bound.
IMAGE_TOKENS = 1_600
# A PDF page costs 1,500-3,000 tokens; a document of unknown length is priced as one page.
DOCUMENT_TOKENS = 1_600
# The chat template's own framing of a request (BOS, the assistant turn it opens).
REQUEST_OVERHEAD = 3


def estimate_input_tokens(body: Any) -> int:
    """Tokens the request's system, messages and tools will take; at least 1."""
    if not isinstance(body, dict):
        return 1
    total = REQUEST_OVERHEAD + _content_tokens(body.get("system"))
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, dict):
            total += MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict):
            total += TOOL_OVERHEAD + _tool_tokens(tool)
    return max(1, total)


def text_tokens(text: str) -> int:
    """Tokens in a piece of text by the rule in the module docstring (0 for "")."""
    if not text:
        return 0
    if text.isascii():
        return _round_up(len(text) / ASCII_CHARS_PER_TOKEN)
    ascii_count = len(text.encode("ascii", "ignore"))
    return _round_up(ascii_count / ASCII_CHARS_PER_TOKEN + (len(text) - ascii_count))


def json_tokens(value: Any) -> int:
    """Tokens of a value as the compact JSON a template would render it in."""
    if value is None:
        return 0
    try:
        return text_tokens(jsonutil.dumps_str(value))
    except ValueError:
        return 0


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):
        return sum(_block_tokens(block) for block in content if isinstance(block, dict))
    return 0


def _block_tokens(block: dict[str, Any]) -> int:
    kind = block.get("type")
    if kind == "text":
        return _str_tokens(block.get("text"))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        return _document_tokens(block)
    if kind == "tool_use" or kind == "server_tool_use":
        return _str_tokens(block.get("name")) + json_tokens(block.get("input"))
    if kind == "tool_result":
        return _content_tokens(block.get("content"))
    if kind == "thinking":
        return _str_tokens(block.get("thinking"))
    if kind == "redacted_thinking":
        return 0  # encrypted; what it stands for cannot be estimated from its size
    if kind == "search_result":
        return _str_tokens(block.get("title")) + _content_tokens(block.get("content"))
    return json_tokens(block)  # other blocks (server tool results): their JSON is what is said


def _document_tokens(block: dict[str, Any]) -> int:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "text":
        return _str_tokens(source.get("data"))
    if isinstance(source, dict) and source.get("type") == "content":
        return _content_tokens(source.get("content"))
    return DOCUMENT_TOKENS


def _tool_tokens(tool: dict[str, Any]) -> int:
    return (_str_tokens(tool.get("name")) + _str_tokens(tool.get("description"))
            + json_tokens(tool.get("input_schema")))


def _str_tokens(value: Any) -> int:
    return text_tokens(value) if isinstance(value, str) else 0


def _round_up(value: float) -> int:
    whole = int(value)
    return whole + 1 if value > whole else whole
