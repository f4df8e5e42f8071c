"""Schedule Meeting: a meeting with a contact, booked in the user's own Outlook calendar.

The form shows the chosen day: the user's busy times from the synced calendar (their
``calendar.event``s that day) and, once the daemon has asked Outlook (``getSchedule``), the
attendees' free/busy. Choosing a day records a free/busy request the daemon answers within
seconds; until then the attendees show "asking Outlook…". Confirm creates a CRM event owned by
the account; the daemon pushes it to Outlook, which sends the invitations (no Odoo invitation
mail).
"""

from datetime import datetime, time, timedelta, timezone

from markupsafe import Markup, escape
from odoo.addons.base.models.res_partner import _tz_get
from odoo.exceptions import UserError

from odoo import Command, api, fields, models

from ..models.m365_free_busy import day_window, zone_of
from ..models.m365_tools import normalize_email
from .m365_compose_wizard import check_own_usable_account, require_account

# Working hours (local to the user) within which Schedule Meeting proposes a slot.
WORK_HOURS = (9, 18)
# Graph's answer for an address outside the tenant ("Unable to resolve e-mail address … to an
# Active Directory object", responseCode 5009): its free/busy is not shared with us.
UNRESOLVED = ("unable to resolve e-mail address", "active directory object")

STATUS_WORDS = {
    "busy": "busy",
    "tentative": "tentative",
    "oof": "away",
    "workingelsewhere": "working elsewhere",
}


def _hours(moment, tz, day):
    """A naive-UTC datetime as hours since the local midnight of ``day`` (may be < 0 or > 24)."""
    local = moment.replace(tzinfo=timezone.utc).astimezone(tz)
    midnight = datetime.combine(day, time.min, tzinfo=tz)
    return (local - midnight).total_seconds() / 3600


QUARTER = timedelta(minutes=15)


