from datetime import timedelta

from odoo.addons.crm_microsoft365.tests.common import INBOX, unique, wire_message, wire_page, wire_spec, wire_stored
from odoo.tests import HttpCase, new_test_user, tagged

from .common import SALES, iso, utc_now


@tagged("post_install", "-at_install")
class TestOpportunityTours(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(cls.env, login="m365-crm-tour", groups=SALES, email="tour@contoso.example")
        daemon = new_test_user(
            cls.env, login="m365-crm-tour-daemon", groups="base.group_user,crm_microsoft365.group_m365_daemon"
        )
        cls.api = cls.env["m365.daemon.api"].with_user(daemon)
        spec = wire_spec(owner="m365-crm-tour", address="tour@contoso.example")
        cls.account_id = cls.api.upsert_account({"spec": spec})["id"]
        cls.company = cls.env["res.partner"].create({"name": "Tour Globex", "is_company": True})
        cls.ann = cls.env["res.partner"].create(
            {"name": "Tour Ann", "email": "ann@tour-globex.example", "parent_id": cls.company.id}
        )
        msg = wire_message(
            unique("g"),
            sender="ann@tour-globex.example",
            to=("tour@contoso.example",),
            subject="Pricing for 40 seats",
            body="<p>Could you send us a quote?</p>",
            conversation=unique("conv-"),
            at=iso(utc_now() - timedelta(days=2)),
        )
        stored = wire_stored(msg, {"ann@tour-globex.example": cls.ann})
        cls.api.store_mail_page({"page": wire_page(cls.account_id, INBOX, [stored])})
        cls.thread = cls.env["m365.mail.thread"].search([("conversation_id", "=", msg["conversation_id"])])

    def test_the_opportunitys_emails_tab_and_a_thread(self):
        lead = self.env["crm.lead"].create(
            {"name": "Globex rollout", "type": "opportunity", "partner_id": self.ann.id, "user_id": self.user.id}
        )
        self.start_tour(
            f"/odoo/action-crm.crm_lead_action_pipeline/{lead.id}", "crm_microsoft365_crm_emails", login="m365-crm-tour"
        )

    def test_schedule_meeting_from_an_opportunity(self):
        lead = self.env["crm.lead"].create(
            {"name": "Globex rollout", "type": "opportunity", "partner_id": self.ann.id, "user_id": self.user.id}
        )
        self.start_tour(
            f"/odoo/action-crm.crm_lead_action_pipeline/{lead.id}",
            "crm_microsoft365_crm_schedule",
            login="m365-crm-tour",
        )
        event = self.env["calendar.event"].search([("opportunity_id", "=", lead.id)])
        self.assertEqual(len(event), 1)
        self.assertEqual(event.name, "Globex rollout")
        self.assertIn(self.ann, event.partner_ids)

    def test_create_opportunity_from_a_thread(self):
        self.start_tour(
            f"/odoo/contacts/{self.ann.id}", "crm_microsoft365_crm_create_from_thread", login="m365-crm-tour"
        )
        lead = self.env["crm.lead"].search([("m365_linked_thread_ids", "in", self.thread.ids)])
        self.assertEqual(len(lead), 1)
        self.assertEqual((lead.name, lead.partner_id, lead.type), ("Pricing for 40 seats", self.ann, "opportunity"))
