from odoo import fields, models

from .m365_mail_message import ROLES


class M365MailParticipant(models.Model):
    """A participant of a stored message and the contact and company it matched."""

    _name = "m365.mail.participant"
    _description = "Outlook Email Participant"
    _order = "message_id, id"
    _rec_name = "address"

    message_id = fields.Many2one(
        "m365.mail.message", required=True, ondelete="cascade", index=True
    )
    role = fields.Selection(ROLES, required=True)
    address = fields.Char(required=True, help="Normalised (casefolded) address.")
    name = fields.Char()
    partner_id = fields.Many2one("res.partner", string="Contact", ondelete="set null", index=True)
    # Not ``company_id``: that name means res.company to Odoo's multi-company machinery.
    company_partner_id = fields.Many2one(
        "res.partner", string="Company", ondelete="set null", index=True
    )

    def display_address(self):
        self.ensure_one()
        return f"{self.name} <{self.address}>" if self.name else self.address
