"""Graph change-notification subscriptions (push), one per account and kind.

The daemon creates them in Graph, renews them and stores them here (``m365.daemon.api``'s
``save_subscription``); Graph posts change notifications to ``/m365/notifications``
(controllers/push.py), which checks each one against the stored ``client_state_hash`` and asks
the account for a cycle (``sync_requested_at``). The clientState secret itself is never stored:
only its SHA-256 (hex).
"""

import hashlib
import hmac
from datetime import datetime, timezone

from odoo import api, fields, models

from .m365_tools import dt_from_wire, dt_to_wire

DAEMON_GROUP = "crm_microsoft365.group_m365_daemon"

SUBSCRIPTION_KINDS = [("mail", "Mail"), ("calendar", "Calendar")]
SUBSCRIPTION_STATES = [
    ("active", "Active"),
    ("lapsed", "Lapsed"),
    ("removed", "Removed by Microsoft"),
    ("reauthorize", "Needs renewal"),
]
# Lifecycle events Graph sends (lifecycleEvent) -> the state they put a subscription in;
# "missed" only asks for a cycle. The daemon's rule (m365sync.sync.notifications.state_after),
# mirrored because this endpoint receives Graph's posts itself; the daemon's unit tests read
# this table and pin it to the rule.
LIFECYCLE_STATES = {
    "subscriptionremoved": "removed",
    "reauthorizationrequired": "reauthorize",
}


def client_state_matches(received, stored_hash):
    """Whether a notification's clientState is the secret whose SHA-256 (hex) we stored."""
    if not isinstance(received, str) or not received or not stored_hash:
        return False
    digest = hashlib.sha256(received.encode("utf-8")).hexdigest()
    return hmac.compare_digest(digest, stored_hash)


class M365Subscription(models.Model):
    _name = "m365.subscription"
    _description = "Microsoft 365 Change Notification Subscription"
    _order = "account_id, kind"
    _rec_name = "kind"

    account_id = fields.Many2one(
        "m365.account", required=True, index=True, ondelete="cascade", readonly=True
    )
    kind = fields.Selection(SUBSCRIPTION_KINDS, required=True, readonly=True)
    graph_id = fields.Char(string="Subscription ID", readonly=True, copy=False)
    resource = fields.Char(readonly=True)
    expires_at = fields.Datetime(string="Expires", readonly=True)
    client_state_hash = fields.Char(groups=DAEMON_GROUP, readonly=True, copy=False)
    state = fields.Selection(
        SUBSCRIPTION_STATES, default="active", required=True, readonly=True, index=True
    )
    last_notified_at = fields.Datetime(string="Last Notification", readonly=True)
    detail = fields.Char(readonly=True)
    notification_url = fields.Char(
        string="Notification URL",
        readonly=True,
        help="Where Microsoft posts for this subscription; the daemon makes a new one when the "
        "URL changes.",
    )

    _sql_constraints = [
        (
            "account_kind_uniq",
            "UNIQUE(account_id, kind)",
            "An account has one subscription of each kind.",
        ),
    ]

    def init(self):
        # Graph's subscription ids are unique; a subscription that could not be created has
        # none yet, so the index leaves empty ids out.
        self.env.cr.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS m365_subscription_graph_id_uniq "
            "ON m365_subscription (graph_id) WHERE graph_id IS NOT NULL AND graph_id <> ''"
        )

    def _wire(self):
        """``m365sync.domain.Subscription`` in wire form (needs the hash: sudo or daemon)."""
        self.ensure_one()
        return {
            "account_id": self.account_id.id,
            "kind": self.kind,
            "graph_id": self.graph_id or "",
            "resource": self.resource or "",
            "expires_at": dt_to_wire(self.expires_at),
            "client_state_hash": self.client_state_hash or "",
            "state": self.state,
            "last_notified_at": dt_to_wire(self.last_notified_at),
            "detail": self.detail or "",
            "notification_url": self.notification_url or "",
        }

    @api.model
    def _apply_notifications(self, notifications, at):
        """Apply checked notifications (dicts: ``subscription_id``, ``change_type``,
        ``lifecycle_event``): each marks its subscription's ``last_notified_at`` and asks its
        account for a cycle; ``subscriptionRemoved`` / ``reauthorizationRequired`` set the
        state to ``removed`` / ``reauthorize``; ``missed`` only asks for a cycle. Unknown
        subscriptions are ignored. One search, a few updates. Returns the account ids asked
        to sync, sorted, without repeats. The caller has checked the right to do this (the
        daemon's group, or the clientState); this runs in sudo."""
        # Microseconds kept (raw SQL below): the daemon compares this with a cycle's start,
        # and fields.Datetime.now() would round a notification down to before that start.
        at = dt_from_wire(at) or datetime.now(timezone.utc).replace(tzinfo=None)
        wanted = {}
        for item in notifications:
            graph_id = item.get("subscription_id") or ""
            if graph_id:
                wanted.setdefault(graph_id, []).append(item)
        if not wanted:
            return []
        subscriptions = self.sudo().search([("graph_id", "in", list(wanted))])
        if not subscriptions:
            return []
        new_states = {}
        for subscription in subscriptions:
            for item in wanted[subscription.graph_id]:
                state = LIFECYCLE_STATES.get(str(item.get("lifecycle_event") or "").lower())
                if state:
                    new_states[subscription] = state
        # The request lives on the subscription rows (last_notified_at; the account's
        # sync_requested_at on the wire is the latest of its own and these), so a notification
        # never writes the account row the daemon's lease loop updates every few seconds.
        self._mark_notified(subscriptions, at)
        for subscription, state in new_states.items():
            subscription.write({"state": state})
        return sorted(subscriptions.account_id.ids)

    def _mark_notified(self, subscriptions, at):
        """``last_notified_at`` = ``at`` unless a later one is there (one statement)."""
        self.flush_model(["last_notified_at"])
        self.env.cr.execute(
            "UPDATE m365_subscription SET last_notified_at = %s, write_date = now() at time "
            "zone 'UTC' WHERE id IN %s AND (last_notified_at IS NULL OR last_notified_at < %s)",
            (at, tuple(subscriptions.ids), at),
        )
        self.invalidate_model(["last_notified_at", "write_date"])
