from odoo import fields, models


class M365MailAttachment(models.Model):
    """What an attachment is (name, size, type); its content stays in Outlook."""

    _name = "m365.mail.attachment"
    _description = "Outlook Email Attachment"
    _order = "message_id, id"

    message_id = fields.Many2one(
        "m365.mail.message", required=True, ondelete="cascade", index=True
    )
    name = fields.Char(required=True)
    size = fields.Integer()
    content_type = fields.Char()
