"""The daemon's RPC API, outbox and free/busy half (conventions: m365_daemon_api.py).

- ``outgoing_mail{account_id, limit}`` -> ``[OutgoingMail]``: the account's queued mail and the
  mail left ``sending`` (outcome unknown), oldest first; then, within the limit, the ``sent``
  mail whose sent copy is not linked yet (no graph id or no Message-ID) and whose send started
  within ``LINK_FOR`` (an hour), oldest first: the daemon only looks for its copy, it never
  sends it again. Attachments inline, their content in base64 (``{"name", "content_type",
  "content"}``).
- ``claim_outgoing{mail_id, started}`` -> ``bool``: queued -> ``sending`` with the start time
  and one more attempt, only if the row is still ``queued`` (under its row lock): False for a
  mail another worker claimed, already sent or failed, or deleted. The daemon sends only
  what it claimed (two workers with the same stale list: one sends).
- ``update_outgoing{mail_id, state, graph_id, internet_message_id, conversation_id, error,
  send_started_at}`` -> ``True``: the state is always written, the error as given (none clears
  it), the ids and the start time only when given (COALESCE, as m365sync.crm.sqlite_outbox).
- ``pending_free_busy{limit}`` -> ``[{"id", "account_id", "addresses", "day", "time_zone",
  "start", "end"}]``: the day in its time zone, and the same day as a UTC window (``start``
  00:00 to ``end`` 24:00 local, ISO-8601 with offset).
- ``store_free_busy{request_id, results: [{"address", "slots": [{"start", "end", "status"}],
  "error"}], error}`` -> ``True``.
"""

# The "M365:..." errors are machine codes the daemon's adapter maps to its own exceptions.
# pylint: disable=translation-required

import base64

from odoo.exceptions import UserError

from odoo import api, fields, models

from .m365_daemon_api import _none_to_false, _opt
from .m365_free_busy import PENDING_FOR
from .m365_outbox import LINK_FOR, STATES, wire_addresses
from .m365_tools import dt_from_wire, dt_to_wire, normalize_email

OUTBOX_STATES = {value for value, _label in STATES}


