from odoo import Command, api, models

DAEMON_USER = "crm_microsoft365.user_m365_daemon"
DAEMON_GROUP = "crm_microsoft365.group_m365_daemon"


class ResUsers(models.Model):
    _inherit = "res.users"

    @api.model
    def _m365_restrict_daemon_user(self):
        """Leave the daemon's technical user in its own group only.

        Versions before 18.0.0.4.0 made it an internal user, so its API key could read users,
        contacts, chatter and every other app's data through the external API; its RPCs need
        none of that (m365.daemon.api checks the group, then works as superuser). Odoo clears a
        demoted user's implied groups itself (res.users.write)."""
        user = self.env.ref(DAEMON_USER, raise_if_not_found=False)
        group = self.env.ref(DAEMON_GROUP, raise_if_not_found=False)
        if user and group and user.sudo().groups_id != group:
            user.sudo().write({"groups_id": [Command.set(group.ids)]})
        return True
