from odoo.tests import HttpCase, new_test_user, tagged

from .common import INBOX, unique, wire_message, wire_page, wire_spec, wire_stored


@tagged("post_install", "-at_install")
class TestPartnerForm(HttpCase):
    def test_emails_tab_shows_the_thread(self):
        new_test_user(self.env, login="m365-tour", groups="base.group_user,base.group_partner_manager")
        daemon = new_test_user(
            self.env, login="m365-tour-daemon", groups="base.group_user,crm_microsoft365.group_m365_daemon"
        )
        api = self.env["m365.daemon.api"].with_user(daemon)
        account = api.upsert_account({"spec": wire_spec(owner="m365-tour")})
        company = self.env["res.partner"].create({"name": "Tour Acme", "is_company": True})
        ann = self.env["res.partner"].create(
            {"name": "Tour Ann", "email": "ann@tour-acme.example", "parent_id": company.id}
        )
        msg = wire_message(
            unique("g"), to=("ann@tour-acme.example",), body="<p>Hello from Alice</p>",
            conversation=unique("conv-"),
        )
        api.store_mail_page(
            {"page": wire_page(account["id"], INBOX, [wire_stored(msg, {"ann@tour-acme.example": ann})])}
        )
        self.start_tour(f"/odoo/contacts/{ann.id}", "crm_microsoft365_partner_emails", login="m365-tour")
        # A company shows its contacts' mail.
        self.start_tour(f"/odoo/contacts/{company.id}", "crm_microsoft365_partner_emails", login="m365-tour")
