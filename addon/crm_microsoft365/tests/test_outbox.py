import base64
from datetime import date, datetime, timedelta

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import new_test_user, tagged

from odoo import fields

from ..models.m365_outbox import LINK_FOR
from .common import SENT, M365Case, unique, wire_message, wire_page, wire_stored


@tagged("post_install", "-at_install")
class TestOutbox(M365Case):
    def setUp(self):
        super().setUp()
        self.account_a = self.env["m365.account"].browse(self.account(owner="m365-test-a")["id"])
        self.account_b = self.env["m365.account"].browse(self.account(owner="m365-test-b")["id"])
        self.Outbox_a = self.env["m365.outbox"].with_user(self.user_a)

    def queue(self, user=None, account=None, **values):
        user = user or self.user_a
        vals = {
            "account_id": (account or self.account_a).id,
            "email_to": "ann@example.com",
            "subject": "Offer",
            "body_html": "<p>Hello Ann</p>",
        }
        vals.update(values)
        return self.env["m365.outbox"].with_user(user).create(vals)

    # --- rules and validation ------------------------------------------------------------------

    def test_user_queues_through_own_account(self):
        mail = self.queue()
        self.assertEqual(mail.state, "queued")
        self.assertEqual(mail.requested_by, "m365-test-a")
        self.assertEqual(mail.user_id, self.user_a)

    def test_a_create_odoo_runs_again_after_a_serialization_failure_queues(self):
        # Odoo retries the whole call with the same values after PostgreSQL's "could not
        # serialize access": the first attempt must not have changed them.
        vals = {
            "account_id": self.account_a.id,
            "email_to": "ann@example.com",
            "subject": "Offer",
            "body_html": "<p>Hello Ann</p>",
        }
        self.Outbox_a.create([vals])
        self.assertNotIn("requested_by", vals)
        again = self.Outbox_a.create([vals])
        self.assertEqual(again.requested_by, "m365-test-a")

    def test_user_cannot_queue_through_someone_elses_account(self):
        with self.assertRaises(AccessError):
            self.queue(account=self.account_b)
        manager = new_test_user(
            self.env,
            login=unique("mgr-"),
            groups="base.group_user,crm_microsoft365.group_m365_manager",
        )
        with self.assertRaises(AccessError):
            self.queue(user=manager, account=self.account_b)
        # ... but a manager sees every outbox.
        mine = self.queue()
        self.assertIn(mine, self.env["m365.outbox"].with_user(manager).search([]))

    def test_users_see_only_their_own_outbox(self):
        mine = self.queue()
        theirs = self.queue(user=self.user_b, account=self.account_b)
        self.assertEqual(self.Outbox_a.search([]), mine.with_user(self.user_a))
        with self.assertRaises(AccessError):
            theirs.with_user(self.user_a).read(["subject"])
        with self.assertRaises(AccessError):
            mine.with_user(self.user_a).write({"account_id": self.account_b.id})

    def test_addresses_are_validated_with_clear_words(self):
        with self.assertRaisesRegex(ValidationError, r"To: not a valid email address: 'ann@'"):
            self.queue(email_to="ann@, bob@example.com")
        with self.assertRaisesRegex(
            ValidationError, r"Cc: not a valid email address: 'no address'"
        ):
            self.queue(email_cc="no address")
        with self.assertRaisesRegex(ValidationError, "no recipient"):
            self.queue(email_to="")
        with self.assertRaisesRegex(ValidationError, "not a valid email address"):
            self.queue().write({"email_bcc": "x@@y"})
        mail = self.queue(
            email_to='"Doe, Ann" <ann@example.com>; bob@example.com', email_bcc="c@example.org"
        )
        [wire] = [
            m
            for m in self.api.outgoing_mail({"account_id": self.account_a.id})
            if m["id"] == mail.id
        ]
        self.assertEqual(
            wire["to"],
            [
                {"address": "ann@example.com", "name": "Doe, Ann"},
                {"address": "bob@example.com", "name": ""},
            ],
        )
        self.assertEqual(wire["bcc"], [{"address": "c@example.org", "name": ""}])

    def test_users_cannot_write_the_daemons_fields(self):
        mail = self.queue().with_user(self.user_a)
        for values in (
            {"state": "sent"},
            {"graph_id": "x"},
            {"error": "x"},
            {"requested_by": "m365-test-b"},
        ):
            with self.assertRaises(AccessError):
                mail.write(values)
        with self.assertRaises(AccessError):
            self.queue(state="sent")
        with self.assertRaises(AccessError):
            self.queue(internet_message_id="<x@y>")
        # requested_by is who queued it, whatever was sent.
        with self.assertRaises(AccessError):
            self.queue(requested_by="m365-test-b")

    def test_retry_only_failed_mail_of_ones_own(self):
        mail = self.queue()
        self.api.update_outgoing(
            {"mail_id": mail.id, "state": "sending", "send_started_at": "2025-03-01T09:00:00+00:00"}
        )
        self.api.update_outgoing(
            {"mail_id": mail.id, "state": "failed", "error": "Graph refused it."}
        )
        manager = new_test_user(
            self.env,
            login=unique("mgr-"),
            groups="base.group_user,crm_microsoft365.group_m365_manager",
        )
        with self.assertRaises(AccessError):
            mail.with_user(manager).action_retry()
        mail.with_user(self.user_a).action_retry()
        self.assertEqual((mail.state, mail.error, mail.send_started_at), ("queued", False, False))
        self.assertEqual(mail.attempts, 1)

    def test_no_change_once_on_its_way(self):
        mail = self.queue()
        self.api.update_outgoing({"mail_id": mail.id, "state": "sending"})
        with self.assertRaisesRegex(Exception, "no longer be changed"):
            mail.with_user(self.user_a).write({"subject": "Other"})

    def test_a_document_of_another_record_is_copied_not_taken(self):
        ann = self.partner("Ann", "ann@example.com")
        document = self.env["ir.attachment"].create(
            {"name": "terms.txt", "raw": b"terms", "res_model": "res.partner", "res_id": ann.id}
        )
        mail = self.queue(attachment_ids=[(6, 0, document.ids)])
        self.assertEqual((document.res_model, document.res_id), ("res.partner", ann.id))
        self.assertNotIn(document, mail.attachment_ids)
        self.assertEqual(mail.attachment_ids.mapped("raw"), [b"terms"])
        self.assertEqual(mail.attachment_ids.res_model, "m365.outbox")
        # Someone else's private upload cannot leave through A's mailbox.
        private = self.env["ir.attachment"].with_user(self.user_b).create({"name": "b.txt", "raw": b"b"})
        with self.assertRaises(AccessError):
            self.queue(attachment_ids=[(6, 0, private.ids)])

    def test_a_mail_being_sent_cannot_be_deleted(self):
        mail = self.queue()
        self.api.update_outgoing({"mail_id": mail.id, "state": "sending"})
        with self.assertRaisesRegex(Exception, "being sent right now"):
            mail.with_user(self.user_a).unlink()
        self.api.update_outgoing({"mail_id": mail.id, "state": "failed", "error": "x"})
        mail.with_user(self.user_a).unlink()
        self.assertFalse(mail.exists())

    # --- the daemon's RPC -----------------------------------------------------------------------

    def test_a_claim_takes_a_queued_mail_once(self):
        # Two workers with the same stale list (the soak against Odoo, seed 6041): one wins.
        mail = self.queue()
        started = "2026-12-06T03:50:00+00:00"
        self.assertIs(self.api.claim_outgoing({"mail_id": mail.id, "started": started}), True)
        self.assertEqual(
            (mail.state, mail.send_started_at, mail.attempts),
            ("sending", datetime(2026, 12, 6, 3, 50), 1),
        )
        later = "2026-12-06T03:51:00+00:00"
        self.assertIs(self.api.claim_outgoing({"mail_id": mail.id, "started": later}), False)
        self.assertEqual((mail.send_started_at, mail.attempts), (datetime(2026, 12, 6, 3, 50), 1))
        for state in ("sent", "failed"):
            self.api.update_outgoing({"mail_id": mail.id, "state": state, "error": "x"})
            self.assertIs(self.api.claim_outgoing({"mail_id": mail.id, "started": later}), False)
            self.assertEqual(mail.state, state)
        self.assertIs(self.api.claim_outgoing({"mail_id": 987654321, "started": later}), False)
        with self.assertRaisesRegex(Exception, "needs its start time"):
            self.api.claim_outgoing({"mail_id": mail.id, "started": False})

    def test_outgoing_mail_queued_and_sending_oldest_first_with_attachments(self):
        content = b"%PDF-1.4 offer \x00\xff"
        attachment = (
            self.env["ir.attachment"]
            .with_user(self.user_a)
            .create({"name": "offer.pdf", "raw": content, "mimetype": "application/pdf"})
        )
        first = self.queue(attachment_ids=[(6, 0, attachment.ids)])
        second = self.queue(subject="Second")
        sent = self.queue(subject="Done")
        self.api.update_outgoing(
            {
                "mail_id": second.id,
                "state": "sending",
                "send_started_at": "2025-03-01T09:00:00+00:00",
            }
        )
        self.api.update_outgoing({"mail_id": sent.id, "state": "sent"})
        self.queue(user=self.user_b, account=self.account_b)  # another account's

        answer = self.api.outgoing_mail({"account_id": self.account_a.id, "limit": 20})
        self.assertEqual([m["id"] for m in answer], [first.id, second.id])
        one = answer[0]
        self.assertEqual(one["state"], "queued")
        self.assertEqual(one["account_id"], self.account_a.id)
        self.assertEqual(one["subject"], "Offer")
        self.assertIn("Hello Ann", one["body_html"])
        self.assertEqual(one["requested_by"], "m365-test-a")
        self.assertIs(one["reply_to_graph_id"], False)  # None -> False (XML-RPC)
        self.assertIs(one["send_started_at"], False)
        self.assertEqual(
            one["attachments"],
            [
                {
                    "name": "offer.pdf",
                    "content_type": "application/pdf",
                    "content": base64.b64encode(content).decode(),
                }
            ],
        )
        self.assertEqual(base64.b64decode(one["attachments"][0]["content"]), content)
        # The upload now belongs to the outbox row.
        self.assertEqual((attachment.res_model, attachment.res_id), ("m365.outbox", first.id))
        self.assertEqual(answer[1]["state"], "sending")
        self.assertEqual(answer[1]["send_started_at"], "2025-03-01T09:00:00+00:00")
        self.assertEqual(answer[1]["attempts"], 1)
        self.assertEqual(
            len(self.api.outgoing_mail({"account_id": self.account_a.id, "limit": 1})), 1
        )
        with self.assertRaisesRegex(Exception, "M365:UnknownAccount:"):
            self.api.outgoing_mail({"account_id": 999999})

    def test_outgoing_mail_then_recent_sent_mail_whose_copy_is_not_linked(self):
        # The daemon looks for those copies again (the look right after the send can fail, and
        # its mail sync links only copies in synced folders); they stay "sent" all along.
        now = fields.Datetime.now()

        def sent(subject, started, **ids):
            mail = self.queue(subject=subject)
            self.api.update_outgoing(
                {
                    "mail_id": mail.id,
                    "state": "sending",
                    "send_started_at": started.isoformat() + "+00:00",
                }
            )
            self.api.update_outgoing({"mail_id": mail.id, "state": "sent", **ids})
            return mail

        unlinked = sent("Unlinked", now - timedelta(minutes=10))
        half = sent("Half linked", now - timedelta(minutes=20), graph_id="g-half")
        sent("Too old", now - LINK_FOR - timedelta(minutes=5))
        sent("Linked", now, graph_id="g-1", internet_message_id="<1@x>")
        queued = self.queue(subject="To send")

        answer = self.api.outgoing_mail({"account_id": self.account_a.id, "limit": 20})
        self.assertEqual([m["id"] for m in answer], [queued.id, unlinked.id, half.id])
        self.assertEqual([m["state"] for m in answer], ["queued", "sent", "sent"])
        only = self.api.outgoing_mail({"account_id": self.account_a.id, "limit": 1})
        self.assertEqual([m["id"] for m in only], [queued.id], "mail to send comes first")
        self.assertEqual(
            self.env["m365.outbox"].search_count(
                [("id", "=", unlinked.id), ("state", "in", ("queued", "sending"))]
            ),
            0,
            "the list's Waiting filter does not show it",
        )
        self.api.update_outgoing(
            {
                "mail_id": unlinked.id,
                "state": "sent",
                "graph_id": "g-2",
                "internet_message_id": "<2@x>",
            }
        )
        answer = self.api.outgoing_mail({"account_id": self.account_a.id, "limit": 20})
        self.assertEqual([m["id"] for m in answer], [queued.id, half.id])
        self.assertEqual(unlinked.state, "sent")

    def test_update_outgoing_coalesces_ids(self):
        mail = self.queue()
        self.assertIs(
            self.api.update_outgoing(
                {
                    "mail_id": mail.id,
                    "state": "sending",
                    "send_started_at": "2025-03-01T09:00:00+00:00",
                    "graph_id": None,
                    "error": None,
                }
            ),
            True,
        )
        self.assertEqual((mail.state, mail.attempts), ("sending", 1))
        self.assertEqual(mail.send_started_at, datetime(2025, 3, 1, 9, 0))
        self.api.update_outgoing({"mail_id": mail.id, "state": "sent"})
        self.assertEqual(mail.state, "sent")
        self.assertTrue(mail.sent_at)
        self.assertEqual(mail.send_started_at, datetime(2025, 3, 1, 9, 0))  # kept
        self.api.update_outgoing(
            {
                "mail_id": mail.id,
                "state": "sent",
                "graph_id": "AAMkSentCopy",
                "internet_message_id": "<copy@contoso>",
                "conversation_id": "conv-x",
            }
        )
        # A later step without ids (False over XML-RPC) keeps them.
        self.api.update_outgoing(
            {
                "mail_id": mail.id,
                "state": "sent",
                "graph_id": False,
                "internet_message_id": False,
                "conversation_id": False,
                "error": False,
                "send_started_at": False,
            }
        )
        self.assertEqual(
            (mail.graph_id, mail.internet_message_id, mail.conversation_id),
            ("AAMkSentCopy", "<copy@contoso>", "conv-x"),
        )
        self.assertEqual(mail.attempts, 1)  # only queued -> sending counts
        # failed: the error as given; a later step without one clears it
        other = self.queue()
        self.api.update_outgoing(
            {"mail_id": other.id, "state": "failed", "error": "Not a valid email address."}
        )
        self.assertEqual((other.state, other.error), ("failed", "Not a valid email address."))
        self.api.update_outgoing({"mail_id": other.id, "state": "sent"})
        self.assertFalse(other.error)
        # a row deleted meanwhile is ignored; a bad state is refused
        self.assertIs(self.api.update_outgoing({"mail_id": 999999, "state": "sent"}), True)
        with self.assertRaisesRegex(Exception, "M365:BadRequest:"):
            self.api.update_outgoing({"mail_id": other.id, "state": "lost"})

    def test_sent_copy_links_message_and_thread(self):
        mail = self.queue()
        msg = wire_message(
            "AAMkSentCopy1",
            "<sent1@contoso>",
            folder=SENT,
            conversation="conv-sent-1",
            sender=self.account_a.address,
            to=("ann@example.com",),
        )
        ann = self.partner("Ann", "ann@example.com")
        self.api.store_mail_page(
            {
                "page": wire_page(
                    self.account_a.id, SENT, [wire_stored(msg, {"ann@example.com": ann})]
                )
            }
        )
        self.api.update_outgoing(
            {
                "mail_id": mail.id,
                "state": "sent",
                "graph_id": "AAMkSentCopy1",
                "internet_message_id": "<sent1@contoso>",
                "conversation_id": "conv-sent-1",
            }
        )
        mine = mail.with_user(self.user_a)
        self.assertEqual(mine.sent_message_id.internet_message_id, "<sent1@contoso>")
        self.assertEqual(mine.thread_id.conversation_id, "conv-sent-1")

    def test_rpc_refused_for_ordinary_users(self):
        api = self.env["m365.daemon.api"].with_user(self.user_a)
        mail = self.queue()
        calls = [
            ("outgoing_mail", {"account_id": self.account_a.id}),
            ("update_outgoing", {"mail_id": mail.id, "state": "sent"}),
            ("pending_free_busy", {}),
            ("store_free_busy", {"request_id": 1, "results": []}),
        ]
        for method, payload in calls:
            with self.assertRaises(AccessError, msg=method):
                getattr(api, method)(payload)
        self.assertEqual(mail.state, "queued")

    # --- free/busy ------------------------------------------------------------------------------

    def test_free_busy_request_and_answer(self):
        Request = self.env["m365.free.busy.request"].with_user(self.user_a)
        request = Request._for(
            self.account_a.with_user(self.user_a),
            date(2025, 3, 31),
            "Europe/Berlin",
            ["Ann@Example.com", "bob@example.com", "ann@example.com"],
        )
        self.assertEqual(request.state, "pending")
        self.assertEqual(request.address_list(), ["ann@example.com", "bob@example.com"])
        # The same question again is the same request.
        self.assertEqual(
            Request._for(
                self.account_a,
                date(2025, 3, 31),
                "Europe/Berlin",
                ["bob@example.com", "ann@example.com"],
            ),
            request,
        )
        # Another user sees neither the question nor can ask through A's account.
        self.assertFalse(
            self.env["m365.free.busy.request"]
            .with_user(self.user_b)
            .search([("id", "=", request.id)])
        )
        with self.assertRaises(AccessError):
            self.env["m365.free.busy.request"].with_user(self.user_b).create(
                {"account_id": self.account_a.id, "day": "2025-03-31", "addresses": "x@example.com"}
            )

        pending = [p for p in self.api.pending_free_busy({}) if p["id"] == request.id]
        self.assertEqual(
            pending,
            [
                {
                    "id": request.id,
                    "account_id": self.account_a.id,
                    "addresses": ["ann@example.com", "bob@example.com"],
                    "day": "2025-03-31",
                    "time_zone": "Europe/Berlin",
                    # Berlin is on summer time from 30 March 2025: the day starts at 22:00 UTC.
                    "start": "2025-03-30T22:00:00+00:00",
                    "end": "2025-03-31T22:00:00+00:00",
                }
            ],
        )
        self.assertIs(
            self.api.store_free_busy(
                {
                    "request_id": request.id,
                    "results": [
                        {
                            "address": "ann@example.com",
                            "error": None,
                            "slots": [
                                {
                                    "start": "2025-03-31T08:00:00+00:00",
                                    "end": "2025-03-31T09:00:00+00:00",
                                    "status": "busy",
                                },
                                {
                                    "start": "2025-03-31T12:00:00+00:00",
                                    "end": "2025-03-31T12:30:00+00:00",
                                    "status": "tentative",
                                },
                            ],
                        },
                        {
                            "address": "Bob@Example.com",
                            "slots": [],
                            "error": "The user was not found.",
                        },
                    ],
                }
            ),
            True,
        )
        self.assertEqual(request.state, "done")
        rows = request.with_user(self.user_a).result_ids
        self.assertEqual(
            [(r.address, r.start, r.status, r.error or None) for r in rows],
            [
                ("ann@example.com", datetime(2025, 3, 31, 8, 0), "busy", None),
                ("ann@example.com", datetime(2025, 3, 31, 12, 0), "tentative", None),
                ("bob@example.com", False, False, "The user was not found."),
            ],
        )
        self.assertNotIn(request.id, [p["id"] for p in self.api.pending_free_busy({})])
        # A fresh answer is reused for the same question.
        self.assertEqual(
            Request._for(
                self.account_a,
                date(2025, 3, 31),
                "Europe/Berlin",
                ["ann@example.com", "bob@example.com"],
            ),
            request,
        )
        # The daemon could not ask at all: the request fails with its words.
        other = Request._for(self.account_a, date(2025, 4, 1), "UTC", ["ann@example.com"])
        self.api.store_free_busy(
            {"request_id": other.id, "results": [], "error": "Reconnect the account."}
        )
        self.assertEqual((other.state, other.error), ("failed", "Reconnect the account."))
        # An answer for a request that is gone is ignored.
        self.assertIs(self.api.store_free_busy({"request_id": 999999, "results": []}), True)
