"""Odoo's calendar, synced both ways with Outlook by the m365sync daemon.

The contract is the daemon's `CrmGateway` calendar (m365sync.crm.gateway); the embedded
store (m365sync.crm.sqlite_calendar) is the semantic reference. Here:

* **Versions.** ``m365_version`` counts the CRM-side edits of an event: every create, write
  or unlink made WITHOUT the ``m365_sync_origin`` context that touches a synced field
  (`M365_SYNCED_FIELDS`, the attendees' answers included) bumps it and stamps
  ``m365_modified_at``. The daemon's own writes carry the context and never bump, so they are
  never pushed back (no echo). An event is pushed to an account while its version is higher
  than that account's binding's ``pushed_version``.
* **Tombstones.** An event with bindings deleted (or archived) in Odoo is archived and flagged
  ``m365_deleted`` (version bumped) rather than unlinked, until the daemon marks the deletion
  pushed for its last binding; then it is really unlinked.
* **Owner.** ``m365_owner_account_id`` is set at creation when the organizer (``user_id``,
  else the creating user) owns a Microsoft 365 account: the events that account pushes.
* **Series.** An Outlook series is a hidden (archived) master event (``m365_is_series_master``)
  holding Graph's pattern (``m365_graph_recurrence``, JSON) and, when Odoo can express it, a
  ``calendar.recurrence``; its occurrences and exceptions are ordinary events linked to both
  (``m365_series_master_id``, ``recurrence_id``) with their own start and stop, never expanded
  by Odoo. When Odoo cannot express the pattern, ``m365_recurrence_note`` says why, and no
  approximate Odoo recurrence is made.
* **Whole-series changes.** An "all events" or "this and following" edit, deletion or
  archiving (Odoo's ``recurrence_update``, ``action_mass_deletion``, ``action_mass_archive``)
  of a series Outlook holds and the account organizes is carried by its master: Odoo does its
  own rewrite under ``SERIES_KEY`` (no occurrence is bumped or made a tombstone), then the
  master takes the new details, times and pattern (``m365_series_reshaped`` when times or
  pattern changed), or is trimmed ("this and following": the edited event becomes the base of
  a new series, pushed as a create), or becomes a tombstone (the series is deleted).
* **No Odoo invitations for synced events.** Outlook sends them: `_skip_send_mail_status_update`
  answers True for events owned by an account, bound to one or carrying an iCalUId, and every
  mail to attendees is skipped under the daemon's context.
* **Privacy.** (The mapping itself is the daemon's, m365sync.sync.event_mapping; the API
  returns stored fields and writes the values it is given.) Odoo's private and "Only internal
  users" (confidential) events go to Outlook
  whole (details and attendees: Outlook sends the invitations) with the sensitivity
  ``private``, Outlook's own privacy (an Outlook confidential one keeps ``confidential``).
  From Outlook, a private or confidential event not yet in Odoo arrives as busy time only
  (privacy private, named "Busy"); one bound to an Odoo event comes with ``keep_details``: it
  updates the times, show-as, privacy (private, or confidential if Odoo had it) and series,
  and keeps the name, description, location, online meeting, attendees and the Odoo user
  organizing it (``user_id``); so does a private copy another mailbox holds of an Odoo meeting
  (same iCalUId, e.g. an invited colleague's).
* **No Odoo reminders for events from Outlook.** The daemon creates them without alarms (Odoo's
  default ones included) and clears any on its updates of events it made; events made in Odoo
  (they have an owner account) keep theirs.
"""

import json

from odoo.exceptions import AccessError

from odoo import Command, api, fields, models

