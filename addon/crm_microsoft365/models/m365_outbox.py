import uuid

from odoo import fields, models


class M365Outbox(models.Model):
    """A mail to send through the owner's Outlook (Compose Email). Minimal for now: the
    outbox issue adds the wizard and the daemon's side."""

    _name = "m365.outbox"
    _description = "Microsoft 365 Outbox"
    _order = "id desc"
    _rec_name = "subject"

    account_id = fields.Many2one("m365.account", required=True, ondelete="cascade", index=True)
    user_id = fields.Many2one(related="account_id.user_id", store=True, string="Owner")
    partner_id = fields.Many2one("res.partner", string="Contact", ondelete="set null")
    idempotency_key = fields.Char(
        required=True, copy=False, default=lambda self: self._default_idempotency_key()
    )
    subject = fields.Char()
    body_html = fields.Html(string="Body")
    state = fields.Selection(
        [
            ("queued", "Queued"),
            ("sending", "Sending"),
            ("sent", "Sent"),
            ("failed", "Failed"),
        ],
        default="queued",
        required=True,
        readonly=True,
        index=True,
    )
    internet_message_id = fields.Char(readonly=True)
    sent_at = fields.Datetime(readonly=True)
    error = fields.Text(readonly=True)

    _sql_constraints = [
        ("idempotency_unique", "UNIQUE (idempotency_key)", "An outgoing mail is queued once."),
    ]

    def _default_idempotency_key(self):
        return uuid.uuid4().hex
