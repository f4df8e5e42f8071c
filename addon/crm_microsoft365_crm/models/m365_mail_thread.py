from odoo import fields, models


class M365MailThread(models.Model):
    _inherit = "m365.mail.thread"

    m365_lead_ids = fields.Many2many(
        "crm.lead",
        "crm_lead_m365_thread_rel",
        "thread_id",
        "lead_id",
        string="Opportunities",
        readonly=True,
        help="Opportunities this thread was linked to (Create or Link to Opportunity).",
    )

    def _m365_external_people(self):
        """(contact, company) of the thread's outside world: the first matched person who is
        no user of this database, in the order the thread's messages name them, and their
        company (or the first matched company)."""
        self.ensure_one()
        internal = self.env["res.users"].sudo().search([("share", "=", False)]).partner_id
        messages = self.message_ids.sorted(lambda m: (m.date or fields.Datetime.now(), m.id))
        contact = self.env["res.partner"]
        company = self.env["res.partner"]
        for participant in messages.participant_ids:
            if not contact and participant.partner_id and participant.partner_id not in internal:
                contact = participant.partner_id
            if not company and participant.company_partner_id:
                company = participant.company_partner_id
        if contact and contact.commercial_partner_id != contact:
            company = contact.commercial_partner_id
        return contact, company

    def _m365_external_address(self):
        """The first address of the thread that no user of this database has."""
        self.ensure_one()
        internal = {a.address_normalized for a in self.env["m365.account"].sudo().search([]) if a.address_normalized}
        internal |= {
            (u.email or "").strip().casefold() for u in self.env["res.users"].sudo().search([("share", "=", False)])
        }
        messages = self.message_ids.sorted(lambda m: (m.date or fields.Datetime.now(), m.id))
        for participant in messages.participant_ids:
            if participant.address not in internal:
                return participant.display_address()
        return False

    def action_m365_create_opportunity(self):
        """A new opportunity for the thread's external contact and company, titled by its
        subject, with the thread linked."""
        self.ensure_one()
        contact, company = self._m365_external_people()
        context = {
            "default_type": "opportunity",
            "default_name": self.subject or self.env._("Opportunity"),
            "default_m365_linked_thread_ids": [fields.Command.set(self.ids)],
        }
        if contact or company:
            context["default_partner_id"] = (contact or company).id
        else:
            address = self._m365_external_address()
            if address:
                context["default_email_from"] = address
        if company:
            context["default_partner_name"] = company.name
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("New Opportunity"),
            "res_model": "crm.lead",
            "view_mode": "form",
            "views": [(self.env.ref("crm.crm_lead_view_form").id, "form")],
            "target": "current",
            "context": context,
        }

    def action_m365_link_opportunity(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Link to Opportunity"),
            "res_model": "m365.thread.link.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {"default_thread_id": self.id},
        }
