from odoo import api, fields, models

from .m365_tools import json_loads


class M365SyncRun(models.Model):
    """The figures of one mail cycle of one account (the sync log)."""

    _name = "m365.sync.run"
    _description = "Microsoft 365 Sync Run"
    _order = "started_at desc, id desc"
    _rec_name = "started_at"

    account_id = fields.Many2one("m365.account", required=True, ondelete="cascade", index=True)
    user_id = fields.Many2one(related="account_id.user_id", string="Owner")
    started_at = fields.Datetime(string="Started", required=True, readonly=True)
    finished_at = fields.Datetime(string="Finished", readonly=True)
    pages = fields.Integer(readonly=True)
    imported = fields.Integer(readonly=True)
    updated = fields.Integer(readonly=True)
    removed = fields.Integer(readonly=True)
    skipped = fields.Text(string="Skipped (JSON)", default="{}", readonly=True, help="Skipped items by reason (JSON).")
    skipped_summary = fields.Char(compute="_compute_skipped_summary", string="Skipped")
    error = fields.Text(readonly=True)
    # The other parts of the same cycle, as the daemon reports them (JSON objects): the
    # calendar's pulled/pushed counts, the outbox's sent/failed/pending, and each part's
    # failure sentence (null when it succeeded), so one part's failure is told apart.
    calendar_figures = fields.Text(string="Calendar (JSON)", default="{}", readonly=True)
    outbox_figures = fields.Text(string="Outbox (JSON)", default="{}", readonly=True)
    parts = fields.Text(string="Parts (JSON)", default="{}", readonly=True)
    failed_parts = fields.Char(compute="_compute_failed_parts")
    # Round trips of the cycle: to Microsoft Graph (a JSON batch counts once) and to the
    # identity platform's token endpoint (a healthy cycle makes none: the token is reused).
    graph_requests = fields.Integer(readonly=True)
    token_requests = fields.Integer(readonly=True)
    state = fields.Selection(
        [("running", "Running"), ("done", "Done"), ("failed", "Failed")],
        compute="_compute_state",
    )

    @api.depends("skipped")
    def _compute_skipped_summary(self):
        for run in self:
            counts = json_loads(run.skipped)
            run.skipped_summary = ", ".join(
                f"{reason}: {count}" for reason, count in sorted(counts.items())
            )

    @api.depends("parts")
    def _compute_failed_parts(self):
        for run in self:
            run.failed_parts = ", ".join(
                sorted(part for part, failure in json_loads(run.parts).items() if failure)
            )

    @api.depends("finished_at", "error")
    def _compute_state(self):
        for run in self:
            run.state = "failed" if run.error else ("done" if run.finished_at else "running")
