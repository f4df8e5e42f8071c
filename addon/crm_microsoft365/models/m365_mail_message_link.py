from odoo import fields, models


class M365MailMessageLink(models.Model):
    """Where a stored message lives: one (account, immutable Graph id) in one folder."""

    _name = "m365.mail.message.link"
    _description = "Outlook Email in a Mailbox Folder"
    _order = "id"
    _rec_name = "graph_id"

    message_id = fields.Many2one(
        "m365.mail.message", required=True, ondelete="cascade", index=True
    )
    account_id = fields.Many2one("m365.account", required=True, ondelete="cascade", index=True)
    folder_id = fields.Char(string="Graph Folder ID", required=True, index=True)
    graph_id = fields.Char(string="Immutable ID", required=True)
    change_key = fields.Char()
    # The last full round of its folder that listed it (or that was open when it entered the
    # folder): a completed round settles the links it left behind.
    round_seen = fields.Integer(default=0)

    _sql_constraints = [
        (
            "account_graph_unique",
            "UNIQUE (account_id, graph_id)",
            "An immutable id is linked once per account.",
        ),
    ]
