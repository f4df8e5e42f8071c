"""preview_scan.scan gives the same callbacks as html.parser wherever it accepts a body."""

from __future__ import annotations

import html
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from m365sync.sync.preview import text_preview
from m365sync.sync.preview_scan import scan


class Recorder(HTMLParser):
    """Every callback our preview parser overrides, in order, with its arguments."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple] = []

    def handle_starttag(self, tag, attrs):
        self.events.append(("start", tag, tuple(attrs)))

    def handle_endtag(self, tag):
        self.events.append(("end", tag))

    def handle_data(self, data):
        self.events.append(("data", data))

    def read(self, body: str) -> None:
        """As _PreviewParser.read: what the parser still holds at the end is text."""
        self.feed(body)
        leftover = self.rawdata
        if leftover and not self.cdata_elem and not leftover.startswith("<!--"):
            self.handle_data(html.unescape(leftover))


def both(body: str) -> tuple[bool, list[tuple], list[tuple]]:
    slow, fast = Recorder(), Recorder()
    slow.read(body)
    return scan(fast, body), fast.events, slow.events


PIECES = [
    "<p>",
    "</p>",
    '<div id="divRplyFwdMsg">',
    "<div class='gmail_quote x'>",
    "</div>",
    "<br>",
    "<br/>",
    "<br />",
    "<BR>",
    "<o:p>",
    "</o:p>",
    "<td nowrap>",
    "<a href=x>",
    "<a href=x/>",
    '<a href="a&amp;b">',
    "<span title='a>b'>",
    '<img src="c"/>',
    '<blockquote type="cite">',
    "</blockquote>",
    "<pre>",
    "</pre>",
    "<style>p{}</style>",
    '<style type="text/css"><!-- p {} --></style>',
    "<script>x<y</script>",
    "<style>",
    "</style>",
    "<!-- c -->",
    "<!-- a -- b -->",
    "<!-->",
    "<!DOCTYPE html>",
    "<?xml x?>",
    "<![if !x]>",
    "<![endif]>",
    "a < b",
    " & ",
    "&amp;",
    "&#233;",
    "&nbsp;",
    "&copy",
    "x",
    "Hello world",
    "\n",
    "\r\n",
    "  ",
    "<",
    ">",
    "</",
    "<a",
    '<div class="a"title="b">',
    "<p\x0b>",
    '<x y="1" / >',
    "</p >",
    "</ p>",
    "<head>",
    "<title>T</title>",
    "On Mon wrote:",
    "> quoted",
    "From: A",
    "Sent: B",
    "é",
    "\u00a0",
    "<hr id=stopSpelling>",
    "<a b c=d>",
]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), max_size=25).map("".join))
@example(
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
    '<style type="text/css" style="display:none;"> P {margin-top:0;} </style></head>'
    '<body dir="ltr"><div>Thanks &amp; regards</div><div id="appendonsend"></div>'
    '<hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg"'
    ' dir="ltr"><b>From:</b> Ann</div></body></html>'
)
def test_scan_matches_html_parser_wherever_it_accepts(body: str) -> None:
    accepted, fast, slow = both(body)
    if accepted:
        assert fast == slow
    assert text_preview(body) == text_preview_slow(body)


def text_preview_slow(body: str):
    """text_preview with the fast reader turned off."""
    import m365sync.sync.preview as preview

    original = preview.scan
    preview.scan = lambda _handler, _body: False
    try:
        return preview.text_preview(body)
    finally:
        preview.scan = original


@pytest.mark.parametrize(
    "body",
    [
        "<div>plain</div>",
        "<p>a<br/>b</p>",
        "<!DOCTYPE html><html><body><p>x</p><!-- c --></body></html>",
        "<style>p {}</style><p>Hi &amp; bye</p>",
    ],
)
def test_plain_bodies_take_the_fast_path(body: str) -> None:
    accepted, fast, slow = both(body)
    assert accepted and fast == slow


@pytest.mark.parametrize(
    "body", ["a < b", "<![if !supportLists]>x<![endif]>", "<p>cut <di", "<a href=x/>", "<!-->"]
)
def test_odd_markup_is_left_to_the_standard_parser(body: str) -> None:
    assert not scan(Recorder(), body)
