from odoo import api, fields, models

from .m365_tools import json_loads

DAEMON_GROUP = "crm_microsoft365.group_m365_daemon"


class M365AccountFolder(models.Model):
    """A synced mail folder of an account and where its delta round stands (the cursor)."""

    _name = "m365.account.folder"
    _description = "Microsoft 365 Synced Folder"
    _order = "account_id, folder_id"
    _rec_name = "folder_id"

    account_id = fields.Many2one("m365.account", required=True, ondelete="cascade", index=True)
    folder_id = fields.Char(string="Graph Folder ID", required=True)
    cursor_link = fields.Text(groups=DAEMON_GROUP)
    cursor_kind = fields.Selection(
        [("next", "Round in progress"), ("delta", "Round finished")], groups=DAEMON_GROUP
    )
    skipped = fields.Text(string="Skipped (JSON)", default="{}", help="Items skipped in this folder, by reason (JSON).")
    # Full rounds (a delta round from no cursor: the first sync, or again after a 410) are
    # numbered; while one is open its pages mark the links they list, and its last page
    # settles the links it did not list (the daemon decides how, this only stores).
    round_number = fields.Integer(default=0, groups=DAEMON_GROUP)
    round_open = fields.Boolean(default=False, groups=DAEMON_GROUP)
    round_since = fields.Datetime(groups=DAEMON_GROUP, help="The open round's initial window.")
    skipped_summary = fields.Char(compute="_compute_skipped_summary", string="Skipped")

    _sql_constraints = [
        (
            "account_folder_unique",
            "UNIQUE (account_id, folder_id)",
            "A folder is stored once per account.",
        ),
    ]

    @api.depends("skipped")
    def _compute_skipped_summary(self):
        for folder in self:
            counts = json_loads(folder.skipped)
            folder.skipped_summary = ", ".join(
                f"{reason}: {count}" for reason, count in sorted(counts.items())
            )
