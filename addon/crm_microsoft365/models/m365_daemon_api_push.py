"""The daemon's RPC API, push half: Graph change notifications and the settings the daemon
reads (conventions: m365_daemon_api.py; semantics: m365sync.crm.gateway).

- ``crm_settings{}`` -> ``{"sync_interval_seconds": int or False, "blocklist": [...],
  "notification_url": "<web.base.url>/m365/notifications" or "", "crm_tag": "<8 hex>"}``:
  Settings > Microsoft 365 (the interval in minutes x 60; the blocklist split on commas,
  semicolons and new lines; the URL only while "Push notifications" is on), and the
  database's tag (the first 8 hex digits of the SHA-256 of ``database.uuid``), which the
  daemon's creates carry in their ``transactionId``.
- ``request_sync{account_id, at}`` -> ``True``: ``sync_requested_at`` = ``at`` unless later.
- ``subscriptions{account_id}`` -> ``[Subscription]`` (one per kind at most).
- ``save_subscription{subscription, lease}`` -> ``True``: upsert by (account, kind); with a
  lease, a stale one refuses (``M365:LeaseLost:``) and nothing is written.
- ``drop_subscription{account_id, kind}`` -> ``True``.
- ``subscriptions_by_graph_id{graph_ids}`` -> ``{graph_id: Subscription}`` (unknown absent).
- ``record_notifications{notifications: [ReceivedNotification], at}`` -> ``[account ids]``:
  exactly what the notification endpoint does with the notifications it has checked
  (``m365.subscription._apply_notifications``).

An unknown account refuses with ``M365:UnknownAccount:`` (the adapter's probe of
``subscriptions`` for account 0 relies on it).
"""

# The "M365:..." errors are machine codes the daemon's adapter maps to its own exceptions.
# pylint: disable=translation-required

import hashlib
import re

from odoo.exceptions import UserError

from odoo import api, models

from .m365_daemon_api import _none_to_false, _opt
from .m365_subscription import SUBSCRIPTION_KINDS, SUBSCRIPTION_STATES
from .m365_tools import dt_from_wire
from .res_config_settings import NOTIFICATION_PATH

PUSH_ENABLED_KEY = "crm_microsoft365.push_enabled"
SYNC_INTERVAL_KEY = "crm_microsoft365.sync_interval"
BLOCKLIST_KEY = "crm_microsoft365.blocklist"
KINDS = {value for value, _label in SUBSCRIPTION_KINDS}
STATES = {value for value, _label in SUBSCRIPTION_STATES}
_SEPARATORS = re.compile(r"[,;\r\n]+")


def parse_blocklist(text):
    """The blocklist as typed in Settings -> its entries (commas, semicolons, new lines)."""
    entries = []
    for part in _SEPARATORS.split(text or ""):
        entry = part.strip()
        if entry and entry not in entries:
            entries.append(entry)
    return entries


def notification_url(env):
    """Where Graph posts change notifications: ``<web.base.url>/m365/notifications``."""
    base = env["ir.config_parameter"].sudo().get_param("web.base.url") or ""
    return base.rstrip("/") + NOTIFICATION_PATH


def crm_tag(env):
    """A short stable identity of this database: two Odoo databases connected to one mailbox
    never take each other's Outlook creates for their own (a database duplicated by Odoo gets
    a new ``database.uuid``, hence a new tag; a restored backup keeps it)."""
    uuid = env["ir.config_parameter"].sudo().get_param("database.uuid") or ""
    return hashlib.sha256(uuid.encode()).hexdigest()[:8]


def crm_settings(env):
    """What Settings > Microsoft 365 says to the daemon (the wire form of CrmSettings)."""
    params = env["ir.config_parameter"].sudo()
    try:
        minutes = int(params.get_param(SYNC_INTERVAL_KEY) or 0)
    except ValueError:
        minutes = 0
    enabled = params.get_param(PUSH_ENABLED_KEY) not in (None, False, "", "False", "0")
    return {
        "sync_interval_seconds": minutes * 60 if minutes > 0 else False,
        "blocklist": parse_blocklist(params.get_param(BLOCKLIST_KEY)),
        "notification_url": notification_url(env) if enabled else "",
        "crm_tag": crm_tag(env),
    }


