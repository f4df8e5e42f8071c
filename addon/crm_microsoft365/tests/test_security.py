from odoo.exceptions import AccessError
from odoo.tests import tagged

from .common import INBOX, M365Case, unique, wire_message, wire_page


@tagged("post_install", "-at_install")
class TestSecurity(M365Case):
    def setUp(self):
        super().setUp()
        self.account_a = self.env["m365.account"].browse(self.account(owner="m365-test-a")["id"])
        self.account_b = self.env["m365.account"].browse(self.account(owner="m365-test-b")["id"])

    def test_users_see_only_their_own_accounts(self):
        Account = self.env["m365.account"].with_user(self.user_a)
        self.assertEqual(Account.search([]), self.account_a.with_user(self.user_a))
        with self.assertRaises(AccessError):
            self.account_b.with_user(self.user_a).read(["address"])
        manager = self.env["res.users"].create(
            {
                "name": "Manager",
                "login": unique("mgr-"),
                "groups_id": [
                    (6, 0, [self.env.ref("base.group_user").id, self.env.ref("crm_microsoft365.group_m365_manager").id])
                ],
            }
        )
        self.assertLessEqual(
            self.account_a | self.account_b, self.env["m365.account"].with_user(manager).search([])
        )

    def test_sealed_token_is_for_the_daemon_only(self):
        mine = self.account_a.with_user(self.user_a)
        with self.assertRaises(AccessError):
            mine.read(["sealed_token_cache"])
        self.assertNotIn("sealed_token_cache", mine.fields_get())
        self.assertTrue(mine.has_token)  # only that one exists is shown
        # The daemon reads it through its API only (its user has no access to the models).
        self.assertEqual(
            self.api.get_account({"account_id": self.account_a.id})["sealed_token_cache"], "eyJhbGciOiJ.sealed.1"
        )

    def test_ordinary_writes_to_daemon_fields_are_refused(self):
        mine = self.account_a.with_user(self.user_a)
        daemon_fields = (
            {"lease_token": 99},
            {"sealed_token_cache": "x"},
            {"status": "active"},
            {"last_sync_at": "2025-01-01 00:00:00"},
        )
        for values in daemon_fields:
            with self.assertRaises(AccessError):
                mine.write(values)
        folder_values = {"account_id": self.account_a.id, "folder_id": INBOX, "cursor_link": "x"}
        with self.assertRaises(AccessError):
            self.env["m365.account.folder"].with_user(self.user_a).create(folder_values)
        mine.write({"privacy": "metadata", "own_domains": "Contoso.com; www.contoso.de"})
        self.assertEqual(mine.own_domains, "contoso.com,contoso.de")

    def test_owner_buttons(self):
        mine = self.account_a.with_user(self.user_a)
        mine.action_pause()
        self.assertEqual(mine.status, "paused")
        mine.action_resume()
        self.assertEqual((mine.status, mine.sync_requested), ("connected", True))
        mine.action_disconnect()
        self.assertEqual(mine.status, "needs_reconnect")
        self.assertFalse(mine.has_token)
        with self.assertRaises(AccessError):
            self.account_b.with_user(self.user_a).action_pause()

    def test_mail_is_visible_while_an_account_holds_it(self):
        msg = wire_message(unique("g"))
        self.api.store_mail_page({"page": wire_page(self.account_b.id, INBOX, [msg])})
        Message = self.env["m365.mail.message"].with_user(self.user_a)
        found = Message.search([("internet_message_id", "=", msg["internet_message_id"])])
        self.assertEqual(len(found), 1)
        self.assertEqual(found.body_html, "<p>Hello</p>")
        with self.assertRaises(AccessError):
            found.write({"subject": "tampered"})
