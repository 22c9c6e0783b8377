"""Telling Go's pprof output from what else answers on a port: HTML pages, JSON APIs; described in a few words."""

from __future__ import annotations

import re

from memorywatch.pprof.errors import snippet

_TITLE = re.compile(rb"<title[^>]*>(.{0,120}?)</title>", re.IGNORECASE | re.DOTALL)


def foreign_body_description(content_type: str, data: bytes) -> str | None:
    """A description of `data` if it is plainly an HTML page or a JSON document rather than Go's output."""
    head = data[:64].lstrip()
    if content_type in ("application/json", "text/html") or head.startswith((b"<!", b"<html", b"{", b"[{")):
        if b"debug=1" in data[:65536] and content_type == "text/html":
            return None  # the pprof index page is HTML; let the index parser judge it
        return describe_body(content_type, data)
    return None


def describe_body(content_type: str, data: bytes) -> str:
    """What a foreign body was, in a few words: its type and its title or first characters."""
    kind = content_type or "no Content-Type"
    title = _TITLE.search(data[:65536])
    if title is not None:
        return f"an HTML page ({kind}) titled {snippet(title.group(1))}"
    if content_type == "application/json" or data.lstrip().startswith((b"{", b"[")):
        return f"a JSON document ({kind}) starting {snippet(data)}"
    return f"{kind} starting {snippet(data)}"
