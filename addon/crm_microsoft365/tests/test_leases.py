from datetime import timedelta

from odoo.exceptions import UserError
from odoo.tests import tagged

from odoo import SUPERUSER_ID, api

from .common import INBOX, M365Case, unique, wire_message, wire_page, wire_spec

T0 = "2031-01-01T09:00:00+00:00"


def at(seconds):
    from datetime import datetime

    return (datetime.fromisoformat(T0) + timedelta(seconds=seconds)).isoformat()


@tagged("post_install", "-at_install")
class TestLeases(M365Case):
    def claim(self, holder, accounts, now, ttl=60):
        ids = {a["id"] for a in accounts}
        leases = self.api.lease_accounts(
            {"holder": holder, "limit": 10_000, "ttl_seconds": ttl, "now": now}
        )
        return {lease["account_id"]: lease for lease in leases if lease["account_id"] in ids}

    def test_two_holders_never_share_and_expiry_hands_over(self):
        accounts = [self.account() for _ in range(3)]
        first = self.claim("worker-a", accounts, T0)
        self.assertEqual(set(first), {a["id"] for a in accounts})
        self.assertEqual(first[accounts[0]["id"]]["expires_at"], at(60))
        self.assertEqual(self.claim("worker-b", accounts, at(1)), {})
        later = self.claim("worker-b", accounts, at(61))
        lease = later[accounts[0]["id"]]
        self.assertGreater(lease["token"], first[accounts[0]["id"]]["token"])
        with self.assertRaisesRegex(UserError, "^M365:LeaseLost: "):
            self.api.renew_lease({"lease": first[accounts[0]["id"]], "ttl_seconds": 60, "now": at(61)})
        renewed = self.api.renew_lease({"lease": lease, "ttl_seconds": 60, "now": at(70)})
        self.assertEqual((renewed["token"], renewed["expires_at"]), (lease["token"], at(130)))

    def test_stale_lease_writes_nothing_and_release(self):
        account = self.account()
        stale = self.claim("worker-a", [account], T0)[account["id"]]
        current = self.claim("worker-b", [account], at(61))[account["id"]]
        page = wire_page(account["id"], INBOX, [wire_message(unique("g"))])
        with self.assertRaisesRegex(UserError, "^M365:LeaseLost: "):
            self.api.store_mail_page({"page": page, "lease": stale})
        self.assertEqual(self.api.count_messages({"account_id": account["id"]}), 0)
        self.assertEqual(self.api.store_mail_page({"page": page, "lease": current})["created"], 1)
        self.assertIs(self.api.release_lease({"lease": stale}), True)  # ignored
        self.assertEqual(self.claim("worker-c", [account], at(62)), {})
        self.api.release_lease({"lease": current})
        with self.assertRaisesRegex(UserError, "^M365:LeaseLost: "):
            self.api.renew_lease({"lease": current, "ttl_seconds": 60, "now": at(62)})
        self.assertIn(account["id"], self.claim("worker-c", [account], at(62)))

    def test_paused_accounts_are_never_leased(self):
        account = self.account()
        record = self.env["m365.account"].browse(account["id"])
        record.action_pause()
        self.assertEqual(self.claim("worker-a", [account], T0), {})
        # A cycle that was running when the owner paused does not undo the pause.
        self.api.set_account_status(
            {"account_id": account["id"], "status": "active", "synced_at": "2026-11-25T08:00:00+00:00"}
        )
        self.assertEqual(record.status, "paused")
        self.assertEqual(self.claim("worker-a", [account], T0), {})
        record.action_resume()
        self.assertIn(account["id"], self.claim("worker-a", [account], T0))

    def test_skip_locked_between_two_transactions(self):
        """Two daemons claiming at the same moment on two connections: the second skips the
        rows the first has locked (no wait, no overlap), then gets them once the first rolls
        back. Needs committed rows, so it works on its own cursors and cleans up after.

        The daemon is the addon's own technical user, committed at install: creating a user on
        a second cursor would wait forever in a CRM database, where the new user is added to
        the digest (``digest_digest``) row that this test's own transaction holds."""
        daemon_id = self.env.ref("crm_microsoft365.user_m365_daemon").id
        with self.registry.cursor() as cr0:
            env0 = api.Environment(cr0, SUPERUSER_ID, {})
            specs = [wire_spec() for _ in range(3)]
            accounts = env0["m365.account"].create(
                [
                    {key: s[key] for key in ("address", "tenant_id", "object_id")} | {"user_id": False}
                    for s in specs
                ]
            )
            mine = set(accounts.ids)
            cr0.commit()  # safe: test-owned rows on a separate cursor, deleted in `finally`
        def claimed(daemon_api, holder):
            request = {"holder": holder, "limit": 10_000, "ttl_seconds": 60, "now": "2099-01-01T00:00:00+00:00"}
            return {lease["account_id"] for lease in daemon_api.lease_accounts(request)}

        try:
            with self.registry.cursor() as cr1, self.registry.cursor() as cr2:
                api1 = api.Environment(cr1, daemon_id, {})["m365.daemon.api"]
                api2 = api.Environment(cr2, daemon_id, {})["m365.daemon.api"]
                got1 = claimed(api1, "a")
                got2 = claimed(api2, "b")
                self.assertEqual(got1 & mine, mine)
                self.assertEqual(got2 & mine, set())
                cr1.rollback()  # the first daemon dies before committing its claim
                cr2.rollback()
                got2 = claimed(api2, "b")
                self.assertEqual(got2 & mine, mine)
                cr2.rollback()
        finally:
            with self.registry.cursor() as cr0:
                env0 = api.Environment(cr0, SUPERUSER_ID, {})
                env0["m365.account"].browse(list(mine)).unlink()
                cr0.commit()  # safe: removes only the rows this test committed above