class M365DaemonApiOutbox(models.AbstractModel):
    # One file per half of the API (the brief's layout), not one class.
    _inherit = "m365.daemon.api"  # pylint: disable=consider-merging-classes-inherited

    # --- outbox ---------------------------------------------------------------------------------

    @staticmethod
    def _outgoing_wire(mail):
        return {
            "id": mail.id,
            "account_id": mail.account_id.id,
            "to": wire_addresses(mail.email_to),
            "subject": mail.subject or "",
            "body_html": mail.body_html or "",
            "cc": wire_addresses(mail.email_cc),
            "bcc": wire_addresses(mail.email_bcc),
            "attachments": [
                {
                    "name": attachment.name or "attachment",
                    "content_type": attachment.mimetype or "application/octet-stream",
                    "content": base64.b64encode(attachment.raw or b"").decode("ascii"),
                }
                for attachment in mail.attachment_ids.sorted("id")
            ],
            "reply_to_graph_id": mail.reply_to_graph_id or None,
            "state": mail.state,
            "graph_id": mail.graph_id or None,
            "send_started_at": dt_to_wire(mail.send_started_at),
            "internet_message_id": mail.internet_message_id or None,
            "conversation_id": mail.conversation_id or None,
            "error": mail.error or None,
            "attempts": mail.attempts,
            "requested_by": mail.requested_by or "",
        }

    @api.model
    def outgoing_mail(self, payload):
        env = self._daemon_env()
        account = self._account(env, payload["account_id"])
        limit = int(_opt(payload.get("limit")) or 20)
        Outbox = env["m365.outbox"]
        mails = Outbox.search(
            [("account_id", "=", account.id), ("state", "in", ["queued", "sending"])],
            order="id",
            limit=limit,
        )
        if len(mails) < limit:
            mails |= Outbox.search(
                [
                    ("account_id", "=", account.id),
                    ("state", "=", "sent"),
                    ("send_started_at", ">=", fields.Datetime.now() - LINK_FOR),
                    "|",
                    ("graph_id", "in", [False, ""]),
                    ("internet_message_id", "in", [False, ""]),
                ],
                order="id",
                limit=limit - len(mails),
            )
        return _none_to_false([self._outgoing_wire(m) for m in mails])

    @api.model
    def claim_outgoing(self, payload):
        """The conditional queued -> sending. The row lock makes a second claim wait for the
        first one's transaction; once that commits, the second one's snapshot is stale and
        PostgreSQL refuses its lock (a serialization failure, which Odoo's RPC retries in a
        new transaction, where the row reads ``sending``): the second claim answers False."""
        env = self._daemon_env()
        started = dt_from_wire(_opt(payload.get("started")))
        if not started:
            raise UserError("M365:BadRequest: a claim needs its start time.")
        env["m365.outbox"].flush_model()
        env.cr.execute(
            "SELECT id FROM m365_outbox WHERE id = %s AND state = 'queued' FOR UPDATE",
            (int(payload["mail_id"]),),
        )
        row = env.cr.fetchone()
        if row is None:
            return False
        mail = env["m365.outbox"].browse(row[0])
        mail.invalidate_recordset()
        mail.write(
            {
                "state": "sending",
                "send_started_at": started,
                "error": False,
                "attempts": mail.attempts + 1,
            }
        )
        return True

    @api.model
    def update_outgoing(self, payload):
        """One step of a send. A row the user deleted meanwhile is ignored (like the embedded
        store's UPDATE of no row)."""
        env = self._daemon_env()
        state = payload["state"]
        if state not in OUTBOX_STATES:
            raise UserError(f"M365:BadRequest: unknown outbox state {state!r}.")
        env["m365.outbox"].flush_model()
        env.cr.execute(
            "SELECT id, state FROM m365_outbox WHERE id = %s FOR UPDATE", (int(payload["mail_id"]),)
        )
        row = env.cr.fetchone()
        if row is None:
            return True
        mail = env["m365.outbox"].browse(row[0])
        values = {"state": state, "error": _opt(payload.get("error")) or False}
        for key in ("graph_id", "internet_message_id", "conversation_id"):
            value = _opt(payload.get(key))
            if value:
                values[key] = value
        started = dt_from_wire(_opt(payload.get("send_started_at")))
        if started:
            values["send_started_at"] = started
        if state == "sending" and row[1] == "queued":
            values["attempts"] = mail.attempts + 1
        if state == "sent" and not mail.sent_at:
            values["sent_at"] = fields.Datetime.now()
        mail.write(values)
        return True

    # --- free/busy for Schedule Meeting ---------------------------------------------------------

    @api.model
    def pending_free_busy(self, payload=None):
        env = self._daemon_env()
        limit = int(_opt((payload or {}).get("limit")) or 50)
        since = fields.Datetime.now() - PENDING_FOR
        requests = env["m365.free.busy.request"].search(
            [("state", "=", "pending"), ("create_date", ">=", since)], order="id", limit=limit
        )
        answer = []
        for request in requests:
            start, end = request.window()
            answer.append(
                {
                    "id": request.id,
                    "account_id": request.account_id.id,
                    "addresses": request.address_list(),
                    "day": fields.Date.to_string(request.day),
                    "time_zone": request.time_zone or "UTC",
                    "start": dt_to_wire(start),
                    "end": dt_to_wire(end),
                }
            )
        return answer

    @api.model
    def store_free_busy(self, payload):
        """The answer replaces whatever the request held. An address answered without slots
        gets one ``free`` row (free all day); one missing from the answer has no row and stays
        unknown, never free."""
        env = self._daemon_env()
        request = env["m365.free.busy.request"].browse(int(payload["request_id"])).exists()
        if not request:
            return True
        request.result_ids.unlink()
        rows = []
        for result in _opt(payload.get("results")) or []:
            address = normalize_email(result.get("address")) or (result.get("address") or "")
            error = _opt(result.get("error"))
            if error:
                rows.append({"request_id": request.id, "address": address, "error": str(error)})
                continue
            slots = _opt(result.get("slots")) or []
            if not slots:
                # Answered and free all day (an address with no row at all is unknown).
                rows.append({"request_id": request.id, "address": address, "status": "free"})
            for slot in slots:
                rows.append(
                    {
                        "request_id": request.id,
                        "address": address,
                        "start": dt_from_wire(slot["start"]),
                        "end": dt_from_wire(slot["end"]),
                        "status": _opt(slot.get("status")) or "busy",
                    }
                )
        if rows:
            env["m365.free.busy"].create(rows)
        error = _opt(payload.get("error"))
        request.write(
            {
                "state": "failed" if error else "done",
                "error": error or False,
                "answered_at": fields.Datetime.now(),
            }
        )
        return True
