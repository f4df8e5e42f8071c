"""Previews show what a message says, not the history it quotes (pure)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m365sync.sync.preview import ELLIPSIS, text_from_plain, text_preview

# --- realistic samples (shapes as the clients write them) --------------------------------------

OUTLOOK_WEB_REPLY = """\
<html><head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<style type="text/css" style="display:none;"> P {margin-top:0;margin-bottom:0;} </style>
</head>
<body dir="ltr">
<div class="elementToProof" style="font-family: Aptos, Aptos_EmbeddedFont, Calibri, \
Helvetica, sans-serif; font-size: 12pt; color: rgb(0, 0, 0);">
Hi Anna,</div>
<div class="elementToProof" style="font-size: 12pt;"><br></div>
<div class="elementToProof" style="font-size: 12pt;">
Thanks &amp; regards &ndash; the revised quote is attached.&nbsp;Let me know if Thursday
works.</div>
<div id="Signature"><p>Megan Bowen<br>Contoso Ltd.</p></div>
<div id="appendonsend"></div>
<hr style="display:inline-block;width:98%" tabindex="-1">
<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" \
color="#000000"><b>From:</b> Anna Smith &lt;anna@fabrikam.com&gt;<br>
<b>Sent:</b> Tuesday, March 5, 2024 10:02 AM<br>
<b>To:</b> Megan Bowen &lt;MeganB@contoso.com&gt;<br>
<b>Subject:</b> Quote</font>
<div>&nbsp;</div></div>
<div dir="ltr"><p>Could you send the revised quote before Thursday?</p><p>Anna</p></div>
</body></html>
"""

OUTLOOK_DESKTOP_REPLY = """\
<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" \
xmlns:w="urn:schemas-microsoft-com:office:word">
<head><meta name="Generator" content="Microsoft Word 15 (filtered medium)">
<!--[if !mso]><style>v\\:* {behavior:url(#default#VML);}</style><![endif]-->
<style><!--
@font-face {font-family:"Cambria Math"; panose-1:2 4 5 3 5 4 6 3 2 4;}
p.MsoNormal, li.MsoNormal, div.MsoNormal {margin:0in; font-size:11.0pt;}
--></style><!--[if gte mso 9]><xml>
<o:shapedefaults v:ext="edit" spidmax="1026" />
</xml><![endif]--></head>
<body lang="EN-US" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">
<div class="WordSection1">
<p class="MsoNormal">Hello Bob,<o:p></o:p></p>
<p class="MsoNormal"><o:p>&nbsp;</o:p></p>
<p class="MsoNormal">Confirmed for 10:00 on Friday.<o:p></o:p></p>
<p class="MsoNormal"><![if !supportLists]>-<![endif]>Agenda to follow.<o:p></o:p></p>
<div>
<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in">
<p class="MsoNormal"><b>From:</b> Bob Lee &lt;bob@northwindtraders.com&gt; <br>
<b>Sent:</b> Monday, March 4, 2024 4:15 PM<br>
<b>To:</b> Megan Bowen &lt;MeganB@contoso.com&gt;<br>
<b>Subject:</b> Meeting<o:p></o:p></p>
</div></div>
<p class="MsoNormal">Can we meet on Friday?<o:p></o:p></p>
</div></body></html>
"""

GMAIL_REPLY = """\
<div dir="ltr">Sounds good, see you at the booth.<div><br></div><div>Carol</div></div><br>\
<div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">On Tue, \
Mar 5, 2024 at 10:02\u202fAM Megan Bowen &lt;<a href="mailto:MeganB@contoso.com">\
MeganB@contoso.com</a>&gt; wrote:<br></div><blockquote class="gmail_quote" \
style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">\
<div dir="ltr">Will you be at the trade fair?</div></blockquote></div>
"""

APPLE_MAIL_REPLY = """\
<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head>\
<body dir="auto"><div dir="ltr"></div><div dir="ltr">Yes, Thursday works for us.</div>\
<div dir="ltr"><br></div><div dir="ltr">Sent from my iPhone</div><div dir="ltr"><br>\
<blockquote type="cite">On 5 Mar 2024, at 10:02, Megan Bowen &lt;MeganB@contoso.com&gt; \
wrote:<br><br></blockquote></div><blockquote type="cite"><div dir="ltr">\
<div>Does Thursday suit you?</div></div></blockquote></body></html>
"""

OUTLOOK_FORWARD_WITHOUT_COMMENT = """\
<html><body><div id="appendonsend"></div><hr>
<div id="divRplyFwdMsg"><b>From:</b> Dan Park &lt;dan@adventure-works.com&gt;<br>
<b>Sent:</b> Monday, March 4, 2024 9:00 AM<br><b>Subject:</b> Specs</div>
<div><p>Please find the specs attached.</p></div></body></html>
"""

PLAIN_OUTLOOK_REPLY = """\
Thanks, received.

Megan

-----Original Message-----
From: Anna Smith <anna@fabrikam.com>
Sent: Tuesday, March 5, 2024 10:02 AM
To: Megan Bowen <MeganB@contoso.com>
Subject: Invoice

Here is the invoice.
"""

PLAIN_UNDERSCORE_REPLY = """\
Great, thanks!
________________________________
From: Anna Smith <anna@fabrikam.com>
Sent: Tuesday, March 5, 2024 10:02:13 AM
Subject: Invoice

Here is the invoice.
"""

PLAIN_GERMAN_REPLY = """\
Passt, danke!

Am 05.03.2024 um 10:02 schrieb Anna Schmidt <anna@fabrikam.de>:
> Passt Donnerstag?
"""

PLAIN_BOTTOM_POSTED = """\
On Tue, Mar 5, 2024 at 10:02 AM Anna Smith <anna@fabrikam.com>
wrote:
> Can we meet on Thursday?
> Anna

Yes, Thursday at 10 works.
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            OUTLOOK_WEB_REPLY,
            "Hi Anna, Thanks & regards \u2013 the revised quote is attached. Let me know if "
            "Thursday works. Megan Bowen Contoso Ltd.",
        ),
        (OUTLOOK_DESKTOP_REPLY, "Hello Bob, Confirmed for 10:00 on Friday. -Agenda to follow."),
        (GMAIL_REPLY, "Sounds good, see you at the booth. Carol"),
        (APPLE_MAIL_REPLY, "Yes, Thursday works for us. Sent from my iPhone"),
    ],
)
def test_html_replies_keep_only_the_new_part(body, expected):
    assert text_preview(body) == expected


