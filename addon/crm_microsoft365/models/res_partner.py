from odoo import api, fields, models

from .m365_tools import email_domain, normalize_email, website_domain


class ResPartner(models.Model):
    _inherit = "res.partner"

    # The daemon's own normalisation, stored and indexed, so a page's whole address set is
    # matched with one search (find_partners_by_emails / find_companies_by_domains).
    m365_email_normalized = fields.Char(
        compute="_compute_m365_keys", store=True, index=True, copy=False
    )
    m365_email_domain = fields.Char(compute="_compute_m365_keys", store=True, index=True)
    m365_website_domain = fields.Char(compute="_compute_m365_keys", store=True, index=True)
    m365_thread_ids = fields.Many2many(
        "m365.mail.thread",
        string="Emails",
        compute="_compute_m365_mail",
        help="Outlook threads with a message that matched this contact (for a company: it or "
        "its contacts), newest first.",
    )
    m365_thread_count = fields.Integer(string="Email Thread Count", compute="_compute_m365_mail")
    m365_message_count = fields.Integer(string="Email Count", compute="_compute_m365_mail")

    @api.depends("email", "website")
    def _compute_m365_keys(self):
        for partner in self:
            normalized = normalize_email(partner.email) if partner.email else None
            partner.m365_email_normalized = normalized or False
            partner.m365_email_domain = email_domain(normalized) or False
            partner.m365_website_domain = website_domain(partner.website) or False

    def _m365_mail_partners(self):
        """The partners whose mail shows on this one: itself, and a company's contacts."""
        self.ensure_one()
        if self.is_company:
            return self | self.with_context(active_test=False).child_ids
        return self

    @api.depends("is_company", "child_ids")
    def _compute_m365_mail(self):
        Thread = self.env["m365.mail.thread"]
        Message = self.env["m365.mail.message"]
        for partner in self:
            if not partner.id:
                partner.m365_thread_ids = Thread
                partner.m365_thread_count = partner.m365_message_count = 0
                continue
            ids = partner._m365_mail_partners().ids
            threads = Thread.search([("partner_ids", "in", ids)])
            partner.m365_thread_ids = threads
            partner.m365_thread_count = len(threads)
            partner.m365_message_count = Message.search_count(
                [
                    "|",
                    ("participant_ids.partner_id", "in", ids),
                    ("participant_ids.company_partner_id", "in", ids),
                ]
            )

    def action_m365_open_threads(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Emails of %(partner)s", partner=self.display_name),
            "res_model": "m365.mail.thread",
            "view_mode": "list,form",
            "domain": [("partner_ids", "in", self._m365_mail_partners().ids)],
            "context": {"create": False},
        }
