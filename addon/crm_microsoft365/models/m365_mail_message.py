from odoo import api, fields, models

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
    body_html = fields.Html(string="Body", sanitize=True, readonly=True)
    body_preview = fields.Text(string="Preview", readonly=True)
    is_draft = fields.Boolean(string="Draft", readonly=True)
    has_attachments = fields.Boolean(readonly=True)
    headers = fields.Text(readonly=True, help="Selected internet headers (JSON).")
    content_hash = fields.Char(readonly=True, help="Fingerprint of what the daemon stored.")
    link_ids = fields.One2many("m365.mail.message.link", "message_id", string="Mailboxes")
    participant_ids = fields.One2many(
        "m365.mail.participant", "message_id", string="Participants"
    )
    attachment_ids = fields.One2many("m365.mail.attachment", "message_id", string="Attachments")

    def init(self):
        # internetMessageId is the key across folders and accounts, when a message has one
        # (drafts have none and stay apart).
        self.env.cr.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS m365_mail_message_imid_uniq "
            "ON m365_mail_message (internet_message_id) WHERE internet_message_id IS NOT NULL"
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
