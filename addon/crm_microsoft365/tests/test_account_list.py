from odoo.tests import tagged

from .common import M365Case


@tagged("post_install", "-at_install")
class TestAccountList(M365Case):
    """The accounts list says what needs attention, never a healthy cycle's summary."""

    def test_attention_is_the_problem_only(self):
        account = self.env["m365.account"].browse(self.account(owner="m365-test-a")["id"])
        self.api.set_account_status(
            {"account_id": account.id, "status": "active", "detail": "Imported 40 messages."}
        )
        account.invalidate_recordset()
        self.assertEqual(account.status_detail, "Imported 40 messages.")
        self.assertFalse(account.attention)
        problem = "Microsoft refused the grant: reconnect the account."
        self.api.set_account_status(
            {"account_id": account.id, "status": "needs_reconnect", "detail": problem}
        )
        account.invalidate_recordset()
        self.assertEqual(account.attention, problem)
