from odoo import fields, models


class M365Outbox(models.Model):
    _inherit = "m365.outbox"

    m365_lead_id = fields.Many2one(
        "crm.lead",
        string="Opportunity",
        ondelete="set null",
        index="btree_not_null",
        help="Sent from this opportunity: the thread shows on it.",
    )
