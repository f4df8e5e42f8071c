from datetime import datetime, timezone

from odoo.exceptions import AccessError, UserError

from odoo import api, fields, models

from .m365_tools import normalize_domain, normalize_email

# AccountStatus values of the daemon (m365sync.domain.AccountStatus), with words for people.
ACCOUNT_STATUSES = [
    ("connected", "Connected"),
    ("syncing", "Syncing"),
    ("active", "Active"),
    ("needs_reconnect", "Needs reconnect"),
    ("insufficient_permissions", "Insufficient permissions"),
    ("throttled", "Throttled"),
    ("failed", "Failed"),
    ("paused", "Paused"),
]
# The statuses in which someone must act (or wait for Microsoft): the list shows why.
ATTENTION_STATUSES = ("needs_reconnect", "insufficient_permissions", "throttled", "failed")
PRIVACY_LEVELS = [
    ("everything", "Share everything"),
    ("subject", "Subject only"),
    ("metadata", "Metadata only"),
]
AUTO_CREATE = [
    ("none", "Never"),
    ("sent", "From mail I send"),
    ("sent_and_received", "From mail I send and receive"),
]

DAEMON_GROUP = "crm_microsoft365.group_m365_daemon"

# Fields only the daemon writes (through m365.daemon.api) or the account's own buttons (which
# use sudo() on purpose). An ordinary RPC write to one of them is refused: the status is what
# the daemon observed, the lease and the sealed token are its private state.
DAEMON_FIELDS = frozenset(
    {
        "status",
        "status_detail",
        "status_until",
        "last_sync_at",
        "tenant_id",
        "object_id",
        "sealed_token_cache",
        "lease_holder",
        "lease_token",
        "lease_expires_at",
        "lease_attempts",
    }
)


FOLDER_CHOICES = [
    ("inbox_sent", "Inbox and Sent Items"),
    ("all", "All mail folders"),
    ("chosen", "Chosen folders"),
]


