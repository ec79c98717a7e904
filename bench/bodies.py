"""Request bodies shaped like a coding agent's: the whole conversation re-sent on every turn.

Many turns of code-like text (indentation, brackets, string literals with escaped quotes,
Windows paths with backslashes, newlines), a little unicode (accents, CJK, symbols, emoji),
written as raw UTF-8 the way agents' HTTP clients send it. The same turns serve the three
passthrough paths: a chat body for OpenAI-format upstreams, a Messages body for Anthropic
upstreams and a Responses body (shaped like Codex CLI's) for Responses-format upstreams.
Deterministic: one seed, so every system and every run sends the same bytes.
"""
from __future__ import annotations

import random

import orjson

KIB = 1024
MIB = 1024 * KIB
SIZES = {"16KiB": 16 * KIB, "256KiB": 256 * KIB, "1MiB": MIB, "4MiB": 4 * MIB}

_CODE = ["def handle(self, request):", "return self.items[index]", "for key, value in config.items():",
         'raise ValueError(f"bad value: {value!r}")', 'path = "C:\\\\Users\\\\dev\\\\project\\\\main.py"',
         "if not response.ok: await response.release()", 'print("done", file=sys.stderr)',
         "const total = rows.reduce((sum, row) => sum + row.size, 0);", "}", "])", "# TODO: handle the résumé case",
         "assert parse('naïve') == {\"word\": \"naïve\"}", "logger.info('✓ %s → %s', source, target)",
         "// 日本語のコメント", "status = '🙂 ok' if passed else '✗ failed'", "x = [i * 2 for i in range(10)]"]
_PROSE = ["Here is the updated function.", "The test fails because the fixture closes the session early.",
          "Run the suite again with -x to stop at the first failure.", "I changed the parser to keep the bytes."]


def turns(size: int, seed: int = 19) -> list[dict]:
    """Alternating user and assistant turns whose text adds up to about `size` bytes."""
    rnd = random.Random(seed)
    result, total = [], 0
    while total < size:
        lines = [rnd.choice(_PROSE), "```python"]
        for _ in range(rnd.randint(10, 60)):
            lines.append("    " * rnd.randint(0, 3) + rnd.choice(_CODE))
        lines.append("```")
        text = "\n".join(lines)
        result.append({"role": "user" if len(result) % 2 == 0 else "assistant", "content": text})
        total += len(text.encode()) + 40
    if result[-1]["role"] != "user":
        result.append({"role": "user", "content": "Continue."})
    return result


def chat_body(model: str, size: int) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "system", "content": "You are a coding agent."},
                                                      *turns(size)], "max_tokens": 64})


def messages_body(model: str, size: int) -> bytes:
    return orjson.dumps({"model": model, "system": "You are a coding agent.", "messages": turns(size),
                         "max_tokens": 64})


def responses_body(model: str, size: int) -> bytes:
    """Codex CLI's shape: `instructions`, every turn a `message` item of input_text (user) or
    output_text (assistant) parts, and `store: false` (the proxy keeps nothing for it)."""
    items = [{"type": "message", "role": turn["role"],
              "content": [{"type": "input_text" if turn["role"] == "user" else "output_text", "text": turn["content"]}]}
             for turn in turns(size)]
    return orjson.dumps({"model": model, "instructions": "You are a coding agent.", "input": items,
                         "max_output_tokens": 64, "store": False})
