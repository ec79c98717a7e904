"""The status page at GET /, rendered on the server so it reads without a script.

`render_status_page` fills the `<!--status:NAME-->` slots of static/status.html from
the body of GET /v1/upstreams (the health snapshot) and the config's model aliases.
The page's script only refreshes the table afterwards. Every string from the snapshot
or the config goes through html.escape; the snapshot's errors are already redacted and
nothing here reads a key.
"""
from __future__ import annotations

import html
import re
from typing import Any, Mapping

from proxy.config.model import Config

# The same colours as the page's CSS and script; rgb() is what a browser reports for them.
COLOURS = {"ok": "rgb(31, 157, 85)", "degraded": "rgb(224, 168, 0)",
           "unreachable": "rgb(214, 69, 69)", "unknown": "rgb(154, 160, 166)"}
_SLOT = re.compile(r"<!--status:(\w+)-->")
KEY_NEEDED = "upstream health needs this proxy's API key (Authorization: Bearer <key>)"


def fallback_snapshot(config: Config) -> dict[str, Any]:
    """What GET /v1/upstreams reports when there is no health monitor: every upstream unknown."""
    return {"data": [{"name": name, "status": "unknown", "latency_ms": None, "last_error": None,
                      "checked_at": None, "circuit": "closed", "inflight": 0, "queued": 0,
                      "models": len(upstream.models)}
                     for name, upstream in config.upstreams.items()]}


def render_status_page(template: str, snapshot: Mapping[str, Any] | None, config: Config) -> str:
    """The page with its slots filled. `snapshot` None: this request may not see upstream
    health (the proxy wants its key), so the table stays empty and the summary says why."""
    upstreams = list(snapshot.get("data", ())) if snapshot is not None else []
    parts = {"summary": _e(summarize(upstreams) if snapshot is not None else KEY_NEEDED),
             "rows": "\n".join(row(upstream) for upstream in upstreams),
             "aliases": aliases(config) if snapshot is not None else ""}
    return _SLOT.sub(lambda match: parts.get(match.group(1), ""), template)


def summarize(upstreams: list[Mapping[str, Any]]) -> str:
    """'3 upstreams: 1 ok, 1 degraded, 1 unreachable', as the page's script writes it."""
    counts: dict[str, int] = {}
    for upstream in upstreams:
        counts[state_of(upstream)] = counts.get(state_of(upstream), 0) + 1
    found = [f"{counts[state]} {state}" for state in COLOURS if counts.get(state)]
    plural = "" if len(upstreams) == 1 else "s"
    return f"{len(upstreams)} upstream{plural}" + (": " + ", ".join(found) if found else "")


def state_of(upstream: Mapping[str, Any]) -> str:
    status = upstream.get("status")
    return status if status in COLOURS else "unknown"


def row(upstream: Mapping[str, Any]) -> str:
    """One table row, with the same classes and data attributes the script draws."""
    state = state_of(upstream)
    colour = COLOURS[state]
    cells = [f'<td><span class="dot" title="{state}" style="background-color: {colour};"></span></td>',
             _td(upstream.get("name"), "name"),
             f'<td class="status" style="color: {colour};">{state}</td>',
             _td(_number(upstream.get("latency_ms"), "ms"), "num latency"),
             _td(_number(upstream.get("models")), "num models"),
             _td(_number(upstream.get("inflight")), "num inflight"),
             _td(_number(upstream.get("queued")), "num queued"),
             _td(upstream.get("circuit") or "–", "circuit"),
             _td(upstream.get("checked_at") or "not yet", "checked"),
             _td(upstream.get("last_error") or "", "error")]
    name = _e(upstream.get("name"))
    return f'<tr data-upstream="{name}" data-status="{state}">{"".join(cells)}</tr>'


def aliases(config: Config) -> str:
    """The model aliases and where each one goes, or nothing when there are none."""
    if not config.models:
        return ""
    rows = "\n".join(f'<tr data-alias="{_e(name)}">{_td(name, "name")}'
                     f'<td class="targets">{", ".join(f"<code>{_e(t)}</code>" for t in alias.targets)}</td>'
                     f'{_td(alias.description or "", "description")}</tr>'
                     for name, alias in config.models.items())
    return ('<h2>Model aliases</h2>\n<table id="aliases">\n<thead><tr><th>Alias</th><th>Targets, in order</th>'
            f'<th>Description</th></tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>')


def _number(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if unit == "ms" and isinstance(value, (int, float)):
        value = round(value)
    return f"{value} {unit}" if unit else str(value)


def _td(text: Any, class_name: str) -> str:
    return f'<td class="{class_name}">{_e(text)}</td>'


def _e(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)
