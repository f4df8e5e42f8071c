import re

from lxml import html as lxml_html
from markupsafe import Markup
from odoo.tools import html_sanitize

from odoo import api, fields, models

# Attributes that make a browser fetch a URL as the thread opens (tracking pixels, remote
# images); blocked until someone asks to show the message's images.
_FETCHING = ("src", "srcset", "background", "poster")
_REMOTE = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)


def block_remote_images(body):
    """``(html, found)``: the body with remote URLs of fetching attributes moved to
    ``data-m365-blocked-*`` (inline ``data:`` and ``cid:`` images stay)."""
    if not body or not body.strip():
        return body, False
    try:
        root = lxml_html.fragment_fromstring(body, create_parent="div")
    except (ValueError, lxml_html.etree.ParserError):
        return "", False
    found = False
    for element in root.iter(lxml_html.etree.Element):
        for attribute in _FETCHING:
            value = element.get(attribute)
            if value and _REMOTE.match(value):
                element.set(f"data-m365-blocked-{attribute}", value)
                del element.attrib[attribute]
                found = True
    inner = "".join(lxml_html.tostring(child, encoding="unicode") for child in root)
    return (root.text or "") + inner, found

def sanitize_body(body):
    """What ``body_html`` stores: Odoo's sanitiser with the Html field's defaults, CSS
    included (no position:fixed overlays). Done once, by the daemon API's writer: an ``Html``
    field with ``sanitize=True`` runs it twice per value on create (column and cache), which
    was a fifth of the time of storing a page."""
    if not body:
        return body
    return html_sanitize(
        body,
        silent=True,
        sanitize_tags=True,
        sanitize_attributes=True,
        sanitize_style=True,
        sanitize_form=True,
        sanitize_conditional_comments=True,
        output_method="html",
    )


ROLES = [
    ("from", "From"),
    ("to", "To"),
    ("cc", "Cc"),
    ("bcc", "Bcc"),
    ("reply_to", "Reply-To"),
]


class M365MailMessage(models.Model):
    """One Outlook message, stored once however many folders and accounts hold it (keyed by
    ``internet_message_id`` when it has one). What the account's privacy does not share was
    never sent by the daemon, so it is simply empty here."""

    _name = "m365.mail.message"
    _description = "Outlook Email"
    _order = "date desc, id desc"
    _rec_name = "subject"

    internet_message_id = fields.Char(string="Message-ID", index=True, readonly=True)
    conversation_id = fields.Char(readonly=True)
    thread_id = fields.Many2one(
        "m365.mail.thread", index=True, ondelete="set null", readonly=True
    )
    subject = fields.Char(readonly=True)
    from_address = fields.Char(readonly=True)
    from_name = fields.Char(readonly=True)
    sender_display = fields.Char(string="From", compute="_compute_recipients_display")
    to_display = fields.Char(string="To", compute="_compute_recipients_display")
    cc_display = fields.Char(string="Cc", compute="_compute_recipients_display")
    received_at = fields.Datetime(string="Received", readonly=True)
    sent_at = fields.Datetime(string="Sent", readonly=True)
    date = fields.Datetime(compute="_compute_date", store=True, index=True)
    # Sanitised (CSS included: no position:fixed overlays) whatever the daemon sends, once, by
    # the daemon API's writer (sanitize_body); it is readonly, and shown only through
    # body_display, which sanitises again.
    body_html = fields.Html(string="Body", sanitize=False, readonly=True)
    body_display = fields.Html(
        string="Message",
        compute="_compute_body_display",
        sanitize=False,
        help="The body as shown: sanitised again (older rows included), remote images blocked "
        "until someone clicks Show images.",
    )
    has_remote_images = fields.Boolean(compute="_compute_body_display")
    show_images = fields.Boolean(
        readonly=True, help="Someone asked to load this message's remote images."
    )
    body_preview = fields.Text(string="Preview", readonly=True)
    is_draft = fields.Boolean(string="Draft", readonly=True)
    has_attachments = fields.Boolean(readonly=True)
    headers = fields.Text(readonly=True, help="Selected internet headers (JSON).")
    content_hash = fields.Char(readonly=True, help="Fingerprint of what the daemon stored.")
    # The dedupe key with internet_message_id: the same Message-ID from another sender, or with
    # other content, is another message (the sender controls the Message-ID).
    sender_key = fields.Char(readonly=True, help="The sender's normalised address.")
    fingerprint = fields.Char(
        readonly=True, help="Sender, subject and body text, hashed before any privacy applied."
    )
    link_ids = fields.One2many("m365.mail.message.link", "message_id", string="Mailboxes")
    participant_ids = fields.One2many(
        "m365.mail.participant", "message_id", string="Participants"
    )
    attachment_ids = fields.One2many("m365.mail.attachment", "message_id", string="Attachments")

    def init(self):
        # (internetMessageId, sender, fingerprint) is the key across folders and accounts,
        # when a message has an id (drafts have none and stay apart). Rows stored before
        # fingerprints have none, and are adopted by the first copy from the same sender.
        self.env.cr.execute("DROP INDEX IF EXISTS m365_mail_message_imid_uniq")
        self.env.cr.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS m365_mail_message_dedupe_uniq "
            "ON m365_mail_message (internet_message_id, sender_key, fingerprint) "
            "WHERE internet_message_id IS NOT NULL AND fingerprint IS NOT NULL"
        )

    @api.depends("received_at", "sent_at")
    def _compute_date(self):
        for message in self:
            message.date = message.received_at or message.sent_at

    @api.depends("from_address", "from_name", "participant_ids.role", "participant_ids.address")
    def _compute_recipients_display(self):
        for message in self:
            if message.from_address and message.from_name:
                message.sender_display = f"{message.from_name} <{message.from_address}>"
            else:
                message.sender_display = message.from_address or message.from_name or False
            for role, field in (("to", "to_display"), ("cc", "cc_display")):
                people = message.participant_ids.filtered(lambda p, r=role: p.role == r)
                message[field] = ", ".join(p.display_address() for p in people) or False

    @api.depends("body_html", "show_images")
    def _compute_body_display(self):
        for message in self:
            body = html_sanitize(message.body_html or "", sanitize_style=True) if message.body_html else ""
            blocked, found = block_remote_images(body)
            message.has_remote_images = found
            # Markup: html_sanitize above made it safe (it is what Odoo stores for Html fields).
            shown = body if message.show_images else blocked
            message.body_display = Markup(shown) if body else False  # noqa: S704

    def action_show_images(self):
        """Load this message's remote images (for everyone who reads it), as mail clients do."""
        self.check_access("read")
        # sudo: users only read mail; this flag is the one thing reading lets them change.
        self.sudo().write({"show_images": True})
        return True
