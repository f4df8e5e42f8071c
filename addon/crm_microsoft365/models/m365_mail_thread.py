from odoo import api, fields, models


class M365MailThread(models.Model):
    """An Outlook conversation (Graph ``conversationId``); a message without one is its own
    thread (``conversation_id`` empty)."""

    _name = "m365.mail.thread"
    _description = "Outlook Email Thread"
    _order = "last_message_at desc, conversation_id, id"
    _rec_name = "subject"

    conversation_id = fields.Char(index=True, readonly=True)
    message_ids = fields.One2many("m365.mail.message", "thread_id", string="Messages")
    subject = fields.Char(compute="_compute_summary", store=True)
    last_message_at = fields.Datetime(compute="_compute_summary", store=True)
    message_count = fields.Integer(compute="_compute_summary", store=True)
    participants = fields.Text(
        string="Participant Addresses",
        compute="_compute_summary",
        store=True,
        help="Every participant's normalised address, one a line, sorted.",
    )
    participants_display = fields.Char(
        string="Participants", compute="_compute_participants_display"
    )
    partner_ids = fields.Many2many(
        "res.partner",
        "m365_mail_thread_partner_rel",
        "thread_id",
        "partner_id",
        string="Matched Contacts",
        compute="_compute_summary",
        store=True,
    )

    _sql_constraints = [
        (
            "conversation_unique",
            "UNIQUE (conversation_id)",
            "A conversation is stored as one thread.",
        ),
    ]

    @api.depends(
        "message_ids.subject",
        "message_ids.date",
        "message_ids.participant_ids.address",
        "message_ids.participant_ids.partner_id",
        "message_ids.participant_ids.company_partner_id",
    )
    def _compute_summary(self):
        for thread in self:
            messages = thread.message_ids.sorted(
                lambda m: (not m.date, m.date or fields.Datetime.now(), m.id)
            )
            thread.subject = next((m.subject for m in messages if m.subject), False)
            dates = [m.date for m in messages if m.date]
            thread.last_message_at = max(dates) if dates else False
            thread.message_count = len(messages)
            parts = messages.participant_ids
            thread.participants = "\n".join(sorted(set(parts.mapped("address")))) or False
            thread.partner_ids = parts.partner_id | parts.company_partner_id

    @api.depends("participants")
    def _compute_participants_display(self):
        for thread in self:
            thread.participants_display = ", ".join((thread.participants or "").split())
