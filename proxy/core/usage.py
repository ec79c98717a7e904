"""Token counts as upstreams report them."""
from __future__ import annotations

from typing import Any, Mapping


def token_count(holder: Mapping[str, Any], name: str) -> int:
    """`holder[name]` when it is a sane token count, else 0. Past 2**53 a count is garbage, and
    sums of such would not fit the 64 bits JSON output allows."""
    value = holder.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**53 else 0
