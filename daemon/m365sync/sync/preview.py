"""A short, readable preview of a message: the NEW part only, never the quoted history.

Graph's ``bodyPreview`` is the first 255 characters of the whole body, so a reply's preview
is often "From: Anna Smith Sent: Tuesday..." of the mail it answers. The CRM's thread view
wants what this message says, so `text_preview` reads the HTML with the standard library's
tolerant parser (no regular expressions over tags: they break on attributes holding ``>``,
comments and broken markup) and stops at the places mail clients start the quoted history:

- Outlook: ``<div id="divRplyFwdMsg">``, ``<div id="appendonsend">`` (the reply separator),
  ``<hr id="stopSpelling">`` (Outlook.com), Outlook mobile's
  ``<div id="mail-editor-reference-message-container">``, Outlook for Mac's
  ``<span id="OLK_SRC_BODY_SECTION">``; Word-made mail has only a ``From: ... Sent: ...``
  header block, cut as text (below).
- Gmail ``<div class="gmail_quote">``, Thunderbird ``<div class="moz-cite-prefix">``, Yahoo
  ``<div class="yahoo_quoted">``, Proton ``protonmail_quote``.
- Any ``<blockquote>`` (Apple Mail's ``type="cite"`` among them): its content is left out but
  the text after it is kept, because Apple Mail and Thunderbird users may answer *below* the
  quote.

Then, on the text (also for plain-text bodies, `text_from_plain`): lines starting with ``>``
are left out (the text around them is kept, for the same reason), and the text is cut at
"-----Original Message-----" and its translations, at "---------- Forwarded message
---------", at a line of underscores followed by ``From:``/``De:``/``Von:``, at a
``From: ... Sent: ...`` header block, and at an attribution line ("On <date>, <name> wrote:",
"Le ... a écrit :", "Am ... schrieb ...:") unless quoted lines follow it and then new text.

If nothing new is left (a forward without a comment) the preview is the start of the whole
text instead: a forwarded mail's own header is more useful than nothing. Whitespace is
collapsed, and the result is cut at a word boundary with "…", so it is at most ``limit + 1``
characters. Work is bounded: parsing stops once enough text is collected, and a body the
parser cannot read falls back to nh3's tag stripping; the function does not raise. Plain,
well-formed bodies are read by `preview_scan.scan` (same callbacks, several times faster),
the others by the standard parser.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import nh3

from m365sync.sync.preview_scan import scan

ELLIPSIS = "…"
# Only this much HTML is parsed. Parsing stops far earlier once the preview is decided; the
# cap bounds the rare body that is nearly all quote, style or broken markup (0.3 s at most).
MAX_HTML_CHARS = 512 * 1024

_VOID = frozenset(
    {"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base", "embed", "source"}
)
_BLOCK = frozenset(
    {
        "p",
        "div",
        "br",
        "hr",
        "li",
        "ul",
        "ol",
        "tr",
        "table",
        "tbody",
        "thead",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "section",
        "article",
        "header",
        "footer",
        "address",
        "center",
        "dd",
        "dt",
        "dl",
        "figure",
        "form",
        "fieldset",
        "body",
    }
)
_CELL = frozenset({"td", "th"})
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript", "xml", "svg"})
_CUT_IDS = frozenset(
    {
        "divrplyfwdmsg",
        "appendonsend",
        "stopspelling",
        "mail-editor-reference-message-container",
        "olk_src_body_section",
    }
)
_CUT_CLASSES = frozenset(
    {
        "gmail_quote",
        "gmail_quote_container",
        "moz-cite-prefix",
        "yahoo_quoted",
        "protonmail_quote",
        "outlookmessageheader",
    }
)
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)

_SEPARATOR = re.compile(
    r"^[-=_*\s]{3,}\s*(original message|forwarded message|ursprüngliche nachricht|"
    r"weitergeleitete nachricht|message d'origine|message transféré|mensaje original|"
    r"mensaje reenviado|messaggio originale|messaggio inoltrato|oorspronkelijk bericht|"
    r"doorgestuurd bericht|originalmeddelande|mensagem original)\b",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^_{10,}$")
_FROM = re.compile(
    r"^\**\s*(from|de|von|van|da|från|fra|od|от|发件人)\s*\**\s*[:\uff1a]", re.IGNORECASE
)
_SENT = re.compile(
    r"^\**\s*(sent|date|envoyé|gesendet|datum|enviado|fecha|inviato|data|verzonden|"
    r"skickat|sendt|wysłano|отправлено|发送时间|to|à|an|para|a|aan|till|til|do|кому|"
    r"subject|objet|betreff|asunto|oggetto|onderwerp|ämne|emne|temat|тема)\s*\**\s*[:\uff1a]",
    re.IGNORECASE,
)
_INLINE_SENT = re.compile(r"\b(sent|date|envoyé|gesendet|enviado)\s*:", re.IGNORECASE)
_ATTRIBUTION_START = re.compile(r"^(on|le|am|el|il|op|den|em|w dniu|el día)\b", re.IGNORECASE)
_ATTRIBUTION_END = re.compile(
    r"(wrote|a écrit|schrieb|escribió|ha scritto|schreef|skrev|escreveu|napisał|написал)"
    r"[^:\uff1a]{0,80}[:\uff1a]$",
    re.IGNORECASE,
)


class _Enough(Exception):
    """Raised from the parser's callbacks to stop reading once the preview is decided."""


