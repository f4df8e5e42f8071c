"""store_mail_page's bulk writes (plain-row inserts, thread summaries in SQL) leave exactly what
the ORM's own computes would: a thread's stored summary is recomputed by the model and must
not change."""

from odoo.tests import tagged

from .common import INBOX, M365Case, unique, wire_message, wire_page, wire_stored

SUMMARY = ("subject", "last_message_at", "message_count", "participants", "partner_ids")


@tagged("post_install", "-at_install")
class TestPageWriterBulk(M365Case):
    def summaries(self, threads):
        threads.invalidate_recordset()
        return {
            t.id: (
                t.subject,
                t.last_message_at,
                t.message_count,
                t.participants,
                sorted(t.partner_ids.ids),
            )
            for t in threads
        }

    def recomputed(self, threads):
        """The same threads' summaries as m365.mail.thread._compute_summary makes them."""
        for name in SUMMARY:
            self.env.add_to_compute(threads._fields[name], threads)
        threads.flush_recordset()
        return self.summaries(threads)

    def test_summaries_participants_and_links_match_the_orm(self):
        account = self.account()
        domain = f"{unique('acme')}.example"
        company = self.partner("Acme", f"info@{domain}", is_company=True)
        ann = self.partner("Ann", f"ann@{domain}", parent_id=company.id)
        known = {p.email.casefold(): p for p in (company, ann)}
        conv = unique("conv-")
        mails = [
            # the thread's subject is its earliest message's with one; an undated one is last
            wire_message(unique("g"), conversation=conv, subject="", at="2025-03-01T08:00:00+00:00"),
            wire_message(
                unique("g"),
                conversation=conv,
                subject="Offer",
                sender=ann.email.upper(),
                to=("Zed@contoso.example", "bob@contoso.example"),
                at="2025-03-01T09:00:00+00:00",
            ),
            dict(wire_message(unique("g"), conversation=conv, subject="Undated"), received_at=None, sent_at=None),
            # no conversation: a thread of its own
            wire_message(unique("g"), conversation=None, subject="Alone", to=(company.email,)),
        ]
        for mail in mails[:2]:
            mail["attachments"] = [{"name": "offer.pdf", "size": 1234, "content_type": "application/pdf"}]
            mail["has_attachments"] = True
        result = self.api.store_mail_page(
            {"page": wire_page(account["id"], INBOX, [wire_stored(m, known) for m in mails])}
        )
        self.assertEqual((result["created"], result["linked"]), (4, 4))
        Message = self.env["m365.mail.message"]
        stored = Message.search([("link_ids.account_id", "=", account["id"])])
        self.assertEqual(len(stored), 4)
        self.assertEqual(len(stored.thread_id), 2)
        alone = stored.filtered(lambda m: m.subject == "Alone")
        self.assertFalse(alone.thread_id.conversation_id)
        self.assertEqual(alone.thread_id.message_ids, alone)
        offer = stored.filtered(lambda m: m.subject == "Offer")
        self.assertEqual(offer.attachment_ids.mapped("name"), ["offer.pdf"])
        self.assertEqual(offer.attachment_ids.size, 1234)
        self.assertEqual(sorted(offer.participant_ids.mapped("address")), sorted(
            [ann.email.casefold(), "zed@contoso.example", "bob@contoso.example"]
        ))
        self.assertEqual(offer.participant_ids.filtered(lambda p: p.role == "from").partner_id, ann)
        self.assertEqual(offer.sender_display, f"Ann <{ann.email.upper()}>")
        self.assertIn("zed@contoso.example", offer.to_display)
        self.assertEqual(str(offer.date), "2025-03-01 09:00:00")
        link = offer.link_ids
        self.assertEqual((link.account_id.id, link.folder_id, link.change_key), (account["id"], INBOX, "ck1"))
        self.assertTrue(link.create_uid and link.create_date)
        threads = stored.thread_id
        before = self.summaries(threads)
        shared = before[offer.thread_id.id]
        self.assertEqual((shared[0], shared[2]), ("Offer", 3))
        self.assertIn(ann.id, shared[4])
        self.assertIn(company.id, shared[4])
        self.assertEqual(before, self.recomputed(threads))

        # A later page adds an earlier message to the thread and replaces one's participants.
        earlier = wire_message(
            unique("g"), conversation=conv, subject="First", to=("amy@contoso.example",), at="2025-02-01T08:00:00+00:00"
        )
        changed = dict(mails[1], to=["carl@contoso.example"], change_key="ck2")
        changed["to"] = [{"address": "carl@contoso.example", "name": ""}]
        result = self.api.store_mail_page(
            {"page": wire_page(account["id"], INBOX, [wire_stored(earlier), wire_stored(changed, known)])}
        )
        self.assertEqual((result["created"], result["updated"]), (1, 1))
        after = self.summaries(threads)
        self.assertEqual(after[offer.thread_id.id][0], "First")
        self.assertIn("carl@contoso.example", after[offer.thread_id.id][3])
        self.assertNotIn("zed@contoso.example", after[offer.thread_id.id][3])
        self.assertEqual(after, self.recomputed(threads))

    def test_a_hostile_body_is_sanitised_once_and_stays_sanitised(self):
        account = self.account()
        body = '<p onclick="steal()">Hi</p><script>alert(1)</script><div style="position:fixed">x</div>'
        self.api.store_mail_page({"page": wire_page(account["id"], INBOX, [wire_message(unique("g"), body=body)])})
        message = self.env["m365.mail.message"].search([("link_ids.account_id", "=", account["id"])])
        for needle in ("onclick", "<script", "position"):
            self.assertNotIn(needle, message.body_html)
        self.assertIn("Hi", message.body_html)
