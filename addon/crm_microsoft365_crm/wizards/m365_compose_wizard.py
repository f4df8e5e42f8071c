from odoo import fields, models


class M365ComposeWizard(models.TransientModel):
    _inherit = "m365.compose.wizard"

    m365_lead_id = fields.Many2one("crm.lead", string="Opportunity", readonly=True)

    def _outbox_values(self):
        values = super()._outbox_values()
        values["m365_lead_id"] = self.m365_lead_id.id or False
        return values
