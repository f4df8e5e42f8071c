from odoo import fields, models

DAEMON_GROUP = "crm_microsoft365.group_m365_daemon"


class M365ConnectRequest(models.Model):
    """An authorization the OAuth callback received, sealed to the daemon's public key.

    Odoo cannot open ``sealed`` (it holds no private key); the daemon redeems it and closes
    the request with the account it became, or with words saying why not."""

    _name = "m365.connect.request"
    _description = "Microsoft 365 Connect Request"
    _order = "id desc"

    user_id = fields.Many2one(
        "res.users",
        string="Owner",
        required=True,
        default=lambda self: self.env.user,
        ondelete="cascade",
        index=True,
    )
    sealed = fields.Text(groups=DAEMON_GROUP, copy=False)
    state = fields.Selection(
        [("pending", "Waiting for the daemon"), ("done", "Connected"), ("failed", "Failed")],
        default="pending",
        required=True,
        index=True,
    )
    error = fields.Text()
    account_id = fields.Many2one("m365.account", ondelete="set null")
    # Which daemon replica redeems it (m365.daemon.api.claim_connect), and since when.
    claimed_by = fields.Char(groups=DAEMON_GROUP, copy=False, readonly=True)
    claimed_at = fields.Datetime(groups=DAEMON_GROUP, copy=False, readonly=True)

    def _refuse_external_owner(self):
        """A request whose owner is not an internal user (a portal user, say) is never
        redeemed: its sealed code is dropped and the request says why."""
        self.sudo().write(
            {
                "state": "failed",
                "sealed": False,
                "error": self.env._(
                    "Only internal users may connect a mailbox: the owner of this request is "
                    "not an internal user."
                ),
            }
        )