class _PreviewParser(HTMLParser):
    """HTML -> two texts with ``\\n`` line breaks: the new part, and the whole."""

    def __init__(self, budget: int) -> None:
        super().__init__(convert_charrefs=True)
        self.budget = budget
        self.new: list[str] = []
        self.whole: list[str] = []
        self.new_len = 0
        self.whole_len = 0
        self.hidden: list[str] = []
        self.quote_depth = 0
        self.pre_depth = 0
        self.cut = False

    # --- tags ---------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.hidden = []  # an unclosed <head> or <title> must not hide the whole body
        if self.hidden or tag in _HIDDEN:
            if tag in _HIDDEN and tag not in _VOID:
                self.hidden.append(tag)
            return
        if not self.cut and _starts_history(attrs):
            self.cut = True
        if tag in _BLOCK:
            self._emit("\n")
        elif tag in _CELL:
            self._emit(" ")
        if tag == "blockquote":
            self.quote_depth += 1
        elif tag == "pre":
            self.pre_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self.hidden:
            if tag in self.hidden:
                while self.hidden and self.hidden.pop() != tag:
                    pass
            return
        if tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        if tag in _BLOCK:
            self._emit("\n")

    def handle_data(self, data: str) -> None:
        if self.hidden or not data:
            return
        if self.pre_depth:
            text = _HORIZONTAL_SPACE.sub(" ", data.replace("\r\n", "\n").replace("\r", "\n"))
        else:
            text = " ".join(data.split())
            if data[:1].isspace():
                text = " " + text
            if data[-1:].isspace() and text.strip():
                text += " "
        self._emit(text)

    def parse_html_declaration(self, i: int) -> int:
        """``<![foo]>`` makes the standard parser raise; read it as a bogus comment instead."""
        try:
            return super().parse_html_declaration(i)
        except AssertionError:
            end = self.rawdata.find(">", i + 1)
            return -1 if end < 0 else end + 1

    # --- output -------------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self.whole_len < self.budget:
            self.whole.append(text)
            self.whole_len += len(text)
        if not self.cut and not self.quote_depth:
            self.new.append(text)
            self.new_len += len(text)
        if self.new_len >= self.budget or (self.cut and self.whole_len >= self.budget):
            raise _Enough

    def read(self, body: str) -> None:
        """Parse ``body``; what the parser still holds at the end (an unclosed ``<x`` or
        ``<!--``) is plain text, as a reader would see it."""
        try:
            self.feed(body)
            leftover = self.rawdata
            if leftover and not self.cdata_elem and not leftover.startswith("<!--"):
                self.handle_data(html.unescape(leftover))
        except _Enough:
            pass


