"""A neutralized copy of the database (odoo-bin neutralize, a duplicate with "Neutralize", an
Odoo.sh staging branch) reads, sends and changes nothing in the real mailboxes: Odoo's own
``neutralize_database`` runs the addon's data/neutralize.sql, and the daemon's API then finds
every account paused and nothing to send, redeem or renew."""

from contextlib import closing
from datetime import date

from odoo.modules.neutralize import neutralize_database
from odoo.tests import tagged

from .common import INBOX, M365Case, unique, wire_message, wire_page
from .test_push import wire_subscription

JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "kid": "k1"}]}


@tagged("post_install", "-at_install")
class TestNeutralize(M365Case):
    def setUp(self):
        super().setUp()
        api = self.api
        self.active = self.env["m365.account"].browse(
            self.account(owner="m365-test-a", sealed_token_cache="eyJ.sealed.active")["id"]
        )
        self.broken = self.env["m365.account"].browse(
            self.account(owner="m365-test-b", sealed_token_cache="eyJ.sealed.broken")["id"]
        )
        api.set_account_status({"account_id": self.active.id, "status": "active", "detail": "ok"})
        api.set_account_status(
            {"account_id": self.broken.id, "status": "needs_reconnect", "detail": "Reconnect."}
        )
        self.lease = next(
            lease
            for lease in api.lease_accounts({"holder": "prod-worker", "limit": 10_000, "ttl_seconds": 600})
            if lease["account_id"] == self.active.id
        )
        self.active.sudo().write({"sync_requested": True})
        self.active._request_sync()
        self.subscription = wire_subscription(self.active.id)
        api.save_subscription({"subscription": self.subscription, "lease": self.lease})
        self.cursor = f"https://graph.example/delta?token={unique()}"
        api.store_mail_page(
            {"page": wire_page(self.active.id, upserts=[wire_message(unique("g"))], link=self.cursor),
             "lease": None}
        )
        api.publish_daemon_info({"info": {"jwks": JWKS, "kid": "k1", "version": "0.1"}})
        self.env["ir.config_parameter"].sudo().set_param("crm_microsoft365.client_id", "app-id-1")
        self.connect = self.env["m365.connect.request"].sudo().create(
            {"user_id": self.user_a.id, "sealed": "eyJ.sealed.code"}
        )
        self.env["m365.oauth.callback"]._keep(b"state-1", {"sealed": "eyJ.sealed.answer"})
        self.free_busy = self.env["m365.free.busy.request"].sudo().create(
            {"account_id": self.active.id, "day": date.today(), "addresses": "ann@example.com"}
        )
        Outbox = self.env["m365.outbox"].with_user(self.user_a)
        mail = {"account_id": self.active.id, "email_to": "ann@example.com", "body_html": "<p>Dear Ann</p>"}
        self.queued = Outbox.create(dict(mail, subject="Offer"))
        self.sending = Outbox.create(dict(mail, subject="Contract"))
        self.sent = Outbox.create(dict(mail, subject="Thanks"))
        for outgoing in (self.sending, self.sent):
            api.claim_outgoing({"mail_id": outgoing.id, "started": "2031-01-01T09:00:00+00:00"})
        # Sent and linked to its copy (a sent mail not linked yet is handed back for its link).
        api.update_outgoing(
            {
                "mail_id": self.sent.id,
                "state": "sent",
                "graph_id": unique("sent-"),
                "internet_message_id": f"<{unique('sent-')}@example.com>",
            }
        )

    def neutralized(self):
        """What the daemon's API answers after Odoo's neutralization of the whole database."""
        self.env.flush_all()
        neutralize_database(self.env.cr)
        # The SQL went around the ORM: drop its record cache and the ormcache of get_param.
        self.env.invalidate_all()
        self.registry.clear_cache()

    def test_a_neutralized_copy_pauses_every_account_and_sends_nothing(self):
        api = self.api
        params = self.env["ir.config_parameter"].sudo()
        # Before: the daemon would send, redeem, answer and renew all of this.
        outgoing = [m["id"] for m in api.outgoing_mail({"account_id": self.active.id})]
        self.assertEqual(sorted(outgoing), sorted((self.queued | self.sending).ids))
        self.assertIn(self.connect.id, [c["id"] for c in api.pending_connects()])
        self.assertIn(self.free_busy.id, [p["id"] for p in api.pending_free_busy()])
        self.assertTrue(self.env["res.config.settings"].create({}).m365_daemon_running)
        with closing(self.env.cr.savepoint()):
            self.neutralized()
            self.assertEqual(params.get_param("database.is_neutralized"), "true", "base's file ran too")

            # The original daemon's keys and heartbeats (before any call of the copy's
            # daemon beats again); the app's settings, which hold no secret, stay.
            self.assertFalse(params.get_param("crm_microsoft365.daemon_info"))
            self.assertFalse(params.get_param("crm_microsoft365.daemon_last_seen"))
            self.assertFalse(self.env["res.config.settings"].create({}).m365_daemon_running)
            self.assertEqual(params.get_param("crm_microsoft365.client_id"), "app-id-1")
            self.assertFalse(params.search_count([("key", "ilike", "secret"), ("key", "like", "crm_microsoft365.")]))

            # Every account paused with words, its grant and its lease gone.
            accounts = api.list_accounts()
            self.assertTrue(accounts)
            self.assertEqual({a["status"] for a in accounts}, {"paused"})
            mine = {a["id"]: a for a in accounts if a["id"] in (self.active.id, self.broken.id)}
            self.assertEqual(len(mine), 2)
            for wire in mine.values():
                self.assertIn("neutralized copy", wire["status_detail"])
                self.assertIn("Reconnect only if this copy should sync", wire["status_detail"])
                self.assertFalse(wire["sealed_token_cache"])
                self.assertFalse(wire["sync_requested_at"])
            for account in self.active | self.broken:
                self.assertFalse(account.has_token)
                self.assertEqual(account.attention, account.status_detail, "the list says why")
                self.assertFalse(account.sudo().lease_holder)
            self.assertFalse(self.active.sync_requested)
            self.assertEqual(
                api.lease_accounts({"holder": "copy-worker", "limit": 10_000, "ttl_seconds": 60}), []
            )

            # Queued and half-sent mail out of the queue with words; the text stays.
            self.assertEqual(api.outgoing_mail({"account_id": self.active.id}), [])
            self.assertEqual((self.queued | self.sending).mapped("state"), ["failed", "failed"])
            self.assertIn("Not sent from this copy", self.queued.error)
            self.assertIn("may have gone out from there", self.sending.error)
            self.assertEqual(self.queued.body_html, "<p>Dear Ann</p>")
            self.assertEqual(self.queued.subject, "Offer")
            self.assertEqual(self.sent.state, "sent")
            self.assertFalse(self.sent.error)

            # Push: the original's Graph subscriptions (and clientState hashes) are gone, so a
            # daemon of the copy neither renews nor deletes them.
            self.assertEqual(api.subscriptions({"account_id": self.active.id}), [])
            self.assertEqual(
                api.subscriptions_by_graph_id({"graph_ids": [self.subscription["graph_id"]]}), {}
            )

            # Sign-ins waiting for the daemon: failed, their sealed codes dropped.
            self.assertEqual(api.pending_connects(), [])
            self.assertEqual(self.connect.state, "failed")
            self.assertFalse(self.connect.sudo().sealed)
            self.assertIn("neutralized copy", self.connect.error)
            self.assertFalse(self.env["m365.oauth.callback"].sudo().search_count([]))
            self.assertNotIn(self.free_busy.id, [p["id"] for p in api.pending_free_busy()])
            self.assertEqual(self.free_busy.state, "failed")

            # Kept: the delta cursor (no credential; a reconnected copy resumes, never reimports).
            cursor = api.get_cursor({"account_id": self.active.id, "folder_id": INBOX})
            self.assertEqual(cursor["link"], self.cursor)
            self.env.flush_all()  # nothing of the copy left to write after the rollback

        # The savepoint rolled the neutralization back: the rest of the suite sees the database
        # as it was (Odoo's test savepoint does the same at the end of every test).
        self.env.invalidate_all()
        self.registry.clear_cache()
        self.assertFalse(params.get_param("database.is_neutralized"))
        self.assertEqual(self.active.status, "active")
        self.assertTrue(self.active.has_token)
        self.assertEqual(self.queued.state, "queued")
        self.assertEqual(len(api.subscriptions({"account_id": self.active.id})), 1)
        self.assertTrue(params.get_param("crm_microsoft365.daemon_info"))
