"""Anthropic's text and thinking deltas read from their bytes, without decoding the event.

They are nearly all of a stream, and Anthropic writes them in one fixed shape:

    event: content_block_delta
    data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}

An event in exactly that shape (the `event:` line may be missing) is read with one match: its
index, its delta type and its text. A text without escapes is taken as its bytes (once they are
known to be UTF-8); one with escapes is decoded, so that anything JSON would refuse is still
refused. Any other event, however slightly different, is read whole by the translator: this only
saves the work, it never decides anything the whole read would not.
"""
from __future__ import annotations

import re

from proxy.core import jsonutil

# The index is a JSON integer that fits 64 bits. The text is a string literal on the one data line:
# either plain (no quote, backslash or control character: characters JSON writes as they are, so
# its bytes are already the encoding), or with escapes from its first backslash on, for the decoder
# to judge.
_SHAPE = re.compile(rb'(?:event: content_block_delta\n)?'
                    rb'data: \{"type":"content_block_delta","index":(0|[1-9][0-9]{0,17}),'
                    rb'"delta":\{"type":"(text_delta","text|thinking_delta","thinking)":'
                    rb'(?:("([^"\\\x00-\x1f]*)")|("[^"\\\x00-\x1f]*\\[^\n\r]*"))\}\}\n\n')
_KINDS = {b'text_delta","text': "text_delta", b'thinking_delta","thinking': "thinking_delta"}


def read_text_delta(raw: bytes) -> tuple[bytes, str, str, bytes] | None:
    """(block index as its digits, delta type, text, the text as the JSON string jsonutil.dumps
    writes) of a text_delta or thinking_delta event in Anthropic's own shape; None for any other."""
    match = _SHAPE.fullmatch(raw)
    if match is None:
        return None
    index, kind, plain, plain_text, escaped = match.groups()
    try:
        if plain is not None:  # only checked to be UTF-8
            return index, _KINDS[kind], plain_text.decode(), plain
        text = jsonutil.loads(escaped)
    except ValueError:  # not UTF-8, or not a JSON string: the whole read says what it is
        return None
    return index, _KINDS[kind], text, jsonutil.dumps(text)