def test_a_pure_forward_falls_back_to_the_whole_text():
    preview = text_preview(OUTLOOK_FORWARD_WITHOUT_COMMENT)
    assert preview.startswith("From: Dan Park <dan@adventure-works.com> Sent: Monday")
    assert "Please find the specs attached." in preview


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (PLAIN_OUTLOOK_REPLY, "Thanks, received. Megan"),
        (PLAIN_UNDERSCORE_REPLY, "Great, thanks!"),
        (PLAIN_GERMAN_REPLY, "Passt, danke!"),
        (PLAIN_BOTTOM_POSTED, "Yes, Thursday at 10 works."),
        ("Fine by me.\n\n---------- Forwarded message ---------\nFrom: x", "Fine by me."),
        ("Inline answers:\n> Budget?\nApproved.\n> Date?\nMay.", "Inline answers: Approved. May."),
        ("Hi\r\n\r\nFrom: Anna Smith\r\nSent: Monday\r\nTo: Megan", "Hi"),
        ("See below.\nFrom: Anna Smith <anna@x.com> Sent: Monday To: Megan", "See below."),
        ("> only a quote\n> nothing new", "> only a quote > nothing new"),
        ("From: the team at Fabrikam, with thanks", "From: the team at Fabrikam, with thanks"),
    ],
)
def test_plain_text_rules(text, expected):
    assert text_from_plain(text) == expected