ORIGIN_KEY = "m365_sync_origin"
# Set while Odoo rewrites the occurrences of a series Outlook holds ("all events" or "this and
# following" edits and deletions): those writes are carried by the series master, not pushed
# occurrence by occurrence.
SERIES_KEY = "m365_series_rewrite"
SERIES_SCOPES = ("all_events", "future_events")
# What a series' occurrences share with its master (copied to the master after an edit).
SERIES_SHARED_FIELDS = (
    "name",
    "description",
    "location",
    "privacy",
    "show_as",
    "videocall_location",
    "m365_is_online_meeting",
)
SERIES_TIME_FIELDS = frozenset({"start", "stop", "allday", "start_date", "stop_date", "duration"})
RECURRENCE_FIELDS = frozenset(
    {
        "recurrency", "rrule", "rrule_type", "interval", "count", "end_type", "until",
        "month_by", "day", "weekday", "byday", "event_tz",
        "mon", "tue", "wed", "thu", "fri", "sat", "sun",
    }
)
MANAGER_GROUP = "crm_microsoft365.group_m365_manager"
DAEMON_GROUP = "crm_microsoft365.group_m365_daemon"

# A CRM edit of one of these is pushed to Outlook.
M365_SYNCED_FIELDS = frozenset(
    {
        "name",
        "start",
        "stop",
        "allday",
        "start_date",
        "stop_date",
        "duration",
        "description",
        "location",
        "partner_ids",
        "attendee_ids",
        "privacy",
        "show_as",
        "videocall_location",
        "recurrence_id",
        "recurrency",
        "m365_is_online_meeting",
        "byday",
        "until",
        "rrule_type",
        "month_by",
        "event_tz",
        "rrule",
        "interval",
        "count",
        "end_type",
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
        "day",
        "weekday",
    }
)

# Written only by the daemon (through m365.daemon.api, which works under the origin context).
M365_DAEMON_FIELDS = frozenset(
    {
        "m365_ical_uid",
        "m365_version",
        "m365_modified_at",
        "m365_deleted",
        "m365_binding_ids",
        "m365_online_meeting_url",
        "m365_event_type",
        "m365_is_series_master",
        "m365_series_master_id",
        "m365_original_start",
        "m365_graph_recurrence",
        "m365_recurrence_note",
        "m365_time_zone",
        "m365_organizer_address",
        "m365_organizer_name",
        "m365_sensitivity",
        "m365_show_as",
        "m365_is_cancelled",
        "m365_extra_attendees",
        "m365_company_ids",
        "m365_series_reshaped",
    }
)

EVENT_TYPES = [
    ("singleInstance", "Single"),
    ("occurrence", "Occurrence"),
    ("exception", "Exception"),
    ("seriesMaster", "Series"),
]


