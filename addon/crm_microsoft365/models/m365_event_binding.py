from odoo import fields, models


class M365EventBinding(models.Model):
    """One account's Outlook copy of a CRM event (m365sync.domain.EventBinding).

    ``change_key`` is the last changeKey the daemon wrote or read: a delta item carrying it is
    the daemon's own write coming back (no echo). ``pushed_version`` is the event's
    ``m365_version`` that Outlook has: the event is pushed while its version is higher."""

    _name = "m365.event.binding"
    _description = "Microsoft 365 Event Binding"
    _order = "id"
    _rec_name = "graph_id"

    account_id = fields.Many2one(
        "m365.account", required=True, ondelete="cascade", index=True, readonly=True
    )
    graph_id = fields.Char(string="Outlook ID", required=True, readonly=True)
    event_id = fields.Many2one(
        "calendar.event", required=True, ondelete="cascade", index=True, readonly=True,
        context={"active_test": False},
    )
    change_key = fields.Char(readonly=True)
    pushed_version = fields.Integer(readonly=True)

    _sql_constraints = [
        (
            "account_graph_unique",
            "UNIQUE (account_id, graph_id)",
            "An Outlook event is bound once per account.",
        ),
        (
            "account_event_unique",
            "UNIQUE (account_id, event_id)",
            "A CRM event is bound to one Outlook event per account.",
        ),
    ]
