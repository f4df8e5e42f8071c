"""A fast reader for the plain, well-formed HTML most mail bodies are; the standard parser
for the rest.

Why: `html.parser.HTMLParser` walks a body through a dozen regular expressions per tag and
counts line numbers as it goes; on a first sync that was 14-25% of the daemon's time for
bodies of a few hundred characters. `scan` hands the same callbacks (``handle_starttag``,
``handle_endtag``, ``handle_data``), with the same arguments and the same data chunks, to the
same handler for the subset of HTML where the standard parser's behaviour is plain and has
not changed between Python versions: text, start and end tags with simply-written names and
attributes (quoted, or bare values followed by a space or ``>``), ``<x/>`` (start then end, as
`HTMLParser.handle_startendtag` does), comments without ``--`` inside, ``<!doctype ...>``,
``<?...>``, and ``<style>``/``<script>`` bodies up to their plain closing tag. It returns False
as soon as it meets anything else (a stray ``<``, ``<![if ...]>``, an unterminated tag at the
end...), and the caller then reads the body again with `HTMLParser` from a fresh handler, so
results never differ; tests/unit/test_preview_scan.py compares both on generated markup.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Protocol

_WS = "[ \\t\\n\\r\\f]"
_NAME = "[a-zA-Z][-a-zA-Z0-9:_.]*"
_ATTR_NAME = "[a-zA-Z_:][-a-zA-Z0-9_:.]*"
_BARE = "[^\\s\"'=<>`/]+"
_VALUE = f"\"[^\"<>]*\"|'[^'<>]*'|{_BARE}(?={_WS}|>)"
# Attributes are read from a start tag _START accepted, without its ">": a bare value may end it.
_ATTR_VALUE = f"\"[^\"<>]*\"|'[^'<>]*'|{_BARE}(?={_WS}|>|\\Z)"
_ATTR = re.compile(f"({_ATTR_NAME})(?:{_WS}*={_WS}*({_ATTR_VALUE}))?")
_START = re.compile(f"<({_NAME})((?:{_WS}+{_ATTR_NAME}(?:{_WS}*={_WS}*(?:{_VALUE}))?)*){_WS}*(/?)>")
_END = re.compile(f"</({_NAME})>")
_RAW_END = {tag: re.compile(f"</{tag}>", re.IGNORECASE) for tag in ("script", "style")}


class Handler(Protocol):
    """The callbacks `HTMLParser` subclasses override (convert_charrefs=True)."""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None: ...

    def handle_endtag(self, tag: str) -> None: ...

    def handle_data(self, data: str) -> None: ...


def _attrs(text: str) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for match in _ATTR.finditer(text):
        name, value = match.group(1, 2)
        if value is not None:
            if value[:1] in ("'", '"'):
                value = value[1:-1]
            if value:
                value = unescape(value)
        found.append((name.lower(), value))
    return found


def scan(handler: Handler, body: str) -> bool:
    """Feed ``body`` to ``handler`` as `HTMLParser` would; False (at once) when ``body`` has
    anything outside the plain subset, after which the handler's state is spoiled."""
    i, n = 0, len(body)
    find = body.find
    while i < n:
        j = find("<", i)
        if j < 0:
            handler.handle_data(unescape(body[i:]))
            return True
        if j > i:
            handler.handle_data(unescape(body[i:j]))
        nxt = body[j + 1 : j + 2]
        if nxt == "/":
            match = _END.match(body, j)
            if match is None:
                return False
            handler.handle_endtag(match.group(1).lower())
            i = match.end()
        elif nxt == "!":
            if body.startswith("<!--", j):
                close = find("-->", j + 4)
                if close < 0 or "--" in body[j + 4 : close] or body[j + 4 : j + 5] == ">":
                    return False
                i = close + 3
            elif body[j : j + 9].lower() == "<!doctype":
                close = find(">", j + 9)
                if close < 0:
                    return False
                i = close + 1
            else:
                return False
        elif nxt == "?":
            close = find(">", j + 2)
            if close < 0:
                return False
            i = close + 1
        else:
            match = _START.match(body, j)
            if match is None:
                return False
            tag = match.group(1).lower()
            attrs = _attrs(match.group(2)) if match.group(2) else []
            handler.handle_starttag(tag, attrs)
            i = match.end()
            if match.group(3):
                handler.handle_endtag(tag)
            elif tag in _RAW_END:
                close = _RAW_END[tag].search(body, i)
                if close is None:
                    return False
                content = body[i : close.start()]
                if "</" in content or (tag == "script" and "<" in content):
                    return False
                if content:
                    handler.handle_data(content)
                handler.handle_endtag(tag)
                i = close.end()
    return True
