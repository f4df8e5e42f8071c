from odoo import Command, api, fields, models


class M365ThreadLinkWizard(models.TransientModel):
    _name = "m365.thread.link.wizard"
    _description = "Link an Outlook Thread to an Opportunity"

    thread_id = fields.Many2one("m365.mail.thread", required=True, readonly=True)
    lead_id = fields.Many2one(
        "crm.lead",
        string="Opportunity",
        required=True,
        domain="[('type', '=', 'opportunity')]",
    )

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        thread = self.env["m365.mail.thread"].browse(values.get("thread_id") or [])
        if thread and not values.get("lead_id"):
            # The one open opportunity of the thread's people, if there is exactly one.
            contact, company = thread._m365_external_people()
            people = (contact | company | thread.partner_ids).ids
            leads = self.env["crm.lead"].search(
                [("type", "=", "opportunity"), ("probability", "<", 100), ("partner_id", "in", people)], limit=2
            )
            if len(leads) == 1:
                values["lead_id"] = leads.id
        return values

    def action_link(self):
        self.ensure_one()
        self.lead_id.write({"m365_linked_thread_ids": [Command.link(self.thread_id.id)]})
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "success",
                "message": self.env._(
                    "%(thread)s is linked to %(lead)s.",
                    thread=self.thread_id.subject or self.env._("The thread"),
                    lead=self.lead_id.display_name,
                ),
                "next": {"type": "ir.actions.act_window_close"},
            },
        }
