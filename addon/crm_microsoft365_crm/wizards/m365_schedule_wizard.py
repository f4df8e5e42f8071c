from odoo import fields, models


class M365ScheduleWizard(models.TransientModel):
    _inherit = "m365.schedule.wizard"

    opportunity_id = fields.Many2one(
        "crm.lead",
        domain="[('type', '=', 'opportunity')]",
        help="The meeting is listed on this opportunity.",
    )

    def _event_values(self):
        values = super()._event_values()
        values["opportunity_id"] = self.opportunity_id.id or False
        return values
