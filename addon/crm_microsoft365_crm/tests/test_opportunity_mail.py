from datetime import timedelta

from odoo.addons.crm_microsoft365.tests.common import INBOX, unique, wire_message, wire_page
from odoo.tests import Form, tagged

from .common import GlueCase, iso, utc_now


@tagged("post_install", "-at_install")
class TestOpportunityMail(GlueCase):
    def domain_mail(self, address, company, at):
        """Mail from an address no contact has, matched to ``company`` by its work domain (what
        the daemon's company matching sends)."""
        msg = wire_message(
            unique("g"),
            sender=address,
            to=("sam@contoso.example",),
            at=iso(at),
            subject="Website enquiry",
            conversation=unique("conv-"),
        )
        links = [
            {"role": "from", "address": address, "name": "", "partner_id": None, "company_id": company.id},
            {"role": "to", "address": "sam@contoso.example", "name": "", "partner_id": None, "company_id": None},
        ]
        page = wire_page(self.account.id, INBOX, [{"message": msg, "participants": links}])
        self.api.store_mail_page({"page": page})
        return self.env["m365.mail.thread"].search([("conversation_id", "=", msg["conversation_id"])])

    def test_emails_of_customer_company_domain_and_contacts_each_once_newest_first(self):
        now = utc_now()
        to_ann = self.mail([self.ann], subject="To Ann", at=now - timedelta(days=5))
        to_carl = self.mail([self.carl], subject="To Carl (same company)", at=now - timedelta(days=4))
        to_both = self.mail([self.ann, self.carl], subject="To both", at=now - timedelta(days=1))
        by_domain = self.domain_mail("info@acme.example", self.acme, now - timedelta(days=3))
        to_dora = self.mail([self.dora], subject="To Dora", at=now - timedelta(days=2))
        to_zed = self.mail([self.zed], subject="Not this deal", at=now - timedelta(hours=1))
        lead = self.opportunity("Acme rollout", self.ann).with_user(self.sales)
        # The customer (contact and company, the company's work domain); Dora is not on it yet.
        self.assertEqual(lead.m365_thread_ids.ids, (to_both | by_domain | to_carl | to_ann).ids)
        self.assertEqual(lead.m365_thread_count, 4)
        self.assertEqual(lead.m365_message_count, 4)
        # A contact linked to the deal adds her mail; each thread still once, newest first.
        lead.m365_contact_ids = self.dora
        lead.invalidate_recordset()
        self.assertEqual(lead.m365_thread_ids.ids, (to_both | to_dora | by_domain | to_carl | to_ann).ids)
        self.assertNotIn(to_zed, lead.m365_thread_ids)
        self.assertEqual(lead.m365_last_email_at, to_both.last_message_at)
        # The smart button opens the same threads.
        action = lead.action_m365_open_threads()
        self.assertEqual(self.env["m365.mail.thread"].search(action["domain"]), lead.m365_thread_ids)

    def test_a_lead_without_customer_shows_the_mail_of_its_address(self):
        thread = self.mail([self.dora], subject="Dora asks")
        lead = self.opportunity("Dora's project", email_from="Dora <DORA@free.example>").with_user(self.sales)
        self.assertFalse(lead.partner_id)
        self.assertEqual(lead.m365_thread_ids, thread)
        self.assertFalse(self.opportunity("Nobody").with_user(self.sales).m365_thread_ids)

    def test_mail_no_account_holds_any_more_is_not_shown(self):
        thread = self.mail([self.ann])
        lead = self.opportunity("Acme rollout", self.ann)
        self.assertEqual(lead.with_user(self.sales).m365_thread_ids, thread)
        thread.message_ids.link_ids.sudo().unlink()
        lead.invalidate_recordset()
        self.assertFalse(lead.with_user(self.sales).m365_thread_ids)
        self.assertFalse(lead.with_user(self.sales).m365_last_email_at)

    def test_compose_from_the_opportunity_prefills_and_links_the_sent_thread(self):
        lead = self.opportunity("Acme rollout", self.ann).with_user(self.sales)
        action = lead.action_m365_compose()
        self.assertEqual(action["res_model"], "m365.compose.wizard")
        form = Form(self.env["m365.compose.wizard"].with_user(self.sales).with_context(**action["context"]))
        self.assertEqual(form.email_to, '"Ann Acme" <ann@acme.example>')
        self.assertEqual(form.subject, "Acme rollout")
        # Sent to someone the opportunity does not know: the thread shows because it was sent from it.
        # (To holds contacts: a typed new address is made one by the tags widget's quick create.)
        Partner = self.env["res.partner"].with_user(self.sales).with_context(force_email=True)
        form.recipient_ids.clear()
        form.recipient_ids.add(Partner.browse(Partner.name_create("procurement@elsewhere.example")[0]))
        form.body_html = "<p>Our offer</p>"
        form.save().action_send()
        mail = self.env["m365.outbox"].search([("m365_lead_id", "=", lead.id)])
        self.assertEqual((len(mail), mail.partner_id), (1, self.ann))
        self.assertEqual(mail.email_to, "procurement@elsewhere.example")
        self.assertFalse(lead.m365_thread_ids)
        sent = wire_message(
            "AAMkSent1",
            "<sent1@contoso>",
            folder="AAMkSent",
            conversation="conv-sent-1",
            sender="sam@contoso.example",
            to=("procurement@elsewhere.example",),
            subject="Acme rollout",
            at=iso(utc_now()),
        )
        self.api.store_mail_page({"page": wire_page(self.account.id, "AAMkSent", [sent])})
        self.api.update_outgoing(
            {
                "mail_id": mail.id,
                "state": "sent",
                "graph_id": "AAMkSent1",
                "internet_message_id": "<sent1@contoso>",
                "conversation_id": "conv-sent-1",
            }
        )
        lead.invalidate_recordset()
        self.assertEqual(lead.m365_thread_ids.conversation_id, "conv-sent-1")
        self.assertTrue(lead.m365_last_email_at)

    def test_compose_to_the_address_of_a_lead_without_contact(self):
        lead = self.opportunity("Website lead", email_from="new.person@startup.example").with_user(self.sales)
        form = Form(
            self.env["m365.compose.wizard"].with_user(self.sales).with_context(**lead.action_m365_compose()["context"])
        )
        self.assertEqual(form.email_to, "new.person@startup.example")
