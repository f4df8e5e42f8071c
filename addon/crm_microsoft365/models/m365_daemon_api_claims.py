"""The daemon's RPC API, claims: which replica answers a pending connect or free/busy request
(conventions: m365_daemon_api.py; semantics: m365sync.crm.gateway ``claim_connect``).

- ``claim_connect{connect_id, holder, ttl_seconds}`` -> ``True`` when ``holder`` may redeem the
  pending connect now, ``False`` when another holder took it less than ``ttl_seconds`` ago, or
  it is no longer pending (done, failed, gone).
- ``claim_free_busy{request_id, holder, ttl_seconds}`` -> the same for a pending free/busy
  request (one getSchedule per request).

Each claim is one ``UPDATE ... WHERE id = %s AND state = 'pending' AND (unclaimed OR
claimed by this holder OR the claim expired) RETURNING id``: PostgreSQL takes the row's lock
for the update, so of two replicas claiming at once the second waits, then (Odoo's
transactions being REPEATABLE READ) fails to serialize, is retried by Odoo's RPC service and
reads the first one's claim. A holder claiming again refreshes its own claim.
"""

from datetime import timedelta

from odoo.tools import SQL

from odoo import api, fields, models

CONNECT_TTL = 120.0  # the gateway's defaults (m365sync.crm.gateway)
FREE_BUSY_TTL = 60.0


def _ttl(payload, default):
    value = payload.get("ttl_seconds")
    if value in (None, False):
        return default
    return max(float(value), 0.0)


def _claim(env, table, record_id, holder, ttl_seconds):
    """The one atomic claim of a pending row of ``table``."""
    if not holder:
        return False
    try:
        record_id = int(record_id)
    except (TypeError, ValueError):
        return False
    now = fields.Datetime.now()
    expired = now - timedelta(seconds=ttl_seconds)
    env.cr.execute(
        SQL(
            """UPDATE %s
                  SET claimed_by = %s, claimed_at = %s
                WHERE id = %s
                  AND state = 'pending'
                  AND (claimed_by IS NULL OR claimed_by = %s
                       OR claimed_at IS NULL OR claimed_at < %s)
            RETURNING id""",
            SQL.identifier(table),
            holder,
            now,
            record_id,
            holder,
            expired,
        )
    )
    return bool(env.cr.fetchone())


class M365DaemonApiClaims(models.AbstractModel):
    # One file per half of the API (the brief's layout), not one class.
    _inherit = "m365.daemon.api"  # pylint: disable=consider-merging-classes-inherited

    @api.model
    def claim_connect(self, payload):
        env = self._daemon_env()
        try:
            request = env["m365.connect.request"].browse(int(payload.get("connect_id"))).exists()
        except (TypeError, ValueError):
            request = env["m365.connect.request"]
        if request and request.state == "pending" and not request.user_id._is_internal():
            request._refuse_external_owner()
            return False
        return self._claim_pending(
            "m365.connect.request", payload.get("connect_id"), payload, CONNECT_TTL
        )

    @api.model
    def claim_free_busy(self, payload):
        return self._claim_pending(
            "m365.free.busy.request", payload.get("request_id"), payload, FREE_BUSY_TTL
        )

    @api.model
    def _claim_pending(self, model, record_id, payload, default_ttl):
        env = self._daemon_env()
        Request = env[model]
        Request.flush_model(["state", "claimed_by", "claimed_at"])
        claimed = _claim(
            env,
            Request._table,
            record_id,
            payload.get("holder") or "",
            _ttl(payload, default_ttl),
        )
        Request.invalidate_model(["claimed_by", "claimed_at"])
        return claimed
