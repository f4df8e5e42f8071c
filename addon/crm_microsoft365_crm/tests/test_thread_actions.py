from odoo.tests import Form, tagged

from .common import GlueCase


@tagged("post_install", "-at_install")
class TestThreadActions(GlueCase):
    def test_create_opportunity_from_a_thread(self):
        thread = self.mail([self.ann, self.sales.partner_id], subject="Rollout for 40 seats")
        action = thread.with_user(self.sales).action_m365_create_opportunity()
        self.assertEqual((action["res_model"], action["target"]), ("crm.lead", "current"))
        form = Form(self.env["crm.lead"].with_user(self.sales).with_context(**action["context"]))
        self.assertEqual(form.name, "Rollout for 40 seats")
        self.assertEqual(form.partner_id, self.ann)  # the external contact, not the user
        self.assertEqual(form.email_from, "ann@acme.example")
        self.assertEqual(form.partner_name, "Acme Corp")
        self.assertEqual(form.m365_thread_count, 1)  # the Emails tab shows it before saving
        lead = form.save()
        self.assertEqual(lead.type, "opportunity")
        self.assertEqual(lead.m365_linked_thread_ids, thread)
        self.assertIn(thread, lead.m365_thread_ids)
        self.assertEqual(thread.with_user(self.sales).m365_lead_ids, lead)

    def test_create_opportunity_from_a_thread_with_an_unknown_address(self):
        thread = self.mail([self.ann])
        thread.message_ids.participant_ids.sudo().write({"partner_id": False, "company_partner_id": False})
        context = thread.with_user(self.sales).action_m365_create_opportunity()["context"]
        self.assertNotIn("default_partner_id", context)
        self.assertEqual(context["default_email_from"], "ann@acme.example")

    def test_link_a_thread_to_an_opportunity(self):
        thread = self.mail([self.dora], subject="Side question")
        deal = self.opportunity("Acme rollout", self.ann)
        self.assertNotIn(thread, deal.m365_thread_ids)
        action = thread.with_user(self.sales).action_m365_link_opportunity()
        form = Form(self.env[action["res_model"]].with_user(self.sales).with_context(**action["context"]))
        self.assertFalse(form.lead_id)  # Dora has no opportunity: nothing is guessed
        form.lead_id = deal
        done = form.save().action_link()
        self.assertIn("is linked to Acme rollout", done["params"]["message"])
        deal.invalidate_recordset()
        self.assertIn(thread, deal.m365_thread_ids)
        # The one open opportunity of the thread's contact is proposed.
        own = self.opportunity("Dora's site", self.dora)
        form = Form(self.env[action["res_model"]].with_user(self.sales).with_context(**action["context"]))
        self.assertEqual(form.lead_id, own)
