"""Attendees' free/busy for Schedule Meeting, asked of Outlook by the daemon.

Choosing a day in the scheduling form records a request (the account, the attendees'
addresses, the day in a time zone); the daemon picks pending requests up with
``m365.daemon.api.pending_free_busy``, asks Graph's ``getSchedule`` (m365sync.graph.schedule)
for that whole day (00:00 to 24:00 in the request's time zone) and answers with
``store_free_busy``: one ``m365.free.busy`` row per busy slot, or one row with the error for an
address Graph could not resolve (shown as unknown, never as free). A daily cron removes the
requests older than a day, with their rows.
"""

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from odoo import api, fields, models

from .m365_tools import normalize_email

# A request nobody answered within this time is no longer handed to the daemon (the form asks
# again when the user looks again); an answer is reused this long for the same question.
PENDING_FOR = timedelta(minutes=10)
FRESH_FOR = timedelta(minutes=15)
DAEMON_GROUP = "crm_microsoft365.group_m365_daemon"
# Requests (and their busy slots) older than this are removed by a daily cron: the form asks
# again for a day it shows later.
KEEP_FOR = timedelta(days=1)


def zone_of(name):
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def day_window(day, time_zone):
    """``day`` (a date) from local midnight to the next, as naive UTC datetimes (a day with a
    daylight-saving change is 23 or 25 hours long)."""
    tz = zone_of(time_zone)
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return (
        start.astimezone(timezone.utc).replace(tzinfo=None),
        end.astimezone(timezone.utc).replace(tzinfo=None),
    )


class M365FreeBusyRequest(models.Model):
    _name = "m365.free.busy.request"
    _description = "Microsoft 365 Free/Busy Request"
    _order = "id desc"

    account_id = fields.Many2one("m365.account", required=True, ondelete="cascade", index=True)
    user_id = fields.Many2one(related="account_id.user_id", store=True, string="Owner")
    day = fields.Date(required=True)
    time_zone = fields.Char(required=True, default="UTC")
    addresses = fields.Text(required=True, help="Normalised addresses, one a line, sorted.")
    state = fields.Selection(
        [("pending", "Asking Outlook"), ("done", "Answered"), ("failed", "Failed")],
        default="pending",
        required=True,
        index=True,
    )
    error = fields.Text()
    answered_at = fields.Datetime()
    result_ids = fields.One2many("m365.free.busy", "request_id", string="Busy Times")
    # Which daemon replica answers it (m365.daemon.api.claim_free_busy), and since when.
    claimed_by = fields.Char(groups=DAEMON_GROUP, copy=False, readonly=True)
    claimed_at = fields.Datetime(groups=DAEMON_GROUP, copy=False, readonly=True)

    def window(self):
        """The day from 00:00 to 24:00 in the request's time zone, as naive UTC datetimes."""
        self.ensure_one()
        return day_window(self.day, self.time_zone)

    def address_list(self):
        self.ensure_one()
        return [a for a in (self.addresses or "").split() if a]

    @api.model
    def _gc_old_requests(self):
        """The daily cron: requests older than a day go, their busy slots with them."""
        old = self.search([("create_date", "<", fields.Datetime.now() - KEEP_FOR)])
        old.unlink()
        return len(old)

    @api.model
    def _for(self, account, day, time_zone, addresses):
        """The request answering (account, day, zone, addresses): a fresh answer or a pending
        question if there is one, else a new question for the daemon."""
        wanted = sorted({normalize_email(a) for a in addresses if a and normalize_email(a)})
        if not wanted or not account or not day:
            return self.browse()
        now = fields.Datetime.now()
        key = "\n".join(wanted)
        found = self.search(
            [
                ("account_id", "=", account.id),
                ("day", "=", day),
                ("time_zone", "=", time_zone or "UTC"),
                ("addresses", "=", key),
                "|",
                "&",
                ("state", "=", "pending"),
                ("create_date", ">=", now - PENDING_FOR),
                "&",
                ("state", "=", "done"),
                ("answered_at", ">=", now - FRESH_FOR),
            ],
            order="id desc",
            limit=1,
        )
        if found:
            return found
        return self.create(
            {
                "account_id": account.id,
                "day": day,
                "time_zone": time_zone or "UTC",
                "addresses": key,
            }
        )


class M365FreeBusy(models.Model):
    """One busy slot of one address; or, with ``error``, why Outlook has no schedule for it;
    or, with status ``free`` and no times, that it is free all day."""

    _name = "m365.free.busy"
    _description = "Microsoft 365 Free/Busy Slot"
    _order = "request_id, address, start"

    request_id = fields.Many2one(
        "m365.free.busy.request", required=True, ondelete="cascade", index=True
    )
    account_id = fields.Many2one(related="request_id.account_id", store=True)
    day = fields.Date(related="request_id.day", store=True)
    address = fields.Char(required=True, index=True)
    start = fields.Datetime()
    end = fields.Datetime()
    status = fields.Char(
        help="busy, tentative, oof or workingElsewhere (Graph's words); free (without start and "
        "end) when Outlook answered with no busy time that day."
    )
    error = fields.Char(help="Why Outlook has no schedule for this address.")
