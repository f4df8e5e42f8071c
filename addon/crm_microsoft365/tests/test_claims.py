"""Claims: of two daemon replicas, one answers a pending connect or free/busy request; a claim
expires so a dead replica's request moves on; a finished request is never claimed."""

from datetime import date, timedelta

from odoo.exceptions import AccessError
from odoo.tests import tagged
from odoo.tools import SQL

from odoo import fields

from .common import M365Case


@tagged("post_install", "-at_install")
class TestClaims(M365Case):
    def setUp(self):
        super().setUp()
        self.account_a = self.env["m365.account"].browse(self.account(owner="m365-test-a")["id"])

    def connect_request(self):
        return self.env["m365.connect.request"].create({"user_id": self.user_a.id, "sealed": "eyJ.x"})

    def free_busy_request(self):
        return self.env["m365.free.busy.request"].create(
            {
                "account_id": self.account_a.id,
                "day": date(2031, 1, 6),
                "time_zone": "Europe/Paris",
                "addresses": "ann@example.com",
            }
        )

    def claim_connect(self, request, holder, ttl=120):
        return self.api.claim_connect({"connect_id": request.id, "holder": holder, "ttl_seconds": ttl})

    def claim_free_busy(self, request, holder, ttl=60):
        return self.api.claim_free_busy({"request_id": request.id, "holder": holder, "ttl_seconds": ttl})

    def age_claim(self, request, seconds):
        """Make the request's claim ``seconds`` old (as if taken that long ago)."""
        request.flush_recordset()
        self.env.cr.execute(
            SQL(
                "UPDATE %s SET claimed_at = %s WHERE id = %s",
                SQL.identifier(request._table),
                fields.Datetime.now() - timedelta(seconds=seconds),
                request.id,
            )
        )
        request.invalidate_recordset()

    # --- connect requests -------------------------------------------------------------------------

    def test_one_of_two_holders_takes_a_connect(self):
        request = self.connect_request()
        self.assertIs(self.claim_connect(request, "host-a:1"), True)
        self.assertIs(self.claim_connect(request, "host-b:2"), False)
        # The holder may claim again (it renews its own claim), the other still may not.
        self.assertIs(self.claim_connect(request, "host-a:1"), True)
        self.assertIs(self.claim_connect(request, "host-b:2"), False)
        self.assertEqual(request.sudo().claimed_by, "host-a:1")
        self.assertTrue(request.sudo().claimed_at)

    def test_an_expired_connect_claim_is_handed_over(self):
        request = self.connect_request()
        self.assertIs(self.claim_connect(request, "host-a:1"), True)
        self.age_claim(request, 60)
        self.assertIs(self.claim_connect(request, "host-b:2", ttl=120), False)  # still A's
        self.age_claim(request, 121)
        self.assertIs(self.claim_connect(request, "host-b:2", ttl=120), True)  # A went quiet
        self.assertEqual(request.sudo().claimed_by, "host-b:2")
        self.assertIs(self.claim_connect(request, "host-a:1", ttl=120), False)

    def test_a_finished_connect_cannot_be_claimed(self):
        done, failed = self.connect_request(), self.connect_request()
        account = self.account(owner="m365-test-a")
        self.api.finish_connect({"connect_id": done.id, "account_id": account["id"], "error": None})
        self.api.finish_connect({"connect_id": failed.id, "account_id": None, "error": "no"})
        for request in (done, failed):
            self.assertIs(self.claim_connect(request, "host-a:1"), False)
            self.assertFalse(request.sudo().claimed_by)
        # Claimed, then finished: nobody may claim it again, not even an expired claim.
        request = self.connect_request()
        self.assertIs(self.claim_connect(request, "host-a:1"), True)
        self.api.finish_connect({"connect_id": request.id, "account_id": account["id"], "error": None})
        self.age_claim(request, 3600)
        self.assertIs(self.claim_connect(request, "host-b:2"), False)
        self.assertIs(self.claim_connect(request, "host-a:1"), False)

    def test_an_unknown_connect_or_no_holder_is_not_claimed(self):
        request = self.connect_request()
        self.assertIs(self.api.claim_connect({"connect_id": request.id + 10_000, "holder": "h"}), False)
        self.assertIs(self.api.claim_connect({"connect_id": request.id, "holder": ""}), False)
        # Without ttl_seconds the gateway's default applies (120 s).
        self.assertIs(self.api.claim_connect({"connect_id": request.id, "holder": "h"}), True)
        self.age_claim(request, 100)
        self.assertIs(self.api.claim_connect({"connect_id": request.id, "holder": "other"}), False)

    # --- free/busy requests -----------------------------------------------------------------------

    def test_one_of_two_holders_takes_a_free_busy_request(self):
        request = self.free_busy_request()
        self.assertIs(self.claim_free_busy(request, "host-a:1"), True)
        self.assertIs(self.claim_free_busy(request, "host-b:2"), False)
        self.assertIs(self.claim_free_busy(request, "host-a:1"), True)
        self.assertEqual(request.sudo().claimed_by, "host-a:1")

    def test_an_expired_free_busy_claim_is_handed_over(self):
        request = self.free_busy_request()
        self.assertIs(self.claim_free_busy(request, "host-a:1", ttl=60), True)
        self.age_claim(request, 30)
        self.assertIs(self.claim_free_busy(request, "host-b:2", ttl=60), False)
        self.age_claim(request, 61)
        self.assertIs(self.claim_free_busy(request, "host-b:2", ttl=60), True)
        self.assertIs(self.claim_free_busy(request, "host-a:1", ttl=60), False)

    def test_an_answered_free_busy_request_cannot_be_claimed(self):
        answered, failed = self.free_busy_request(), self.free_busy_request()
        self.assertIs(self.claim_free_busy(answered, "host-a:1"), True)
        self.api.store_free_busy(
            {"request_id": answered.id, "results": [{"address": "ann@example.com", "slots": []}]}
        )
        self.api.store_free_busy({"request_id": failed.id, "results": [], "error": "reconnect"})
        self.assertEqual((answered.state, failed.state), ("done", "failed"))
        self.age_claim(answered, 3600)
        for request in (answered, failed):
            self.assertIs(self.claim_free_busy(request, "host-a:1"), False)
            self.assertIs(self.claim_free_busy(request, "host-b:2"), False)

    # --- who may claim, and who sees the claim ----------------------------------------------------

    def test_only_the_daemon_claims_and_sees_the_claim(self):
        connect, free_busy = self.connect_request(), self.free_busy_request()
        api_a = self.env["m365.daemon.api"].with_user(self.user_a)
        with self.assertRaises(AccessError):
            api_a.claim_connect({"connect_id": connect.id, "holder": "me", "ttl_seconds": 120})
        with self.assertRaises(AccessError):
            api_a.claim_free_busy({"request_id": free_busy.id, "holder": "me", "ttl_seconds": 60})
        self.assertIs(self.claim_connect(connect, "host-a:1"), True)
        self.assertIs(self.claim_free_busy(free_busy, "host-a:1"), True)
        # The fields are the daemon's group's only: the request's owner cannot read them.
        Request = self.env["m365.free.busy.request"].with_user(self.user_a)
        self.assertNotIn("claimed_by", Request.fields_get())
        with self.assertRaises(AccessError):
            Request.browse(free_busy.id).read(["claimed_by"])
        self.assertNotIn("claimed_by", self.env["m365.connect.request"].with_user(self.user_a).fields_get())