def _starts_history(attrs: list[tuple[str, str | None]]) -> bool:
    for name, value in attrs:
        if not value:
            continue
        if name == "id" and value.strip().casefold() in _CUT_IDS:
            return True
        if name == "class" and _CUT_CLASSES.intersection(value.casefold().split()):
            return True
    return False


# --- text rules ---------------------------------------------------------------------------


def _clean_lines(text: str) -> list[str]:
    text = text.translate(_INVISIBLE)
    return [" ".join(line.split()) for line in text.splitlines()]


def _next_text(lines: list[str], start: int, window: int = 3) -> list[str]:
    return [line for line in lines[start : start + window * 3] if line][:window]


def _attribution(lines: list[str], i: int) -> int:
    """How many lines an attribution ("On ..., X wrote:") starting at ``i`` spans; 0 if none."""
    line = lines[i]
    if len(line) > 300:
        return 0
    if _ATTRIBUTION_END.search(line) and (_ATTRIBUTION_START.match(line) or "@" in line):
        return 1
    following = lines[i + 1] if i + 1 < len(lines) else ""
    joined = f"{line} {following}"
    if _ATTRIBUTION_START.match(line) and len(joined) <= 300 and _ATTRIBUTION_END.search(joined):
        return 2
    return 0


def _is_history_start(lines: list[str], i: int) -> bool:
    """A separator or a header block: everything from here on is the quoted history."""
    line = lines[i]
    if _SEPARATOR.match(line):
        return True
    if _UNDERSCORES.match(line):
        return any(_FROM.match(nxt) for nxt in _next_text(lines, i + 1, 2))
    if _FROM.match(line):
        if _INLINE_SENT.search(line):
            return True
        return any(_SENT.match(nxt) for nxt in _next_text(lines, i + 1, 4))
    return False


def _new_lines(lines: list[str]) -> list[str]:
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line or line.startswith(">"):
            i += 1
            continue
        span = _attribution(lines, i)
        if span:
            rest = _next_text(lines, i + span, 1)
            if rest and rest[0].startswith(">"):
                i += span
                continue
            break
        if _is_history_start(lines, i):
            break
        kept.append(line)
        i += 1
    return kept


def _truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters and "…", cut at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    limit = max(limit, 0)
    head = text[:limit]
    space = head.rfind(" ")
    if space >= limit // 2:
        head = head[:space]
    return head.rstrip(" ,;:-\u2013\u2014") + ELLIPSIS


def _finish(new_text: str, whole_text: str, limit: int) -> str | None:
    new = " ".join(_new_lines(_clean_lines(new_text)))
    if not new:
        new = " ".join(line for line in _clean_lines(whole_text) if line)
    return _truncate(new, limit) if new else None


def _budget(limit: int) -> int:
    return max(limit, 0) * 8 + 4096


# --- public -----------------------------------------------------------------------------------


def text_preview(body_html: str | None, *, limit: int = 255) -> str | None:
    """The readable new part of an HTML body, at most ``limit`` + 1 characters, or None."""
    if not body_html or not isinstance(body_html, str):
        return None
    budget = _budget(limit)
    body = body_html[:MAX_HTML_CHARS]
    parser = _PreviewParser(budget)
    try:
        try:
            plain = scan(parser, body)
        except _Enough:
            plain = True
        if not plain:  # the standard parser, from the start, on a fresh handler
            parser = _PreviewParser(budget)
            parser.read(body)
    except Exception:  # the parser's own assertions on hostile markup: strip tags instead
        return _fallback(body_html, limit)
    return _finish("".join(parser.new), "".join(parser.whole), limit)


def text_from_plain(text: str | None, *, limit: int = 255) -> str | None:
    """The same preview for a plain-text body: quoted ``>`` lines and history left out."""
    if not text or not isinstance(text, str):
        return None
    head = text[: _budget(limit) * 4]
    return _finish(head, head, limit)


def _fallback(body_html: str, limit: int) -> str | None:
    head = body_html[: _budget(limit) * 8]
    try:
        text = html.unescape(nh3.clean(head, tags=set()))
    except Exception:
        return None
    return _finish(text, text, limit)
