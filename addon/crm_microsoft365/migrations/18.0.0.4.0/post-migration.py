"""18.0.0.4.0: the daemon's technical user is no longer an internal user (#13)."""

from odoo import SUPERUSER_ID, api


def migrate(cr, version):
    if not version:
        return
    env = api.Environment(cr, SUPERUSER_ID, {})
    env["res.users"]._m365_restrict_daemon_user()