def _kind(value):
    if value not in KINDS:
        raise UserError(f"Unknown subscription kind {value!r}.")
    return value


class M365DaemonApiPush(models.AbstractModel):
    # One file per half of the API (the brief's layout), not one class.
    _inherit = "m365.daemon.api"  # pylint: disable=consider-merging-classes-inherited

    @api.model
    def crm_settings(self, payload=None):
        env = self._daemon_env()
        return crm_settings(env)

    @api.model
    def request_sync(self, payload):
        env = self._daemon_env()
        account = self._account(env, payload["account_id"])
        account._request_sync(dt_from_wire(_opt(payload.get("at"))))
        return True

    @api.model
    def subscriptions(self, payload):
        env = self._daemon_env()
        account = self._account(env, payload["account_id"])
        found = env["m365.subscription"].search([("account_id", "=", account.id)], order="kind")
        return _none_to_false([s._wire() for s in found])

    @api.model
    def save_subscription(self, payload):
        env = self._daemon_env()
        wire = payload["subscription"]
        account_id = int(wire["account_id"])
        lease = _opt(payload.get("lease"))
        # Either way the account's row is locked to the end of the call: two writers of one
        # account's subscription take turns, so the upsert below cannot race.
        if lease:
            self._check_lease(env, lease, account_id)
        else:
            self._account(env, account_id, lock=True)
        kind = _kind(wire["kind"])
        state = wire.get("state") or "active"
        if state not in STATES:
            raise UserError(f"Unknown subscription state {state!r}.")
        values = {
            "graph_id": wire.get("graph_id") or False,
            "resource": wire.get("resource") or False,
            "expires_at": dt_from_wire(_opt(wire.get("expires_at"))) or False,
            "client_state_hash": wire.get("client_state_hash") or False,
            "state": state,
            "last_notified_at": dt_from_wire(_opt(wire.get("last_notified_at"))) or False,
            "detail": wire.get("detail") or False,
            "notification_url": wire.get("notification_url") or False,
        }
        Subscription = env["m365.subscription"]
        existing = Subscription.search([("account_id", "=", account_id), ("kind", "=", kind)])
        if values["graph_id"]:
            # Graph ids are unique: a row of another account or kind still holding this id
            # (impossible in Graph) gives way, as in the embedded store.
            Subscription.search(
                [("graph_id", "=", values["graph_id"]), ("id", "not in", existing.ids)]
            ).unlink()
        if existing:
            existing.write(values)
        else:
            Subscription.create(dict(values, account_id=account_id, kind=kind))
        return True

    @api.model
    def drop_subscription(self, payload):
        """Idempotent: a subscription (or account) already gone is fine."""
        env = self._daemon_env()
        env["m365.subscription"].search(
            [
                ("account_id", "=", int(payload["account_id"])),
                ("kind", "=", _kind(payload["kind"])),
            ]
        ).unlink()
        return True

    @api.model
    def subscriptions_by_graph_id(self, payload):
        env = self._daemon_env()
        wanted = list(dict.fromkeys(g for g in payload.get("graph_ids") or [] if g))
        found = {}
        Subscription = env["m365.subscription"]
        for start in range(0, len(wanted), 500):
            for subscription in Subscription.search(
                [("graph_id", "in", wanted[start : start + 500])]
            ):
                found[subscription.graph_id] = subscription._wire()
        return _none_to_false(found)

    @api.model
    def record_notifications(self, payload):
        env = self._daemon_env()
        notifications = [
            {
                "subscription_id": item.get("subscription_id") or "",
                "change_type": _opt(item.get("change_type")),
                "lifecycle_event": _opt(item.get("lifecycle_event")),
                "resource": item.get("resource") or "",
            }
            for item in payload.get("notifications") or []
        ]
        at = dt_from_wire(_opt(payload.get("at")))
        return env["m365.subscription"]._apply_notifications(notifications, at)