def _naive(moment):
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _next_quarter(moment):
    """An aware datetime rounded up to the quarter hour (every time zone's offset is a multiple
    of 15 minutes, so it is on the quarter hour locally too)."""
    seconds = moment.timestamp()
    return datetime.fromtimestamp(-(-seconds // 900) * 900, timezone.utc)


def _who(partner):
    """A person with their company ("Ann Ramirez (Globex)"), a company or an individual alone."""
    company = partner.commercial_company_name
    if partner.is_company or not company or company == partner.name:
        return partner.name or company or ""
    return f"{partner.name} ({company})" if partner.name else company


def _clock(hours):
    hours = max(0.0, min(24.0, hours))
    minutes = round(hours * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class M365ScheduleWizard(models.TransientModel):
    _name = "m365.schedule.wizard"
    _description = "Schedule Meeting through Microsoft 365"

    account_id = fields.Many2one(
        "m365.account",
        string="Calendar",
        required=True,
        domain="[('user_id', '=', uid)]",
        help="Your own Microsoft 365 calendar: the meeting is created there and Outlook sends "
        "the invitations.",
    )
    partner_id = fields.Many2one("res.partner", string="Contact")
    attendee_ids = fields.Many2many(
        "res.partner",
        "m365_schedule_wizard_partner_rel",
        "wizard_id",
        "partner_id",
        string="Other Attendees",
    )
    subject = fields.Char(required=True)
    date = fields.Date(required=True, default=lambda self: self._default_date())
    start_time = fields.Float(
        string="Start", required=True, default=lambda self: self._default_start_time()
    )
    duration = fields.Float(required=True, default=1.0, help="Hours and minutes.")
    time_zone = fields.Selection(
        _tz_get, required=True, default=lambda self: self.env.user.tz or "UTC"
    )
    online_meeting = fields.Boolean(help="Outlook adds a Teams meeting and its join link.")
    location = fields.Char()
    description = fields.Html()
    # Not readonly: the form saves the request its onchange asked (the view hides it).
    free_busy_request_id = fields.Many2one("m365.free.busy.request")
    free_busy_state = fields.Selection(
        [("pending", "Asking Outlook"), ("done", "Answered"), ("failed", "Failed")],
        compute="_compute_free_busy_state",
    )
    # Bumped by the form's poller (static/src/js/m365_free_busy_poll.js) once the daemon has
    # answered: the availability is recomputed and shows the answer.
    free_busy_tick = fields.Integer()
    availability_html = fields.Html(
        string="Availability", compute="_compute_availability", sanitize=False
    )
    conflict = fields.Char(compute="_compute_availability")

    # --- defaults ---------------------------------------------------------------------------

    def _now_local(self):
        return datetime.now(timezone.utc).astimezone(zone_of(self.env.user.tz))

    def _default_date(self):
        now = self._now_local()
        return (now + timedelta(days=1)).date() if now.hour >= 17 else now.date()

    def _default_start_time(self):
        now = self._now_local()
        if now.hour >= 17 or now.hour < 8:
            return 9.0
        return float(now.hour + 1)

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        if not values.get("partner_id") and self.env.context.get("active_model") == "res.partner":
            values["partner_id"] = self.env.context.get("active_id")
        if not values.get("account_id"):
            values["account_id"] = require_account(self.env, self.env._("schedule meetings")).id
        partner = self.env["res.partner"].browse(values.get("partner_id") or [])
        if partner and not values.get("subject") and "subject" in fields_list:
            values["subject"] = self.env._("Meeting with %(partner)s", partner=_who(partner))
        return values

    @api.onchange("date", "account_id")
    def _onchange_propose_free_slot(self):
        """Choosing a day (and the form's opening) proposes the first slot of it that is free in
        the user's own calendar, within working hours."""
        if self.env.context.get("default_start_time"):
            return  # the caller chose the time
        start = self._first_free_start()
        if start is not None:
            self.start_time = start

    def _first_free_start(self):
        """The first start (on the quarter hour, not in the past) of a meeting of the wizard's
        duration that fits in the user's working hours (WORK_HOURS in the user's time zone) on
        the chosen day without overlapping their busy times; None when there is none."""
        if not self.date or not self.account_id or not (0 < (self.duration or 0) <= 24):
            return None
        tz = zone_of(self.time_zone)
        user = self.account_id.user_id or self.env.user
        user_tz = zone_of(user.tz or self.time_zone)
        work_start, work_end = (
            datetime.combine(self.date, time(hour), tzinfo=user_tz).astimezone(timezone.utc)
            for hour in WORK_HOURS
        )
        candidate = _next_quarter(max(work_start, datetime.now(timezone.utc)))
        length = timedelta(minutes=round(self.duration * 60))
        busy = [
            (s.replace(tzinfo=timezone.utc), e.replace(tzinfo=timezone.utc))
            for s, e, _status, _name in self._own_busy(_naive(work_start), _naive(work_end))
        ]
        while candidate + length <= work_end:
            clash = [e for s, e in busy if s < candidate + length and e > candidate]
            if not clash:
                return _hours(_naive(candidate), tz, self.date)
            # On past the busy time in the way.
            candidate = max(candidate + QUARTER, _next_quarter(max(clash)))
        return None

    # --- the day's availability --------------------------------------------------------------

    def _attendees(self):
        return (self.partner_id | self.attendee_ids).filtered("email")

    def _attendee_addresses(self):
        own = normalize_email(self.account_id.address)
        return [
            a
            for a in dict.fromkeys(normalize_email(p.email) for p in self._attendees())
            if a and a != own
        ]

    @api.onchange("date", "time_zone", "account_id", "partner_id", "attendee_ids")
    def _onchange_ask_free_busy(self):
        """Choosing a day (or the people) asks Outlook for the attendees' free/busy."""
        self.free_busy_request_id = self.env["m365.free.busy.request"]._for(
            self.account_id, self.date, self.time_zone, self._attendee_addresses()
        )

    def _own_busy(self, start, end):
        """The user's meetings overlapping [start, end) from the synced calendar (Odoo's
        calendar holds every occurrence of a series as its own event)."""
        user = self.account_id.user_id or self.env.user
        events = self.env["calendar.event"].search(
            [
                ("partner_ids", "in", user.partner_id.id),
                ("show_as", "=", "busy"),
                "|",
                "&",
                ("allday", "=", False),
                "&",
                ("start", "<", end),
                ("stop", ">", start),
                "&",
                ("allday", "=", True),
                "&",
                ("start_date", "<=", self.date),
                ("stop_date", ">=", self.date),
            ],
            order="start",
        )
        slots = []
        for event in events:
            if event.allday:
                slots.append((start, end, "busy", event.name))
            else:
                slots.append((event.start, event.stop, "busy", event.name))
        return slots

    @api.depends("free_busy_request_id", "free_busy_tick")
    def _compute_free_busy_state(self):
        for wizard in self:
            wizard.free_busy_state = wizard.free_busy_request_id.state or False

    @api.depends(
        "free_busy_tick",
        "date",
        "time_zone",
        "start_time",
        "duration",
        "account_id",
        "partner_id",
        "attendee_ids",
        "free_busy_request_id",
        "free_busy_request_id.state",
    )
    def _compute_availability(self):
        for wizard in self:
            wizard.availability_html, wizard.conflict = wizard._availability()

    def _availability(self):
        if not self.date or not self.account_id:
            return False, False
        tz = zone_of(self.time_zone)
        start, end = day_window(self.date, self.time_zone)
        rows = [(self.env._("You"), self.account_id.address, self._own_busy(start, end), None)]
        request = self.free_busy_request_id
        names = {}
        for partner in self._attendees():
            names.setdefault(normalize_email(partner.email), partner.name)
        results = {}
        if request:
            for row in request.result_ids:
                results.setdefault(row.address, []).append(row)
        for address in self._attendee_addresses():
            label = (names.get(address) or address, address)
            if not request or request.state == "pending":
                rows.append((*label, [], self.env._("asking Outlook…")))
                continue
            if request.state == "failed":
                rows.append((*label, [], self.env._("unknown: %(error)s", error=request.error)))
                continue
            found = results.get(address)
            if not found:
                rows.append((*label, [], self.env._("unknown: Outlook gave no schedule")))
            elif found[0].error:
                rows.append((*label, [], self._availability_error(found[0].error)))
            else:
                slots = [
                    (r.start, r.end, (r.status or "busy").lower(), None)
                    for r in found
                    if r.start and r.end and (r.status or "").lower() != "free"
                ]
                rows.append((*label, slots, None if slots else self.env._("free all day")))
        return self._render(rows, tz, start, end)

    def _availability_error(self, error):
        """Why an attendee's free/busy is unknown, in the user's words."""
        if all(part in (error or "").lower() for part in UNRESOLVED):
            return self.env._("unknown: availability not shared outside your organisation")
        return self.env._("unknown: %(error)s", error=error)

    def _render(self, rows, tz, start, end):
        """A day bar per person (busy blocks, the proposed meeting outlined) and the times in
        words underneath. Everything shown is escaped."""
        proposed = (self.start_time or 0.0, (self.start_time or 0.0) + (self.duration or 0.0))
        spans = [proposed]
        for _name, _address, slots, _note in rows:
            spans += [
                (_hours(s, tz, self.date), _hours(e, tz, self.date)) for s, e, _st, _n in slots
            ]
        first = max(0, min([7.0] + [a for a, _b in spans]))
        last = min(24, max([20.0] + [b for _a, b in spans]))
        first, last = int(first), int(-(-last // 1))
        width = max(last - first, 1)

        def pct(hours):
            return max(0.0, min(100.0, (hours - first) * 100.0 / width))

        conflict_with = []
        html = [Markup('<div class="o_m365_availability">')]
        ticks = [Markup('<div class="o_m365_ticks">')]
        for hour in range(first, last + 1, 2 if width > 12 else 1):
            # The labels at the bar's ends lean inwards, so that none is cut off.
            edge = " o_m365_tick_first" if hour == first else ""
            edge = " o_m365_tick_last" if hour == last else edge
            ticks.append(
                Markup('<span class="o_m365_tick%s" style="left:%.2f%%">%s</span>')
                % (edge, pct(hour), f"{hour:02d}:00")
            )
        ticks.append(Markup("</div>"))
        html.append(
            Markup('<div class="o_m365_row o_m365_row_head"><div class="o_m365_who"></div>')
        )
        html.append(Markup('<div class="o_m365_bar o_m365_bar_ticks">'))
        html += ticks
        html.append(Markup("</div></div>"))
        for label, address, slots, note in rows:
            blocks, words = [], []
            for s, e, status, name in slots:
                a, b = _hours(s, tz, self.date), _hours(e, tz, self.date)
                if a < proposed[1] and b > proposed[0]:
                    conflict_with.append(label)
                kind = "tentative" if status == "tentative" else "busy"
                blocks.append(
                    Markup(
                        '<span class="o_m365_slot o_m365_slot_%s" '
                        'style="left:%.2f%%;width:%.2f%%" title="%s"></span>'
                    )
                    % (kind, pct(a), max(pct(b) - pct(a), 0.8), f"{_clock(a)}–{_clock(b)}")
                )
                text = f"{_clock(a)}–{_clock(b)}"
                if name:
                    text += f" {name}"
                elif status != "busy":
                    text += f" ({self.env._(STATUS_WORDS.get(status, status))})"  # pylint: disable=translation-not-lazy
                words.append(escape(text))
            html.append(
                Markup(
                    '<div class="o_m365_row"><div class="o_m365_who" title="%s">'
                    '<div class="o_m365_name">%s</div><div class="o_m365_address">%s</div></div>'
                )
                % (f"{label} <{address}>", label, address)
            )
            html.append(Markup('<div class="o_m365_bar">'))
            html += blocks
            html.append(
                Markup('<span class="o_m365_proposed" style="left:%.2f%%;width:%.2f%%"></span>')
                % (pct(proposed[0]), max(pct(proposed[1]) - pct(proposed[0]), 0.8))
            )
            html.append(Markup("</div>"))
            if note:
                css = "o_m365_asking" if note == self.env._("asking Outlook…") else "text-muted"
                html.append(Markup('<div class="o_m365_times %s">%s</div>') % (css, note))
            elif words:
                html.append(Markup('<div class="o_m365_times">%s</div>') % Markup(", ").join(words))
            else:
                html.append(
                    Markup('<div class="o_m365_times text-muted">%s</div>')
                    % self.env._("no meetings")
                )
            html.append(Markup("</div>"))
        html.append(
            Markup(
                '<div class="o_m365_legend"><span class="o_m365_key o_m365_slot_busy"></span>%s'
                '<span class="o_m365_key o_m365_slot_tentative"></span>%s'
                '<span class="o_m365_key o_m365_key_proposed"></span>%s</div>'
            )
            % (self.env._("busy"), self.env._("tentative"), self.env._("this meeting"))
        )
        html.append(Markup("</div>"))
        conflict = False
        if conflict_with:
            conflict = self.env._(
                "%(start)s–%(end)s overlaps busy time of %(who)s.",
                start=_clock(proposed[0]),
                end=_clock(proposed[1]),
                who=", ".join(dict.fromkeys(conflict_with)),
            )
        return Markup("").join(html), conflict

    def action_refresh(self):
        """Look again (the daemon answers within seconds); a stale question is asked anew."""
        self.ensure_one()
        self.free_busy_request_id = self.env["m365.free.busy.request"]._for(
            self.account_id, self.date, self.time_zone, self._attendee_addresses()
        )
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
            "name": self.env._("Schedule Meeting"),
        }

    # --- confirm ----------------------------------------------------------------------------

    def _check_bookable(self):
        self.ensure_one()
        check_own_usable_account(
            self.env,
            self.account_id,
            self.env._("You can only schedule in your own Microsoft 365 calendar."),
        )
        if not (0 <= self.start_time < 24):
            raise UserError(self.env._("The start time must be between 00:00 and 23:59."))
        if not (0 < self.duration <= 24):
            raise UserError(self.env._("The duration must be more than 0 and at most 24 hours."))
        people = self.partner_id | self.attendee_ids
        if not people:
            raise UserError(self.env._("Add the contact or at least one attendee."))
        missing = people.filtered(
            lambda p: not normalize_email(p.email) or "@" not in (p.email or "")
        )
        if missing:
            raise UserError(
                self.env._(
                    "%(names)s has no email address: Outlook cannot invite them.",
                    names=", ".join(missing.mapped("name")),
                )
            )

    def _event_values(self):
        tz = zone_of(self.time_zone)
        minutes = round(self.start_time * 60)
        local = datetime.combine(self.date, time(minutes // 60, minutes % 60), tzinfo=tz)
        start = local.astimezone(timezone.utc).replace(tzinfo=None)
        stop = start + timedelta(minutes=round(self.duration * 60))
        owner = self.account_id.user_id
        Event = self.env["calendar.event"]
        values = {
            "name": self.subject,
            "start": start,
            "stop": stop,
            "duration": self.duration,
            "allday": False,
            "user_id": owner.id,
            "partner_ids": [
                Command.set((owner.partner_id | self.partner_id | self.attendee_ids).ids)
            ],
            "location": self.location or False,
            "description": self.description or False,
        }
        # Set by the calendar mapping (models/calendar_event.py): the account whose Outlook
        # calendar holds the event, and whether Outlook adds an online meeting.
        if "m365_owner_account_id" in Event._fields:
            values["m365_owner_account_id"] = self.account_id.id
        if self.online_meeting:
            for name in ("m365_is_online_meeting", "m365_online_meeting"):
                if name in Event._fields:
                    values[name] = True
                    break
        return values

    def action_confirm(self):
        self._check_bookable()
        # No Odoo invitation mail: Outlook invites the attendees once the daemon pushed it.
        event = (
            self.env["calendar.event"]
            .with_context(no_mail_to_attendees=True, mail_create_nolog=True)
            .create(self._event_values())
        )
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "success",
                "title": self.env._("Meeting scheduled"),
                "message": self.env._(
                    "%(subject)s is booked in your calendar; Outlook sends the invitations "
                    "within seconds.",
                    subject=event.name,
                ),
                "next": {"type": "ir.actions.act_window_close"},
            },
        }