class M365Account(models.Model):
    _name = "m365.account"
    _description = "Microsoft 365 Account"
    _order = "id"
    _rec_name = "address"

    user_id = fields.Many2one(
        "res.users",
        string="Owner",
        default=lambda self: self.env.user,
        index=True,
        ondelete="cascade",
    )
    address = fields.Char(required=True)
    address_normalized = fields.Char(
        compute="_compute_address_normalized", store=True, index=True
    )
    # ``display_name`` is Odoo's own computed field: the mailbox's name lives here instead and
    # crosses the wire as ``display_name``.
    mailbox_name = fields.Char()
    tenant_id = fields.Char(string="Tenant ID", readonly=True)
    object_id = fields.Char(string="Object ID", readonly=True)
    status = fields.Selection(
        ACCOUNT_STATUSES, default="connected", required=True, readonly=True, index=True
    )
    status_detail = fields.Text(string="Last Message", readonly=True)
    attention = fields.Text(
        compute="_compute_attention",
        string="Needs Attention",
        help="What is wrong and what to do, for an account that needs someone; empty while it "
        "syncs (the last cycle's summary is on the account's form).",
    )
    status_until = fields.Datetime(string="Until", readonly=True)
    last_sync_at = fields.Datetime(string="Last Sync", readonly=True)
    privacy = fields.Selection(PRIVACY_LEVELS, default="everything", required=True)
    auto_create = fields.Selection(
        AUTO_CREATE, string="Create Contacts", default="none", required=True
    )
    own_domains = fields.Char(
        help="Your organisation's mail domains, comma-separated: they never name a customer "
        "company."
    )
    sync_requested = fields.Boolean(
        help="Set by Sync now; the daemon syncs the account at its next pass and clears it."
    )
    sync_requested_at = fields.Datetime(
        string="Sync Now Requested",
        readonly=True,
        copy=False,
        help="When Sync now (or Resume) last asked for a cycle.",
    )
    last_sync_request = fields.Datetime(
        compute="_compute_last_sync_request",
        help="When a cycle was last asked for (Sync now, or a change notification from "
        "Microsoft): the daemon syncs the account when this is later than its last cycle's start.",
    )
    subscription_ids = fields.One2many(
        "m365.subscription", "account_id", string="Change Notifications", readonly=True
    )
    push_active = fields.Boolean(
        compute="_compute_push_active",
        string="Push",
        help="Microsoft notifies Odoo of changes to this mailbox (an active, unexpired "
        "subscription): it syncs within seconds of a change instead of at the next interval.",
    )
    sealed_token_cache = fields.Text(groups=DAEMON_GROUP, copy=False)
    lease_holder = fields.Char(groups=DAEMON_GROUP, copy=False)
    lease_token = fields.Integer(groups=DAEMON_GROUP, copy=False)
    lease_expires_at = fields.Datetime(groups=DAEMON_GROUP, copy=False)
    lease_attempts = fields.Integer(groups=DAEMON_GROUP, copy=False)
    folder_ids = fields.One2many("m365.account.folder", "account_id", string="Folders")
    mail_folder_choice = fields.Selection(
        FOLDER_CHOICES,
        string="Folders to Sync",
        default="inbox_sent",
        required=True,
        help="Which folders of the mailbox are synced. 'All mail folders' leaves out Deleted "
        "Items, Junk Email, Drafts, Outbox, Conversation History and search folders; new "
        "folders are picked up at the next cycle.",
    )
    mail_folder_ids = fields.One2many(
        "m365.mail.folder", "account_id", string="Mailbox Folders"
    )
    sync_run_ids = fields.One2many("m365.sync.run", "account_id", string="Sync Log")
    message_count = fields.Integer(compute="_compute_message_count", string="Messages")
    has_token = fields.Boolean(compute="_compute_has_token", string="Connected Grant")

    def init(self):
        # Lease tokens come from a sequence, not max + 1: a released lease's token is never
        # handed out again, even after the row was freed.
        self.env.cr.execute("CREATE SEQUENCE IF NOT EXISTS m365_account_lease_token_seq")
        # One account per Microsoft identity (tenant, object id) when both are known.
        self.env.cr.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS m365_account_identity_uniq "
            "ON m365_account (tenant_id, object_id) "
            "WHERE tenant_id <> '' AND object_id <> ''"
        )

    @api.depends("address")
    def _compute_address_normalized(self):
        for account in self:
            account.address_normalized = normalize_email(account.address) or False

    def _compute_message_count(self):
        if not self.ids:
            self.message_count = 0
            return
        self.env["m365.mail.message.link"].flush_model(["account_id", "message_id"])
        self.env.cr.execute(
            "SELECT account_id, COUNT(DISTINCT message_id) FROM m365_mail_message_link "
            "WHERE account_id IN %s GROUP BY account_id",
            (tuple(self.ids),),
        )
        counts = dict(self.env.cr.fetchall())
        for account in self:
            account.message_count = counts.get(account.id, 0)

    def _compute_push_active(self):
        now = fields.Datetime.now()
        # sudo: only whether an active subscription exists is shown (the hash stays hidden).
        subscriptions = self.env["m365.subscription"].sudo().search(
            [("account_id", "in", self.ids), ("state", "=", "active"), ("expires_at", ">", now)]
        )
        active = set(subscriptions.account_id.ids)
        for account in self:
            account.push_active = account.id in active

    def _request_sync(self, at=None):
        """Ask the daemon for a cycle of these accounts: ``sync_requested_at`` = ``at`` unless a
        later request is there already (one statement; concurrent notifications never move it
        back)."""
        if not self.ids:
            return
        # Microseconds kept (raw SQL): compared by the daemon with a cycle's start.
        at = at or datetime.now(timezone.utc).replace(tzinfo=None)
        self.flush_model(["sync_requested_at"])
        self.env.cr.execute(
            "UPDATE m365_account SET sync_requested_at = %s WHERE id IN %s "
            "AND (sync_requested_at IS NULL OR sync_requested_at < %s)",
            (at, tuple(sorted(self.ids)), at),
        )
        self.invalidate_model(["sync_requested_at"])

    @api.depends("sync_requested_at", "subscription_ids.last_notified_at")
    def _compute_last_sync_request(self):
        for account in self:
            account.last_sync_request = account._effective_sync_request()

    def _effective_sync_request(self):
        """When a cycle was last asked for: Sync now / Resume (``sync_requested_at``) or a
        notification of one of the account's subscriptions (their ``last_notified_at``)."""
        self.ensure_one()
        # sudo: subscription times only, to tell the daemon a cycle is wanted.
        times = [self.sync_requested_at, *self.sudo().subscription_ids.mapped("last_notified_at")]
        return max(filter(None, times), default=False)

    @api.depends("status", "status_detail")
    def _compute_attention(self):
        for account in self:
            # A paused account without a grant (a neutralized copy's, or one disconnected and
            # paused) cannot sync on Resume: someone must connect it again, so the list says why.
            stuck = account.status == "paused" and not account.has_token
            account.attention = (
                account.status_detail if account.status in ATTENTION_STATUSES or stuck else False
            )

    def _compute_has_token(self):
        # sudo: only whether a sealed token exists is shown, never the value itself.
        for account in self:
            account.has_token = bool(account.sudo().sealed_token_cache)

    def _check_daemon_fields(self, vals):
        protected = DAEMON_FIELDS & set(vals)
        if (
            protected
            and not self.env.su
            and not self.env.user.has_group(DAEMON_GROUP)
        ):
            raise AccessError(
                self.env._(
                    "Only the m365sync daemon may change %(fields)s of a Microsoft 365 account.",
                    fields=", ".join(sorted(protected)),
                )
            )

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            self._check_daemon_fields(vals)
            if vals.get("own_domains"):
                vals["own_domains"] = self._clean_domains(vals["own_domains"])
        return super().create(vals_list)

    def write(self, vals):
        self._check_daemon_fields(vals)
        if "mail_folder_choice" in vals and not self.env.user.has_group(DAEMON_GROUP):
            # Another set of folders: ask for a cycle now rather than at the next interval.
            self._request_sync()
        if "user_id" in vals and not self.env.su and not self.env.user.has_group(
            "crm_microsoft365.group_m365_manager"
        ) and not self.env.user.has_group(DAEMON_GROUP):
            # The owner sends through the account and decides its privacy: handing it (and
            # that right) to someone else is an administrator's decision.
            raise AccessError(
                self.env._("Only a Microsoft 365 administrator may change an account's owner.")
            )
        if vals.get("own_domains"):
            vals["own_domains"] = self._clean_domains(vals["own_domains"])
        return super().write(vals)

    @staticmethod
    def _clean_domains(text):
        seen = []
        for part in (text or "").replace(";", ",").replace("\n", ",").split(","):
            domain = normalize_domain(part)
            if domain and domain not in seen:
                seen.append(domain)
        return ",".join(seen)

    def own_domain_list(self):
        self.ensure_one()
        return [d for d in (self.own_domains or "").split(",") if d]

    # --- actions ------------------------------------------------------------------------------

    def action_connect(self):
        """Connect a new mailbox, or reconnect this one: the OAuth flow starts at /m365/connect."""
        return {"type": "ir.actions.act_url", "url": "/m365/connect", "target": "self"}

    def action_disconnect(self):
        self._check_owner()
        # sudo: the sealed token and the status are daemon-only fields; dropping the grant is
        # the owner's right, and writing it is the only way to revoke Odoo's copy.
        self.sudo().write(
            {
                "sealed_token_cache": False,
                "status": "needs_reconnect",
                "status_detail": self.env._(
                    "Disconnected by %(user)s. Connect the account again to resume syncing.",
                    user=self.env.user.name,
                ),
                "status_until": False,
            }
        )
        return True

    def action_pause(self):
        self._check_owner()
        # sudo: the status is a daemon-only field; Pause is the owner's decision, and a paused
        # account is never leased by the daemon.
        self.sudo().write(
            {
                "status": "paused",
                "status_detail": self.env._("Paused by %(user)s.", user=self.env.user.name),
                "status_until": False,
            }
        )
        return True

    def action_resume(self):
        self._check_owner()
        paused = self.filtered(lambda a: a.status == "paused")
        # sudo: as for Pause; the daemon sets the real status at its next pass.
        paused.sudo().write(
            {"status": "connected", "status_detail": "", "status_until": False}
        )
        paused.write({"sync_requested": True})
        paused._request_sync()
        return True

    def action_sync_now(self):
        self._check_owner()
        if self.filtered(lambda a: a.status == "paused"):
            raise UserError(self.env._("The account is paused: resume it first."))
        self.write({"sync_requested": True})
        self._request_sync()
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "info",
                "message": self.env._("The daemon syncs the account at its next pass (within minutes)."),
                "next": {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    def action_open_sync_log(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "crm_microsoft365.m365_sync_run_action"
        )
        action["domain"] = [("account_id", "=", self.id)]
        action["context"] = {"default_account_id": self.id}
        return action

    def _check_owner(self):
        manager = self.env.user.has_group("crm_microsoft365.group_m365_manager")
        for account in self:
            if not manager and account.user_id != self.env.user:
                raise AccessError(
                    self.env._("Only the owner of %(account)s may do this.", account=account.address)
                )