class CalendarEvent(models.Model):
    _inherit = "calendar.event"

    m365_ical_uid = fields.Char(string="iCalUId", index=True, copy=False, readonly=True)
    m365_version = fields.Integer(
        string="Sync Version", default=1, copy=False, readonly=True,
        help="Counts the edits made in Odoo; Outlook has the version its binding records.",
    )
    m365_modified_at = fields.Datetime(
        string="Last Edited for Sync", copy=False, readonly=True,
        default=lambda self: self.env.cr.now(),
    )
    m365_deleted = fields.Boolean(
        string="Deleted, Outlook Not Yet Told", copy=False, readonly=True, index=True
    )
    m365_owner_account_id = fields.Many2one(
        "m365.account", string="Microsoft 365 Account", copy=False, index=True,
        ondelete="set null",
        help="The connected mailbox this meeting is created in and updated through.",
    )
    m365_binding_ids = fields.One2many(
        "m365.event.binding", "event_id", string="Outlook Copies", copy=False, readonly=True,
        groups="crm_microsoft365.group_m365_manager,crm_microsoft365.group_m365_daemon",
    )
    m365_online_meeting_url = fields.Char(string="Online Meeting Link", copy=False, readonly=True)
    m365_is_online_meeting = fields.Boolean(
        string="Online Meeting (Teams)", copy=False,
        help="Outlook attaches its default online meeting and fills in the join link.",
    )
    m365_event_type = fields.Selection(EVENT_TYPES, string="Outlook Type", copy=False, readonly=True)
    m365_is_series_master = fields.Boolean(copy=False, readonly=True, index=True)
    m365_series_master_id = fields.Many2one(
        "calendar.event", string="Outlook Series", copy=False, readonly=True, index=True,
        ondelete="set null", context={"active_test": False},
    )
    m365_original_start = fields.Datetime(copy=False, readonly=True)
    m365_series_reshaped = fields.Boolean(
        copy=False, readonly=True,
        help="A series master whose pattern, start or end changed in Odoo since its last push "
        "(a push of its other details leaves them out, so Outlook keeps the exceptions).",
    )
    m365_graph_recurrence = fields.Text(
        string="Outlook Recurrence", copy=False, readonly=True,
        help="Graph's patternedRecurrence of the series, as JSON (the reference).",
    )
    m365_recurrence_note = fields.Char(
        string="Recurrence Note", copy=False, readonly=True,
        help="Why Odoo's own recurrence cannot express this Outlook series.",
    )
    m365_recurrence_notice = fields.Char(compute="_compute_m365_series")
    m365_series_pattern = fields.Text(compute="_compute_m365_series")
    m365_time_zone = fields.Char(copy=False, readonly=True)
    m365_organizer_address = fields.Char(string="Outlook Organizer", copy=False, readonly=True)
    m365_organizer_name = fields.Char(copy=False, readonly=True)
    m365_sensitivity = fields.Char(copy=False, readonly=True)
    m365_show_as = fields.Char(copy=False, readonly=True)
    m365_is_cancelled = fields.Boolean(string="Cancelled in Outlook", copy=False, readonly=True)
    m365_extra_attendees = fields.Text(
        copy=False, readonly=True,
        help="Outlook attendees that match no contact (JSON), kept so a push keeps them.",
    )
    m365_company_ids = fields.Many2many(
        "res.partner", "calendar_event_m365_company_rel", "event_id", "partner_id",
        string="Companies", copy=False, readonly=True,
        help="Companies the Outlook attendees matched by their work domain.",
    )
    m365_sync_state = fields.Selection(
        [
            ("none", "Not synced"),
            ("pending", "Waiting for the next sync"),
            ("synced", "In Outlook"),
            ("deleting", "Deleted; Outlook is told at the next sync"),
        ],
        string="Outlook Sync",
        compute="_compute_m365_sync_state",
    )
    m365_synced_accounts = fields.Char(
        string="Synced Mailboxes", compute="_compute_m365_sync_state"
    )

    # --- computes ----------------------------------------------------------------------------

    @api.depends("m365_series_master_id", "m365_recurrence_note", "m365_graph_recurrence")
    def _compute_m365_series(self):
        for event in self:
            master = event.sudo().m365_series_master_id or event
            event.m365_recurrence_notice = master.m365_recurrence_note or False
            event.m365_series_pattern = master.m365_graph_recurrence or False

    @api.depends("m365_version", "m365_deleted", "m365_owner_account_id")
    def _compute_m365_sync_state(self):
        # sudo: the form shows whether and where the meeting is synced; bindings themselves are
        # the daemon's state and stay hidden.
        for event in self:
            bindings = event.sudo().m365_binding_ids if event.id else False
            event.m365_synced_accounts = ", ".join(bindings.account_id.mapped("address")) if bindings else False
            if event.m365_deleted:
                event.m365_sync_state = "deleting"
            elif bindings and all(b.pushed_version >= event.m365_version for b in bindings):
                event.m365_sync_state = "synced"
            elif bindings or event.sudo().m365_owner_account_id:
                event.m365_sync_state = "pending"
            else:
                event.m365_sync_state = "none"

    # --- helpers ----------------------------------------------------------------------------

    def _m365_is_origin(self):
        return bool(self.env.context.get(ORIGIN_KEY))

    def _m365_check_write_rights(self, vals_list):
        """The daemon's fields are refused to ordinary writes; the owner account must be one of
        the user's own (a manager may choose any)."""
        if self.env.su or self._m365_is_origin():
            return
        for vals in vals_list:
            protected = M365_DAEMON_FIELDS & set(vals)
            if protected and not self.env.user.has_group(DAEMON_GROUP):
                raise AccessError(
                    self.env._(
                        "Only the m365sync daemon may change %(fields)s of a meeting.",
                        fields=", ".join(sorted(protected)),
                    )
                )
            account_id = vals.get("m365_owner_account_id")
            if account_id and not self.env.user.has_group(MANAGER_GROUP):
                account = self.env["m365.account"].sudo().browse(account_id)
                if account.user_id != self.env.user:
                    raise AccessError(
                        self.env._("A meeting can only be synced through your own mailbox.")
                    )

    @api.model
    def _m365_account_of(self, user_id):
        if not user_id:
            return self.env["m365.account"]
        # sudo: which mailbox a user owns decides where their meetings go; record rules would
        # hide a colleague's account from a user scheduling for them.
        return self.env["m365.account"].sudo().search(
            [("user_id", "=", int(user_id))], order="id", limit=1
        )

    def _m365_bump(self):
        """A CRM-side edit: version + 1, so the change is pushed."""
        ids = tuple(self.ids)
        if not ids:
            return
        self.flush_recordset(["m365_version", "m365_modified_at"])
        self.env.cr.execute(
            "UPDATE calendar_event SET m365_version = COALESCE(m365_version, 0) + 1, "
            "m365_modified_at = %s WHERE id IN %s",
            (self.env.cr.now(), ids),
        )
        self.invalidate_recordset(["m365_version", "m365_modified_at"])
        self._m365_request_push()

    def _m365_request_push(self):
        """Ask the daemon for a cycle of the accounts these events go to, so a meeting made or
        changed in Odoo reaches Outlook within seconds (as Compose Email's mail does), not at
        the next sync interval."""
        # sudo: the owner account and bindings are the daemon's; the user's edit that calls
        # this already passed the access checks.
        events = self.sudo().with_context(active_test=False)
        accounts = events.m365_owner_account_id | events.m365_binding_ids.account_id
        if accounts:
            accounts._request_sync()

    def _m365_bound(self):
        # sudo: bindings are the daemon's; whether one exists decides between delete and
        # tombstone.
        return self.with_context(active_test=False).filtered(lambda e: e.sudo().m365_binding_ids)

    def _m365_synced_from_outlook(self):
        """Hook: the events one page from Outlook created or changed, after the page is stored
        (the daemon's sudo env, ``m365_sync_origin`` set). Glue modules extend it."""
        return True

    def _m365_extra_attendees(self):
        self.ensure_one()
        try:
            lines = json.loads(self.m365_extra_attendees or "[]")
        except ValueError:
            return []
        return lines if isinstance(lines, list) else []

    # --- CRUD -------------------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        if self._m365_is_origin():
            return super().create(vals_list)
        self._m365_check_write_rights(vals_list)
        for vals in vals_list:
            if "m365_owner_account_id" not in vals:
                user_id = vals.get(
                    "user_id", self.env.context.get("default_user_id", self.env.uid)
                )
                account = self._m365_account_of(user_id)
                if account:
                    vals["m365_owner_account_id"] = account.id
        events = super().create(vals_list)
        events._m365_request_push()
        return events

    def write(self, vals):
        if self._m365_is_origin():
            return super().write(vals)
        self._m365_check_write_rights([vals])
        if self.env.context.get(SERIES_KEY):
            return super().write(vals)
        scope = vals.get("recurrence_update")
        if scope in SERIES_SCOPES and len(self) == 1 and self.recurrence_id:
            master = self._m365_pushed_master()
            if master:
                return self._m365_write_series(master, scope, vals)
        creating = self.env.context.get("is_calendar_event_new")
        bump = not creating and bool(M365_SYNCED_FIELDS & set(vals))
        result = super().write(vals)
        if "active" in vals and not creating:
            # Archiving a synced meeting deletes it in Outlook; restoring it before the next
            # sync takes the deletion back.
            bound = self._m365_bound()
            if bound:
                # sudo: the tombstone flag is the daemon's field; the user's own write above
                # already passed the access checks.
                bound.sudo().with_context(**{ORIGIN_KEY: True}).write(
                    {"m365_deleted": not vals["active"]}
                )
        if bump:
            events = self.with_context(active_test=False).exists()
            masters = events.filtered("m365_is_series_master")
            if masters and (SERIES_TIME_FIELDS | RECURRENCE_FIELDS) & set(vals):
                masters.sudo().with_context(**{ORIGIN_KEY: True}).write(
                    {"m365_series_reshaped": True}
                )
            events._m365_bump()
        return result

    def unlink(self):
        if not self or self._m365_is_origin() or self.env.context.get(SERIES_KEY):
            return super().unlink()
        bound = self._m365_bound()
        if bound:
            bound.check_access("unlink")
            # sudo: see write(); the user may delete these meetings (checked just above).
            bound.sudo().with_context(**{ORIGIN_KEY: True}).write(
                {"active": False, "m365_deleted": True}
            )
            bound._m365_bump()
        return super(CalendarEvent, self - bound).unlink()

    # --- whole-series edits and deletions ---------------------------------------------------

    def _m365_pushed_master(self):
        """The hidden master of this occurrence's series when Outlook holds the series (the
        master has a binding), else an empty recordset."""
        self.ensure_one()
        # sudo: masters are hidden and their bindings are the daemon's.
        event = self.sudo().with_context(active_test=False)
        master = event.m365_series_master_id
        if not master and event.recurrence_id:
            master = event.search(
                [("recurrence_id", "=", event.recurrence_id.id), ("m365_is_series_master", "=", True)],
                limit=1,
            )
        if not master or not master.m365_binding_ids or master.m365_deleted:
            return self.browse()
        # Only its organizer's mailbox changes a series; someone else's stays as Odoo does it
        # (its occurrences' edits are not pushed, only the user's answers).
        organizer = (master.m365_organizer_address or "").lower()
        accounts = master.m365_binding_ids.account_id | master.m365_owner_account_id
        if organizer and organizer not in accounts.mapped("address_normalized"):
            return self.browse()
        return master

    def _m365_series_events(self, master, recurrence):
        """Every event of the series, archived ones included, the master left out."""
        domain = [("m365_series_master_id", "=", master.id)]
        if recurrence:
            domain = ["|", ("recurrence_id", "=", recurrence.id), *domain]
        return self.sudo().with_context(active_test=False).search(
            [("m365_is_series_master", "=", False), *domain]
        )

    def _m365_write_series(self, master, scope, vals):
        """An "all events" or "this and following" edit of a series Outlook holds.

        Odoo does it its own way (``calendar.event.write``: "all events" writes every occurrence,
        or, when times or the pattern change, archives them and rebuilds the recurrence from its
        base event; "this and following" ends the recurrence before this event and starts a new
        one from it). Outlook gets it as one series change: the master is patched (its details,
        times and pattern), or, for "this and following", the old series ends before this
        event (its recurrence's end date) and this event is pushed as a new series. The
        occurrences are not pushed one by one; Outlook's own come back and are bound again by
        their time slot.
        """
        self.ensure_one()
        recurrence = self.recurrence_id
        before = self._m365_series_events(master, recurrence)
        active_before = before.filtered("active")
        base = recurrence.base_event_id or self
        edge = scope == "future_events" and self == base
        # write() passes a write under SERIES_KEY straight to Odoo's.
        result = self.with_context(**{SERIES_KEY: True}).write(vals)
        sudo = {ORIGIN_KEY: True, "active_test": False}
        Binding = self.env["m365.event.binding"].sudo()
        master = master.sudo().with_context(**sudo)
        if scope == "all_events" or edge:
            if recurrence.exists():
                # Only details changed: Odoo wrote them on every occurrence.
                source = self if self.active else base
                master.write(self._m365_master_values(source.sudo(), reshaped=False))
            else:
                # Odoo rebuilt the series from its base event: times or pattern changed.
                base = base.sudo().with_context(**sudo)
                new_recurrence = base.recurrence_id
                values = self._m365_master_values(base, reshaped=True)
                values.update(
                    recurrence_id=new_recurrence.id or False,
                    m365_graph_recurrence=False,
                    m365_recurrence_note=False,
                )
                master.write(values)
                events = self._m365_series_events(master, new_recurrence) | before
                # Outlook makes new occurrences for the new pattern: the old bindings go, the
                # new occurrences are bound by their slot when they come back.
                Binding.search([("event_id", "in", events.ids)]).unlink()
                # Occurrences deleted in Odoo and not yet in Outlook: the new series replaces
                # them (Odoo rebuilt every occurrence from the rule too).
                before.exists().filtered("m365_deleted").unlink()
                if new_recurrence:
                    new_recurrence.calendar_event_ids.with_context(**sudo).write(
                        {"m365_series_master_id": master.id}
                    )
            master._m365_bump()
            return result
        # "This and following": the old series ends before this event (Odoo trimmed its
        # recurrence), this event starts a new series pushed as such.
        owner = master.m365_owner_account_id or Binding.search(
            [("event_id", "=", master.id)], order="id", limit=1
        ).account_id
        mine = self.sudo().with_context(**sudo)
        Binding.search([("event_id", "=", mine.id)]).unlink()
        detached = active_before.exists().filtered(lambda e: not e.active)
        Binding.search([("event_id", "in", detached.ids)]).unlink()
        mine.write(
            {
                "m365_series_master_id": False,
                "m365_event_type": False,
                "m365_original_start": False,
                "m365_ical_uid": False,
                "m365_owner_account_id": owner.id or False,
            }
        )
        if mine.recurrence_id:
            mine.recurrence_id.calendar_event_ids.filtered(
                lambda e: not e.m365_owner_account_id
            ).write({"m365_owner_account_id": owner.id or False})
        mine._m365_bump()
        if recurrence.exists():
            master.write({"m365_graph_recurrence": False, "m365_recurrence_note": False,
                          "m365_series_reshaped": True})
            master._m365_bump()
        else:
            master.write({"m365_deleted": True})
            master._m365_bump()
        return result

    @staticmethod
    def _m365_master_values(source, *, reshaped):
        values = {name: source[name] for name in SERIES_SHARED_FIELDS}
        values["partner_ids"] = [Command.set(source.partner_ids.ids)]
        if reshaped:
            values.update(
                start=source.start,
                stop=source.stop,
                allday=source.allday,
                m365_series_reshaped=True,
            )
        return values

    def _m365_remove_series(self, scope, action):
        """Delete or archive "all events" or "this and following" of a series Outlook holds:
        the master is deleted in Outlook (the series with it), or its series ends before this
        event; the occurrences go in Odoo without being pushed one by one."""
        self.ensure_one()
        if self._m365_is_origin() or self.env.context.get(SERIES_KEY):
            return None  # the daemon's own, or Odoo rewriting a series (_m365_write_series)
        master = self._m365_pushed_master()
        if not master:
            return None
        recurrence = self.recurrence_id
        sudo = {ORIGIN_KEY: True, "active_test": False}
        master = master.with_context(**sudo)
        series = self.with_context(**{SERIES_KEY: True})
        if scope == "future_events" and recurrence and self != recurrence.base_event_id:
            detached = recurrence._stop_at(series)
            if action == "deletion":
                detached.with_context(**{SERIES_KEY: True}).unlink()
            else:
                detached.with_context(**{SERIES_KEY: True}).write({"active": False})
            if recurrence.exists():
                master.write({"m365_graph_recurrence": False, "m365_recurrence_note": False,
                              "m365_series_reshaped": True})
                master._m365_bump()
                return True
        else:
            # Under SERIES_KEY the overrides below leave it to Odoo.
            getattr(series, f"action_mass_{action}")("all_events")
        master.write({"m365_deleted": True})
        master._m365_bump()
        return True

    def action_mass_deletion(self, recurrence_update_setting):
        if recurrence_update_setting in SERIES_SCOPES:
            done = self._m365_remove_series(recurrence_update_setting, "deletion")
            if done:
                return done
        return super().action_mass_deletion(recurrence_update_setting)

    def action_mass_archive(self, recurrence_update_setting):
        if recurrence_update_setting in SERIES_SCOPES:
            done = self._m365_remove_series(recurrence_update_setting, "archive")
            if done:
                return done
        return super().action_mass_archive(recurrence_update_setting)

    # --- mail -------------------------------------------------------------------------------

    def _skip_send_mail_status_update(self):
        """Outlook sends the invitations of synced meetings, not Odoo."""
        if self._m365_is_origin():
            return True
        event = self.sudo()
        if event.m365_owner_account_id or event.m365_ical_uid or event.m365_binding_ids:
            return True
        return super()._skip_send_mail_status_update()


