from datetime import timedelta

from odoo import api, fields, models

from .m365_tools import date_from_wire, dt_from_wire, json_loads

DAEMON_INFO_KEY = "crm_microsoft365.daemon_info"
DAEMON_SEEN_KEY = "crm_microsoft365.daemon_last_seen"
REDIRECT_PATH = "/auth/microsoft-apis/get-access-token"
NOTIFICATION_PATH = "/m365/notifications"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
RUNNING_WITHIN = timedelta(minutes=10)
SECRET_WARNING_DAYS = 30


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    m365_client_id = fields.Char(
        string="Application (client) ID", config_parameter="crm_microsoft365.client_id"
    )
    m365_tenant = fields.Char(
        string="Tenant",
        config_parameter="crm_microsoft365.tenant",
        default="organizations",
        help="Directory (tenant) ID or domain; 'organizations' for any work account, 'common' "
        "to also allow personal Outlook.com accounts.",
    )
    m365_authority_host = fields.Char(
        string="Authority Host",
        config_parameter="crm_microsoft365.authority_host",
        default=DEFAULT_AUTHORITY,
        help="https://login.microsoftonline.com, or a national cloud's sign-in host.",
    )
    m365_redirect_uri = fields.Char(string="Redirect URI", compute="_compute_m365_redirect_uri")
    m365_mail_restricted = fields.Boolean(
        string="Restrict Synced Mail",
        help="Off (the default): every internal user reads the mail every account shares. On: "
        "a message is read only by the owners of the mailboxes holding it, the salesperson of "
        "a contact or company on it, and Microsoft 365 administrators.",
    )
    m365_sync_interval = fields.Integer(
        string="Sync Interval (minutes)",
        config_parameter="crm_microsoft365.sync_interval",
        default=5,
    )
    m365_blocklist = fields.Char(
        string="Blocklist",
        config_parameter="crm_microsoft365.blocklist",
        help="Addresses, *@domains or domains whose mail is never stored, comma-separated.",
    )
    m365_push_enabled = fields.Boolean(
        string="Push notifications",
        config_parameter="crm_microsoft365.push_enabled",
        help="Microsoft posts a notification to Odoo when a mailbox changes, and the daemon "
        "syncs that account within seconds instead of at the next interval.",
    )
    m365_notification_url = fields.Char(
        string="Notification URL", compute="_compute_m365_notification_url"
    )
    m365_notification_url_https = fields.Boolean(compute="_compute_m365_notification_url")
    m365_daemon_running = fields.Boolean(string="Daemon Running", compute="_compute_m365_daemon")
    m365_daemon_last_seen = fields.Datetime(
        string="Daemon Last Seen", compute="_compute_m365_daemon"
    )
    m365_daemon_version = fields.Char(string="Daemon Version", compute="_compute_m365_daemon")
    m365_daemon_kid = fields.Char(string="Public Key ID", compute="_compute_m365_daemon")
    m365_client_secret_expires = fields.Date(
        string="Client Secret Expires", compute="_compute_m365_daemon"
    )
    m365_client_secret_warning = fields.Char(compute="_compute_m365_daemon")

    @api.depends("m365_tenant")
    def _compute_m365_redirect_uri(self):
        base = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        for settings in self:
            settings.m365_redirect_uri = base.rstrip("/") + REDIRECT_PATH

    @api.depends("m365_push_enabled")
    def _compute_m365_notification_url(self):
        base = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        url = base.rstrip("/") + NOTIFICATION_PATH
        for settings in self:
            settings.m365_notification_url = url
            settings.m365_notification_url_https = url.startswith("https://")

    # A settings form is a new record: only computes with a dependency run in its onchange,
    # so hang the daemon's figures on a field that is always there.
    @api.depends("m365_tenant")
    def _compute_m365_daemon(self):
        params = self.env["ir.config_parameter"].sudo()
        info = json_loads(params.get_param(DAEMON_INFO_KEY))
        published = dt_from_wire(params.get_param(DAEMON_SEEN_KEY))
        # sudo: heartbeats are technical rows; only their newest time is shown.
        beat = self.env["m365.daemon.heartbeat"].sudo()._last_seen()
        seen = max(filter(None, (published, beat)), default=None)
        expires = date_from_wire(info.get("client_secret_expires"))
        now = fields.Datetime.now()
        warning = False
        if expires:
            days = (expires - now.date()).days
            if days < 0:
                warning = f"The client secret expired {-days} days ago: sync has stopped."
            elif days < SECRET_WARNING_DAYS:
                warning = f"The client secret expires in {days} days: renew it in Azure."
        for settings in self:
            settings.m365_daemon_last_seen = seen or False
            settings.m365_daemon_running = bool(seen and now - seen < RUNNING_WITHIN)
            settings.m365_daemon_version = info.get("version") or False
            settings.m365_daemon_kid = info.get("kid") or False
            settings.m365_client_secret_expires = expires or False
            settings.m365_client_secret_warning = warning

    @api.model
    def get_values(self):
        values = super().get_values()
        everyone = self.env.ref("crm_microsoft365.group_m365_mail_all", raise_if_not_found=False)
        values["m365_mail_restricted"] = bool(everyone) and everyone not in self.env.ref(
            "base.group_user"
        ).implied_ids
        return values

    def set_values(self):
        super().set_values()
        everyone = self.env.ref("crm_microsoft365.group_m365_mail_all", raise_if_not_found=False)
        if not everyone:
            return
        internal = self.env.ref("base.group_user").sudo()
        if self.m365_mail_restricted and everyone in internal.implied_ids:
            # Removes the implied group and takes it from every internal user.
            internal._remove_group(everyone.sudo())
        elif not self.m365_mail_restricted and everyone not in internal.implied_ids:
            internal.write({"implied_ids": [fields.Command.link(everyone.id)]})
