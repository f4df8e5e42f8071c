from odoo.exceptions import AccessError

from odoo import api, fields, models

DAEMON_GROUP = "crm_microsoft365.group_m365_daemon"

# What a mailbox's owner may change on a folder of the tree: whether to sync it. The rest is
# how Outlook has it, written by the daemon after each cycle.
OWNER_FIELDS = frozenset({"chosen"})


class M365MailFolder(models.Model):
    """A mail folder of an account's mailbox, as the daemon's last cycle listed it (issue #14).

    The daemon writes the tree (names, paths, counts, which folders it synced); the owner ticks
    ``chosen`` for the account's "Chosen folders". Rows are keyed by the folder's Graph id,
    which does not change when the folder is renamed or moved in Outlook, so a tick follows
    the folder.
    """

    _name = "m365.mail.folder"
    _description = "Microsoft 365 Mail Folder"
    _order = "account_id, path_key, id"
    _rec_name = "path"

    account_id = fields.Many2one("m365.account", required=True, ondelete="cascade", index=True)
    graph_id = fields.Char(string="Folder ID", required=True, readonly=True)
    parent_graph_id = fields.Char(string="Parent Folder ID", readonly=True)
    name = fields.Char(readonly=True)
    path = fields.Char(string="Folder", readonly=True)
    path_key = fields.Char(readonly=True, help="The path in lower case: the tree's order.")
    depth = fields.Integer(readonly=True)
    indented_name = fields.Char(compute="_compute_indented_name", string="Mail Folder")
    total_items = fields.Integer(string="Items", readonly=True)
    unread_items = fields.Integer(string="Unread", readonly=True)
    is_search = fields.Boolean(string="Search Folder", readonly=True)
    synced = fields.Boolean(
        readonly=True,
        help="Whether the last cycle synced this folder under the account's folder choice.",
    )
    chosen = fields.Boolean(
        string="Sync",
        help="With the folder choice 'Chosen folders': sync this folder.",
    )

    _sql_constraints = [
        (
            "account_graph_unique",
            "UNIQUE (account_id, graph_id)",
            "A mail folder is stored once per account.",
        ),
    ]

    @api.depends("name", "depth")
    def _compute_indented_name(self):
        for folder in self:
            # Two non-breaking spaces per level: the list shows the tree as Outlook does.
            folder.indented_name = "\u00a0\u00a0\u00a0\u00a0" * (folder.depth or 0) + (
                folder.name or ""
            )

    def _check_owner_fields(self, vals):
        if self.env.su or self.env.user.has_group(DAEMON_GROUP):
            return
        others = set(vals) - OWNER_FIELDS
        if others:
            raise AccessError(
                self.env._(
                    "Only the m365sync daemon may change %(fields)s of a mail folder: the tree "
                    "is Outlook's.",
                    fields=", ".join(sorted(others)),
                )
            )

    @api.model_create_multi
    def create(self, vals_list):
        if not (self.env.su or self.env.user.has_group(DAEMON_GROUP)):
            raise AccessError(self.env._("Mail folders come from Outlook, through the daemon."))
        return super().create(vals_list)

    def write(self, vals):
        self._check_owner_fields(vals)
        result = super().write(vals)
        if "chosen" in vals and not self.env.user.has_group(DAEMON_GROUP):
            # sudo: the request time only, on accounts the user may already see.
            self.account_id.filtered(lambda a: a.mail_folder_choice == "chosen").sudo()._request_sync()
        return result