def test_plain_text_in_a_pre_block_as_graph_delivers_text_bodies():
    body = "<pre>" + PLAIN_OUTLOOK_REPLY.replace("<", "&lt;").replace(">", "&gt;") + "</pre>"
    assert text_preview(body) == "Thanks, received. Megan"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<p>Hello <b>world", "Hello world"),
        ("<div><p>Unclosed <span>tags<div>everywhere", "Unclosed tags everywhere"),
        ("Price < 100 & quantity > 5", "Price < 100 & quantity > 5"),
        ("a <b", "a <b"),
        ("<p>ok</p><!-- never closed comment", "ok"),
        ("<![foo]>text after a bogus declaration", "text after a bogus declaration"),
        ("<head><title>Subject line<body><p>Body text", "Body text"),
        ("<script>alert(1)</script><style>p{}</style><p>Visible</p>", "Visible"),
        (
            "<p>AT&amp;T &copy; 2024 &#8211; &#x263A; &bogus; &</p>",
            "AT&T \u00a9 2024 \u2013 \u263a &bogus; &",
        ),
        ("<p>zero\u200bwidth\ufeff and soft\u00adhyphen</p>", "zerowidth and softhyphen"),
        ("<blockquote>only a quote, never closed", "only a quote, never closed"),
        ("", None),
        (None, None),
        ("<p> </p><br><div>&nbsp;</div>", None),
    ],
)
def test_broken_and_odd_html(body, expected):
    assert text_preview(body) == expected


def test_text_after_a_quote_is_kept_for_bottom_posters():
    body = "<blockquote type='cite'><p>Old question?</p></blockquote><p>New answer.</p>"
    assert text_preview(body) == "New answer."


def test_truncated_at_a_word_boundary_with_an_ellipsis():
    body = "<p>" + "word " * 100 + "</p>"
    preview = text_preview(body, limit=23)
    assert preview == "word word word word" + ELLIPSIS
    assert text_preview("<p>" + "x" * 50 + "</p>", limit=10) == "x" * 10 + ELLIPSIS
    assert text_preview("<p>short</p>", limit=5) == "short"
    assert text_preview("<p>Hello, world and more</p>", limit=7) == "Hello" + ELLIPSIS


def test_default_limit_is_255():
    preview = text_preview("<p>" + "lorem ipsum " * 100 + "</p>")
    assert len(preview) <= 256 and preview.endswith(ELLIPSIS)


def test_huge_bodies_are_fast():
    quoted = "<p>old quoted text &amp; more, with <b>markup</b></p>" * 40_000
    bodies = [
        "<p>New text on top.</p><blockquote>" + quoted + "</blockquote>",
        "<div>" + "word " * 420_000 + "</div>",
        "<div id='divRplyFwdMsg'>" + quoted,
        "<x " * 700_000,
        "<p>" + "&amp;" * 420_000,
    ]
    for body in bodies:
        assert len(body) >= 2_000_000
        started = time.perf_counter()
        preview = text_preview(body)
        assert time.perf_counter() - started < 0.5
        assert preview is None or len(preview) <= 256
    assert text_preview(bodies[0]) == "New text on top."
    started = time.perf_counter()
    text_from_plain("> quoted line\n" * 150_000 + "answer")
    assert time.perf_counter() - started < 0.5


# --- properties ---------------------------------------------------------------------------------

fragments = st.sampled_from(
    [
        "<p>",
        "</p>",
        "<div>",
        "</div>",
        "<br>",
        "<blockquote>",
        "</blockquote>",
        '<div id="divRplyFwdMsg">',
        '<div class="gmail_quote">',
        "<pre>",
        "</pre>",
        "<script>",
        "</script>",
        "<!--",
        "-->",
        "<![foo]>",
        "<![CDATA[",
        "<",
        ">",
        "&",
        "&amp;",
        "&#",
        "\n",
        "> ",
        "From: Anna",
        "Sent: Monday",
        "On Monday Anna wrote:",
        "-----Original Message-----",
        "________________________________",
        "word",
        " ",
        "\u00a0",
    ]
)
html_like = st.one_of(st.text(), st.lists(st.one_of(fragments, st.text(max_size=8))).map("".join))


@given(html_like, st.integers(min_value=0, max_value=300))
def test_preview_never_raises_and_respects_the_limit(body, limit):
    preview = text_preview(body, limit=limit)
    assert preview is None or (0 < len(preview) <= limit + 1)
    plain = text_from_plain(body, limit=limit)
    assert plain is None or (0 < len(plain) <= limit + 1)


@given(html_like)
def test_preview_is_one_clean_line(body):
    preview = text_preview(body)
    if preview is not None:
        assert "\n" not in preview and "  " not in preview
        assert preview == preview.strip()