class CalendarAttendee(models.Model):
    _inherit = "calendar.attendee"

    def write(self, vals):
        result = super().write(vals)
        if (
            "state" in vals
            and not self.env.context.get(ORIGIN_KEY)
            and not self.env.context.get(SERIES_KEY)
            and not self.env.context.get("is_calendar_event_new")
        ):
            # The user's answer to an invitation goes back to Outlook too.
            self.event_id._m365_bump()
        return result

    def _send_mail_to_attendees(self, mail_template, force_send=False):
        if self.env.context.get(ORIGIN_KEY):
            return False
        return super()._send_mail_to_attendees(mail_template, force_send=force_send)


class ResPartner(models.Model):
    _inherit = "res.partner"

    m365_upcoming_meeting_ids = fields.Many2many(
        "calendar.event",
        string="Upcoming Meetings",
        compute="_compute_m365_meetings",
        help="Meetings with this contact (a company: or its contacts) that have not ended, "
        "occurrences of recurring meetings included, soonest first.",
    )
    m365_past_meeting_ids = fields.Many2many(
        "calendar.event",
        string="Past Meetings",
        compute="_compute_m365_meetings",
        help="Meetings with this contact that have ended, the latest first.",
    )

    def _m365_meeting_domain(self, since=None):
        """The one rule of "a meeting with this partner": the partner, its contacts or its
        company (matched by the daemon) attend; Outlook series masters, meetings deleted or
        cancelled in Outlook are not meetings. With ``since``: those not ended by then. The
        partner form's count and tab, Odoo's Meetings button and the daemon's RPC all use it.
        The daemon's embedded store holds the same rule (m365sync.sync.meetings); one table of
        cases, ``tests/meeting_cases.json``, pins both."""
        self.ensure_one()
        partners = self | self.with_context(active_test=False).child_ids
        domain = [
            ("m365_is_series_master", "=", False),
            ("m365_deleted", "=", False),
            ("m365_is_cancelled", "=", False),
            "|",
            ("partner_ids", "in", partners.ids),
            ("m365_company_ids", "in", partners.ids),
        ]
        if since is None:
            return domain
        return [
            *domain,
            "|",
            "&",
            ("allday", "=", False),
            ("stop", ">=", since),
            "&",
            ("allday", "=", True),
            ("stop_date", ">=", since.date()),
        ]

    def _compute_meeting(self):
        """Odoo's Meetings button (its count and the calendar it opens) by the same rule as the
        Meetings tab, so the two never disagree."""
        Event = self.env["calendar.event"]
        return {partner.id: Event.search(partner._m365_meeting_domain()).ids for partner in self}

    def schedule_meeting(self):
        """Odoo's Meetings button opens the meetings it counts (Odoo adds every event the
        partner attends, cancelled ones included)."""
        action = super().schedule_meeting()
        action["domain"] = [("id", "in", self._compute_meeting()[self.id])]
        return action

    def _compute_m365_meetings(self):
        Event = self.env["calendar.event"]
        now = fields.Datetime.now()
        for partner in self:
            if not partner.id:
                partner.m365_upcoming_meeting_ids = partner.m365_past_meeting_ids = Event
                continue
            everything = Event.search(partner._m365_meeting_domain(), order="start desc, id desc")
            upcoming = everything.filtered_domain(partner._m365_meeting_domain(now))
            partner.m365_upcoming_meeting_ids = upcoming.sorted(lambda e: (e.start, e.id))
            partner.m365_past_meeting_ids = everything - upcoming
