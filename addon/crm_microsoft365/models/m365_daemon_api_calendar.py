"""The daemon's RPC API, calendar half: ``store_event_page``, ``event_bindings``,
``meeting_candidates``, ``last_event_id``, ``unconfirmed_series_ids``, ``unconfirmed_occurrences``,
``remove_cancelled_occurrences``, ``event_changes_to_push``, ``mark_event_pushed``,
``upcoming_events_for_partner``.

Which Outlook items are echoes and which are the same meeting as an Odoo event are the
daemon's decisions (m365sync.sync.calendar); ``store_event_page`` writes each item where the
daemon placed it, or refuses a plan made on state that moved since (``M365:StalePlan:``).

**The field mapping is the daemon's** (m365sync.sync.event_mapping, m365sync.sync.attendees).
Outbound, each pending change carries ``odoo_event``: the event's stored fields as they are
(privacy, the organizer's default privacy, show-as, Outlook's last sensitivity and show-as,
all-day days, times, zones, series facts), and ``odoo_people``: its attendee rows (partner,
address, name, state, whether it is the account user's), the kept Outlook attendees that
matched no contact, the stored Outlook organizer, the user it belongs to and the account's
mailbox; the daemon maps them to Outlook's sensitivity, show-as, dates, zone, type, organizer,
attendees and the owner's own answer, and decides which events are pushed (Odoo's own
occurrences of a series are not). Inbound, each item carries ``odoo_values`` (name or
``subject_placeholder``, privacy, show-as, times...), ``odoo_kept_values`` (stored values
those writes leave, e.g. "Only internal users" when Outlook says private) and
``odoo_people_values`` (the organizer, each named contact's attendee state, the states of the
organizing user and of the account's user, company ids, the lines that matched no contact),
written as given. What stays here is what only Odoo's records can resolve: which ids exist,
the organizing user (by the organizer's address) and the account's user, the video call link,
the series' records, and the translated "Busy" / "(No subject)" label.

``mark_event_pushed`` records a push under the version it expected and answers whether the
event was still at it: a user's edit made while the push was in flight is never overwritten
(the event is not removed, the newer version stays pending). Whether the push carried the
series' pattern and times (which ends a pending reshape) is the daemon's word
(``shape_pushed``), never guessed here from which account recorded it.

Conventions as in ``m365_daemon_api`` (one ``payload`` dict in wire form, wire-form results,
None -> False, ``M365:...`` errors, the daemon's group, sudo + ``m365_sync_origin``). The
semantics are those of the embedded store (m365sync.crm.sqlite_calendar); the Odoo mapping
is described in ``calendar_event``.

**Recurrence: who converts.** Graph's ``patternedRecurrence`` and Odoo's ``calendar.recurrence``
fields are converted by the daemon's Odoo adapter (m365sync.crm.odoo_recurrence.to_odoo /
from_odoo), never here:

* Inbound, each StoredEvent of a series master carries, beside ``event.recurrence`` (Graph's
  pattern, wire form, kept as JSON in ``m365_graph_recurrence``), the keys
  ``odoo_recurrence``: a dict of ``calendar.recurrence`` field values, or null when Odoo cannot
  express the pattern, and then ``odoo_recurrence_note``: the sentence saying why (kept in
  ``m365_recurrence_note`` and shown on the form; no approximate Odoo recurrence is made).
* Outbound, a change of a series made in Odoo (a ``calendar.recurrence`` without an Outlook
  pattern) carries a key ``odoo_recurrence`` beside the CrmEventChange fields: the recurrence's
  field values plus ``week_start`` (the organizer's language week start, ``monday``...), and
  ``event.recurrence`` is null; the adapter converts with ``from_odoo``. A series that came from
  Outlook is sent back with ``event.recurrence`` = its stored Graph pattern (and no
  ``odoo_recurrence``).
* Such an Odoo series is pushed once, as its base event (``crm_event_id``); when the daemon marks
  it pushed, a hidden master event is made to hold the series' binding, and the series'
  occurrences are bound as Outlook's occurrences come back (matched by their time slot), so
  Odoo's own occurrences are never pushed as separate meetings.
* A change of a series master already in Outlook carries ``reshapes_series``: true when its
  pattern or times changed since its last push, false when only its details did (the daemon
  then leaves the pattern and times out of its PATCH, so Outlook keeps the exceptions).
"""

# The "M365:..." errors are machine codes, hence no translation for them.
# pylint: disable=translation-required

import json
from datetime import timedelta

import pytz
from odoo.exceptions import UserError

from odoo import Command, api, models

from .calendar_event import ORIGIN_KEY
from .m365_daemon_api import _none_to_false, _opt, _PageWriter
from .m365_tools import dt_from_wire, dt_to_wire, normalize_email

# Odoo's attendee states (the daemon maps Graph's answers onto them, m365sync.sync.attendees).
ATTENDEE_STATES = frozenset({"accepted", "declined", "tentative", "needsAction"})
# What a private Outlook event bound to an Odoo event (``keep_details``) leaves as Odoo has it
# beside the details the daemon leaves out of ``odoo_values``: the attendees, the Odoo user
# organizing it and the video call link (it comes as busy time only).
PEOPLE_FIELDS = (
    "user_id",
    "videocall_location",
    "partner_ids",
    "m365_company_ids",
    "m365_extra_attendees",
)
# ``odoo_values`` that are datetimes (wire: ISO-8601 text).
DATETIME_FIELDS = frozenset({"start", "stop", "m365_original_start"})
# The fields the daemon's mapping may write (``odoo_values``): what an Outlook item decides.
# The owner account, versions, bindings and people are never among them (the API's own rule).
MAPPED_FIELDS = frozenset(
    {
        "name",
        "description",
        "location",
        "privacy",
        "show_as",
        "allday",
        "start",
        "stop",
        "active",
        "m365_event_type",
        "m365_is_series_master",
        "m365_original_start",
        "m365_time_zone",
        "m365_sensitivity",
        "m365_show_as",
        "m365_is_cancelled",
        "m365_online_meeting_url",
        "m365_is_online_meeting",
        "m365_deleted",
    }
)
WEEK_STARTS = {
    "1": "monday",
    "2": "tuesday",
    "3": "wednesday",
    "4": "thursday",
    "5": "friday",
    "6": "saturday",
    "7": "sunday",
}
# What the daemon's inbound writes also switch off: Odoo's reminders and mails to attendees.
INBOUND = {
    ORIGIN_KEY: True,
    "dont_notify": True,
    "no_mail_to_attendees": True,
    "mail_create_nolog": True,
    "mail_create_nosubscribe": True,
    "active_test": False,
}


def _date_text(value):
    return value.isoformat() if value else None


class M365DaemonApiCalendar(models.AbstractModel):
    _inherit = "m365.daemon.api"

    # --- inbound: Outlook -> CRM ----------------------------------------------------------------

    @api.model
    def store_event_page(self, payload):
        """Lease check, removals, upserts (series masters first) and the cursor, in this one
        RPC transaction. ``PageResult``: created, updated (an item with a new change key),
        linked (the same meeting brought by another mailbox, or an Odoo series' occurrence
        Outlook sent back), removed (bindings); a replayed page gives zeros. A stored event
        with ``keep_details`` (a private Outlook event already bound: it comes as busy time)
        updates the bound event's times, show-as, privacy and series, and keeps its name,
        description, location, online meeting, attendees and organizing user; so does a private
        item linked to an event another mailbox brought (same iCalUId), busy time as well."""
        env = self._daemon_env()
        env = env(context=dict(env.context, **INBOUND))
        page = payload["page"]
        lease = _opt(payload.get("lease"))
        account_id = int(page["account_id"])
        if lease:
            self._check_lease(env, lease, account_id)
        else:
            self._account(env, account_id, lock=True)
        writer = _EventPageWriter(env, env["m365.account"].browse(account_id))
        for graph_id in page.get("removed_ids") or []:
            writer.unbind(graph_id)
        upserts = list(page.get("upserts") or [])
        # Masters first, whatever order the page came in (stable: the rest keep theirs).
        upserts.sort(key=lambda s: (s.get("event") or {}).get("event_type") != "seriesMaster")
        writer.lock(upserts)
        for stored in upserts:
            writer.upsert(stored)
        writer.finish()
        _PageWriter(env, account_id, page["calendar_id"]).store_cursor(
            page["cursor"], page.get("skipped") or {}
        )
        return writer.result()

    @api.model
    def event_bindings(self, payload):
        env = self._daemon_env()
        wanted = list(dict.fromkeys(payload.get("graph_ids") or []))
        found = {}
        Binding = env["m365.event.binding"]
        for start in range(0, len(wanted), 500):
            for binding in Binding.search(
                [
                    ("account_id", "=", int(payload["account_id"])),
                    ("graph_id", "in", wanted[start : start + 500]),
                ]
            ):
                event = binding.event_id
                found[binding.graph_id] = {
                    "crm_event_id": event.id,
                    "graph_id": binding.graph_id,
                    "change_key": binding.change_key or None,
                    "version": event.m365_version,
                    "pushed_version": binding.pushed_version,
                    "crm_modified_at": dt_to_wire(event.m365_modified_at),
                }
        return _none_to_false(found)

    @api.model
    def bound_event_ids(self, payload):
        """The Outlook ids bound to the account, sorted (a full calendar round checks those it
        did not list: Outlook may have deleted them)."""
        env = self._daemon_env()
        bindings = env["m365.event.binding"].search(
            [("account_id", "=", int(payload["account_id"]))]
        )
        return sorted(bindings.mapped("graph_id"))

    @api.model
    def unconfirmed_series_ids(self, payload):
        """The Outlook ids of the account's bound series masters none of whose occurrences is
        bound to the account, sorted: a series made (or reshaped) in Odoo whose occurrences
        Outlook has not listed yet (the daemon asks Outlook whether it still holds them)."""
        env = self._daemon_env()
        account_id = int(payload["account_id"])
        Binding = env["m365.event.binding"]
        masters = Binding.search(
            [("account_id", "=", account_id), ("event_id.m365_is_series_master", "=", True)]
        )
        confirmed = Binding.search(
            [
                ("account_id", "=", account_id),
                ("event_id.m365_series_master_id", "in", masters.event_id.ids),
            ]
        ).event_id.m365_series_master_id
        return sorted(masters.filtered(lambda b: b.event_id not in confirmed).mapped("graph_id"))

    @api.model
    def unconfirmed_occurrences(self, payload):
        """The account's bound series masters with no Odoo change pending (not deleted, their
        version pushed), newest first, at most ``limit``, each with its own occurrences starting
        in [start, end) that no mailbox holds, in slot order (Odoo's expansion of the series, not bound to any
        account; deleted, cancelled and archived ones left out): the daemon asks Outlook for the
        series' instances and removes those Outlook cancelled before they came back."""
        env = self._daemon_env()
        account = self._account(env, payload["account_id"])
        start, end = dt_from_wire(payload["start"]), dt_from_wire(payload["end"])
        limit = int(payload["limit"])
        Event = env["calendar.event"].with_context(active_test=False)
        bindings = env["m365.event.binding"].search(
            [("account_id", "=", account.id), ("event_id.m365_is_series_master", "=", True)]
        )
        current = bindings.filtered(
            lambda b: not b.event_id.m365_deleted and b.event_id.m365_version == b.pushed_version
        )
        masters = current.event_id
        if not masters or limit <= 0:
            return []
        # One search for every such series' unbound occurrences near the window (all-day
        # ones carry a start too), then each one's slot checked exactly.
        recurrences = masters.recurrence_id
        series = [("m365_series_master_id", "in", masters.ids)]
        if recurrences:
            series = ["|", ("recurrence_id", "in", recurrences.ids), *series]
        candidates = Event.search(
            [("m365_is_series_master", "=", False), *series, ("active", "=", True),
             ("m365_deleted", "=", False), ("m365_is_cancelled", "=", False),
             ("m365_binding_ids", "=", False), ("start", ">=", start - timedelta(days=1)),
             ("start", "<", end + timedelta(days=1))],
            order="start, id",
        )  # fmt: skip
        master_of_recurrence = {m.recurrence_id.id: m for m in masters if m.recurrence_id}
        grouped = {}
        for event in candidates:
            master = event.m365_series_master_id
            if master not in masters:
                master = master_of_recurrence.get(event.recurrence_id.id)
            if master and self._slot_within(event, start, end):
                grouped.setdefault(master.id, []).append(self._occurrence_wire(event, master))
        found = []
        for binding in current.sorted(lambda b: b.event_id.id, reverse=True):
            master = binding.event_id
            if master.id in grouped and len(found) < limit:
                found.append(
                    {
                        "master_graph_id": binding.graph_id,
                        "master_crm_event_id": master.id,
                        "master_version": master.m365_version,
                        "occurrences": grouped[master.id],
                    }
                )
        return _none_to_false(found)

    @staticmethod
    def _series_members(master):
        """The domain of a master's occurrences: by its Odoo recurrence or its own link."""
        series = [("m365_series_master_id", "=", master.id)]
        if master.recurrence_id:
            series = ["|", ("recurrence_id", "=", master.recurrence_id.id), *series]
        return [("m365_is_series_master", "=", False), *series]

    @staticmethod
    def _slot_within(event, start, end):
        if event.allday:
            return bool(event.start_date) and start.date() <= event.start_date < end.date()
        return bool(event.start) and start <= event.start < end

    @staticmethod
    def _occurrence_wire(event, master):
        return {
            "crm_event_id": event.id,
            "version": event.m365_version,
            "ical_uid": event.m365_ical_uid or None,
            "is_series_master": False,
            "deleted": False,
            "series_master_id": master.id,
            "bound_graph_id": None,
            "is_all_day": bool(event.allday),
            "start": dt_to_wire(event.start),
            "start_date": _date_text(event.start_date) if event.allday else None,
        }

    @api.model
    def remove_cancelled_occurrences(self, payload):
        """Remove the occurrences the daemon found cancelled in Outlook, as a deletion that
        came from Outlook (nothing is pushed), each only if it is still as the daemon saw it:
        its ``expected_version``, no mailbox holding it, not deleted, a member of its series,
        whose master is still at ``master_version`` with that version pushed to this account.
        One transaction; answers how many were removed."""
        env = self._daemon_env()
        env = env(context=dict(env.context, **INBOUND))
        account_id = int(payload["account_id"])
        lease = _opt(payload.get("lease"))
        if lease:
            self._check_lease(env, lease, account_id)
        else:
            self._account(env, account_id, lock=True)
        Event = env["calendar.event"]
        Binding = env["m365.event.binding"]
        removed = 0
        for removal in payload.get("removals") or []:
            master = Event.browse(int(removal["master_crm_event_id"])).exists()
            binding = Binding.search(
                [("account_id", "=", account_id), ("event_id", "=", master.id)], limit=1
            )
            if (
                not master
                or not master.m365_is_series_master
                or master.m365_deleted
                or master.m365_version != int(removal["master_version"])
                or not binding
                or binding.pushed_version != master.m365_version
            ):
                continue
            event = Event.search(
                [("id", "=", int(removal["crm_event_id"])), *self._series_members(master)]
            )
            if (
                not event
                or event.m365_deleted
                or event.m365_binding_ids
                or event.m365_version != int(removal["expected_version"])
            ):
                continue
            recurrence = event.recurrence_id
            event.unlink()
            removed += 1
            if recurrence and not Event.search_count([("recurrence_id", "=", recurrence.id)]):
                recurrence.unlink()
        return removed

    @api.model
    def last_event_id(self, payload=None):
        """The highest id Odoo has given a calendar event, deleted ones included (0: none):
        its id sequence's last value. The daemon deletes from Outlook its own create of an
        event Odoo no longer holds only for an id up to this one (an older copy of the
        database restored never gave the higher ones)."""
        env = self._daemon_env()
        env.cr.execute(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence('calendar_event', 'id'))"
        )
        (last,) = env.cr.fetchone()
        return int(last or 0)

    @api.model
    def meeting_candidates(self, payload):
        """The events an unbound Outlook item may be the same meeting as (the daemon decides
        which, ``m365sync.sync.calendar.same_meeting``): those with one of ``ical_uids`` or
        ``crm_event_ids`` (deleted ones flagged), and the occurrences of the series whose master is bound to
        the account under one of ``series_master_ids`` or carries one of ``ical_uids``."""
        env = self._daemon_env()
        account = self._account(env, payload["account_id"])
        Event = env["calendar.event"].with_context(active_test=False)
        Binding = env["m365.event.binding"]
        uids = [u for u in payload.get("ical_uids") or [] if u]
        graph_ids = [g for g in payload.get("series_master_ids") or [] if g]
        found = Event.search([("m365_ical_uid", "in", uids)]) if uids else Event
        ids = [int(i) for i in payload.get("crm_event_ids") or []]
        if ids:
            found |= Event.browse(ids).exists()
        masters = found.filtered("m365_is_series_master")
        if graph_ids:
            masters |= Binding.search(
                [("account_id", "=", account.id), ("graph_id", "in", graph_ids)]
            ).event_id.filtered("m365_is_series_master")
        master_of = {}
        for master in masters:
            domain = [("m365_series_master_id", "=", master.id)]
            if master.recurrence_id:
                domain = ["|", ("recurrence_id", "=", master.recurrence_id.id), *domain]
            members = Event.search([("m365_is_series_master", "=", False), *domain])
            for member in members:
                master_of.setdefault(member.id, master.id)
            found |= master | members
        bound = {
            b.event_id.id: b.graph_id
            for b in Binding.search([("account_id", "=", account.id), ("event_id", "in", found.ids)])
        }
        candidates = []
        for event in found.sorted("id"):
            master_id = None
            if not event.m365_is_series_master:
                master_id = master_of.get(event.id) or event.m365_series_master_id.id or None
            candidates.append(
                {
                    "crm_event_id": event.id,
                    "version": event.m365_version,
                    "ical_uid": event.m365_ical_uid or None,
                    "is_series_master": bool(event.m365_is_series_master),
                    "deleted": bool(event.m365_deleted),
                    "series_master_id": master_id,
                    "bound_graph_id": bound.get(event.id),
                    "is_all_day": bool(event.allday),
                    "start": dt_to_wire(event.start),
                    "start_date": _date_text(event.start_date) if event.allday else None,
                }
            )
        return _none_to_false(candidates)

    # --- outbound: CRM -> Outlook ---------------------------------------------------------------

    @api.model
    def event_changes_to_push(self, payload):
        """The account's events (owned, or bound to it) whose version is above the version
        Outlook has, never those last edited before the account was first connected (its
        creation); tombstones of events Outlook holds included. See the module docstring for
        series."""
        env = self._daemon_env()
        account = self._account(env, payload["account_id"])
        Event = env["calendar.event"].with_context(active_test=False)
        for model in ("calendar.event", "m365.event.binding"):
            env[model].flush_model()
        env.cr.execute(
            "SELECT e.id, b.id FROM calendar_event e LEFT JOIN m365_event_binding b "
            "ON b.event_id = e.id AND b.account_id = %(account)s "
            "WHERE (e.m365_owner_account_id = %(account)s OR b.id IS NOT NULL) "
            "AND e.m365_version > COALESCE(b.pushed_version, 0) "
            "AND e.m365_modified_at >= %(since)s "
            "AND NOT (COALESCE(e.m365_deleted, FALSE) AND b.id IS NULL) "
            "ORDER BY e.id",
            {"account": account.id, "since": account.create_date},
        )
        rows = env.cr.fetchall()
        bindings = env["m365.event.binding"].browse([b for _e, b in rows if b])
        binding_of = {b.event_id.id: b for b in bindings}
        changes = []
        for event in Event.browse([e for e, _b in rows]):
            changes.append(self._change_wire(env, account, event, binding_of.get(event.id)))
        return _none_to_false(changes)

    @staticmethod
    def _series_of(env, event):
        """(recurrence or None, master event or None) of an occurrence, or None if single."""
        master = event.m365_series_master_id
        recurrence = event.recurrence_id or master.recurrence_id
        if not master and recurrence:
            master = env["calendar.event"].with_context(active_test=False).search(
                [("recurrence_id", "=", recurrence.id), ("m365_is_series_master", "=", True)],
                limit=1,
            )
        if not master and not recurrence:
            return None
        return recurrence, master

    def _change_wire(self, env, account, event, binding):
        series = self._series_of(env, event)
        recurrence, master = series if series is not None else (None, None)
        wire = {
            "crm_event_id": event.id,
            "event": self._event_wire(env, account, event, binding),
            # The stored fields the daemon maps to Outlook's (m365sync.sync.event_mapping):
            # privacy, show-as, times, zone, type, and whether it is pushed at all.
            "odoo_event": self._odoo_event(event, binding, recurrence, master),
            # The stored people the daemon makes Outlook's organizer, attendees and the
            # owner's own answer of (m365sync.sync.attendees).
            "odoo_people": self._odoo_people(event, account),
            "version": event.m365_version,
            "deleted": bool(event.m365_deleted),
            # Whether the account organizes it is the daemon's rule
            # (m365sync.sync.calendar.organizes): the event's owner account and organizer.
            "owned_by_account": event.m365_owner_account_id == account,
        }
        if event.m365_is_series_master and not event.m365_graph_recurrence:
            recurrence = event.recurrence_id
        elif event.m365_is_series_master or not recurrence or recurrence.base_event_id != event:
            recurrence = None
        if recurrence:
            # An Odoo series (its master, or its base event): the daemon converts Odoo's
            # recurrence into Graph's pattern when it pushes the series.
            wire["odoo_recurrence"] = self._odoo_recurrence_values(recurrence, event)
        if event.m365_is_series_master and binding:
            # A series edited in Odoo: its pattern and times go to Outlook only when they
            # changed (Outlook rebuilds the occurrences, and drops the exceptions, when they do).
            wire["reshapes_series"] = bool(event.m365_series_reshaped)
        return wire

    @staticmethod
    def _odoo_event(event, binding, recurrence, master):
        """The event's stored fields as they are (m365sync.sync.event_mapping.OdooEvent)."""
        user = event.user_id
        return {
            "privacy": event.privacy or None,
            "default_privacy": (user.calendar_default_privacy or None) if user else None,
            "show_as": event.show_as or None,
            "outlook_sensitivity": event.m365_sensitivity or None,
            "outlook_show_as": event.m365_show_as or None,
            "all_day": bool(event.allday),
            "start": dt_to_wire(event.start),
            "stop": dt_to_wire(event.stop),
            "start_date": _date_text(event.start_date),
            "stop_date": _date_text(event.stop_date),
            "time_zone": event.m365_time_zone or None,
            "recurrence_zone": (event.recurrence_id.event_tz or None) if event.recurrence_id else None,
            "organizer_zone": (user.tz or None) if user else None,
            "is_series_master": bool(event.m365_is_series_master),
            "outlook_type": event.m365_event_type or None,
            "bound": bool(binding),
            "in_series": bool(recurrence or master),
            "series_has_master": bool(master),
            "is_series_base": bool(recurrence and recurrence.base_event_id == event),
        }

    @staticmethod
    def _odoo_recurrence_values(recurrence, event):
        names = (
            "rrule_type", "interval", "count", "end_type", "until", "month_by", "day",
            "weekday", "byday", "event_tz", "mon", "tue", "wed", "thu", "fri", "sat", "sun",
        )
        values = {}
        for name in names:
            value = recurrence[name]
            values[name] = value.isoformat() if hasattr(value, "isoformat") else value
        user = event.user_id or event.m365_owner_account_id.user_id
        lang = user.lang or "en_US"
        week_start = user.env["res.lang"]._get_data(code=lang).week_start or "7"
        values["week_start"] = WEEK_STARTS.get(str(week_start), "sunday")
        return values

    @staticmethod
    def _odoo_people(event, account):
        """The event's people as they are stored (m365sync.sync.attendees.OdooPeople): its
        attendees (partner, address, name, state, whether it is the account user's own), the
        Outlook attendees kept that matched no contact, the Outlook organizer it stores, the
        user it belongs to and the account's mailbox. Who is invited, who organizes and the
        owner's own answer are the daemon's to decide."""
        user = event.user_id
        own = account.user_id.partner_id
        return {
            "attendees": [
                {
                    "partner_id": attendee.partner_id.id,
                    "address": attendee.partner_id.email or None,
                    "name": attendee.partner_id.name or "",
                    "state": attendee.state or None,
                    "is_user": bool(own) and attendee.partner_id == own,
                }
                for attendee in event.attendee_ids
            ],
            "extra_attendees": [
                {
                    "address": line.get("address") or "",
                    "name": line.get("name") or "",
                    "role": line.get("role") or "required",
                    "response": line.get("response") or "none",
                }
                for line in event._m365_extra_attendees()
                if isinstance(line, dict)
            ],
            "organizer": {
                "address": event.m365_organizer_address,
                "name": event.m365_organizer_name or "",
            }
            if event.m365_organizer_address
            else None,
            "user": {"address": user.email, "name": user.name or ""} if user and user.email else None,
            "owner_address": account.address or None,
        }

    def _event_wire(self, env, account, event, binding):
        master = event.m365_series_master_id
        master_binding = env["m365.event.binding"]
        if master:
            master_binding = env["m365.event.binding"].search(
                [("account_id", "=", account.id), ("event_id", "=", master.id)], limit=1
            )
        recurrence = None
        if event.m365_is_series_master and event.m365_graph_recurrence:
            try:
                recurrence = json.loads(event.m365_graph_recurrence)
            except ValueError:
                recurrence = None
        # Type, times, zone, sensitivity and show-as are the daemon's mapping of ``odoo_event``;
        # organizer, attendees and the owner's answer its mapping of ``odoo_people``.
        return {
            "graph_id": binding.graph_id if binding else "",
            "ical_uid": event.m365_ical_uid or None,
            "subject": event.name or None,
            "series_master_id": master_binding.graph_id or None,
            "original_start": dt_to_wire(event.m365_original_start),
            "recurrence": recurrence,
            "body_html": str(event.description) if event.description else None,
            "location": event.location or None,
            "online_meeting_url": event.m365_online_meeting_url or None,
            "is_cancelled": bool(event.m365_is_cancelled),
            "change_key": (binding.change_key or None) if binding else None,
            "last_modified": None,
            "transaction_id": None,
            "is_online_meeting": bool(event.m365_is_online_meeting),
        }

    @api.model
    def mark_event_pushed(self, payload):
        """Outlook has ``version`` of the event (the version the push expected) as
        ``graph_id``; ``unbind`` (a pushed deletion) drops the account's binding, and a
        tombstone with its last one. What Outlook filled in (iCalUId, the online meeting's
        join link) is kept. ``shape_pushed``: the push carried the series' pattern and times,
        so its pending reshape (``m365_series_reshaped``) is done. Answers whether the event
        was still at ``version``: if a user edited it since, only what Outlook holds is
        recorded (never the event's removal), and the newer version stays pending."""
        env = self._daemon_env()
        env = env(context=dict(env.context, **INBOUND))
        account = self._account(env, payload["account_id"])
        Binding = env["m365.event.binding"]
        event = env["calendar.event"].browse(int(payload["crm_event_id"])).exists()
        if not event:
            return False
        graph_id = payload["graph_id"]
        version = int(payload["version"])
        current = event.m365_version == version
        if _opt(payload.get("unbind")) or (event.m365_deleted and current):
            Binding.search([("account_id", "=", account.id), ("event_id", "=", event.id)]).unlink()
            if event.m365_deleted and not Binding.search_count([("event_id", "=", event.id)]):
                event.unlink()
            return current
        target = event
        if not event.m365_is_series_master:
            series = self._series_of(env, event)
            if series is not None:
                recurrence, master = series
                if recurrence and not master and recurrence.base_event_id == event:
                    # The master holds the series at the base event's version: an edit
                    # made while the push was in flight stays pending (the binding's
                    # ``pushed_version`` is the version Outlook has) and goes whole.
                    target = self._make_master(env, event, recurrence, event.m365_version)
                    if not current:
                        target.m365_series_reshaped = True
                elif master and Binding.search_count(
                    [("account_id", "=", account.id), ("event_id", "=", master.id),
                     ("graph_id", "=", graph_id)]
                ):
                    # Outlook's series is the master's, never an occurrence's: the same series
                    # create recorded again (two workers pushed it with one transactionId, or
                    # Odoo ran this call again after a serialization failure) keeps it there.
                    # Given to the base event, it left the master unbound, pushed as a second
                    # series (reliability soak against Odoo, seed 427375925).
                    target = master
        values = {
            "graph_id": graph_id,
            "change_key": _opt(payload.get("change_key")) or False,
            "pushed_version": version,
        }
        other = Binding.search([("account_id", "=", account.id), ("graph_id", "=", graph_id)])
        (other.filtered(lambda b: b.event_id != target)).unlink()
        binding = Binding.search([("account_id", "=", account.id), ("event_id", "=", target.id)])
        if binding:
            binding.write(values)
        else:
            Binding.create(values | {"account_id": account.id, "event_id": target.id})
        updates = {}
        # Only a push that carried the pattern and times (``shape_pushed``: the daemon's
        # decision) ends a pending reshape; another mailbox's answer or forget never does.
        if (_opt(payload.get("shape_pushed")) and target.m365_series_reshaped
                and version >= target.m365_version):
            updates["m365_series_reshaped"] = False
        ical_uid = _opt(payload.get("ical_uid"))
        if ical_uid and not target.m365_ical_uid:
            updates["m365_ical_uid"] = ical_uid
        url = _opt(payload.get("online_meeting_url"))
        if url:
            updates["m365_online_meeting_url"] = url
            if not target.videocall_location or target.videocall_location == target.m365_online_meeting_url:
                updates["videocall_location"] = url
        if updates:
            target.write(updates)
        return current

    @staticmethod
    def _make_master(env, base, recurrence, version):
        """An Odoo series reached Outlook: a hidden master holds its binding from now on."""
        values = {
            "name": base.name,
            "start": base.start,
            "stop": base.stop,
            "allday": base.allday,
            "description": base.description,
            "location": base.location,
            "user_id": base.user_id.id,
            "privacy": base.privacy,
            "show_as": base.show_as,
            "partner_ids": [Command.set(base.partner_ids.ids)],
            "m365_owner_account_id": base.m365_owner_account_id.id,
            "m365_is_online_meeting": base.m365_is_online_meeting,
            "m365_is_series_master": True,
            "m365_event_type": "seriesMaster",
            "m365_time_zone": base.m365_time_zone or recurrence.event_tz or False,
            "recurrence_id": recurrence.id,
            "m365_version": version,
            "active": False,
        }
        master = env["calendar.event"].create(values)
        env["calendar.event"].search(
            [("recurrence_id", "=", recurrence.id), ("m365_is_series_master", "=", False)]
        ).write({"m365_series_master_id": master.id})
        return master

    # --- reading back ---------------------------------------------------------------------------

    @api.model
    def upcoming_events_for_partner(self, payload):
        """Meetings with the partner that have not ended by ``since``, soonest first: the
        partner form's rule (``res.partner._m365_meeting_domain``)."""
        env = self._daemon_env()
        partner = env["res.partner"].with_context(active_test=False).browse(
            int(payload["partner_id"])
        ).exists()
        if not partner:
            return []
        since = dt_from_wire(payload["since"])
        limit = int(_opt(payload.get("limit")) or 20)
        events = env["calendar.event"].search(
            partner._m365_meeting_domain(since), order="start, id", limit=limit
        )
        summaries = []
        for event in events:
            addresses = [normalize_email(p.email) for p in event.partner_ids if p.email]
            addresses += [
                normalize_email(a.get("address"))
                for a in event._m365_extra_attendees()
                if a.get("address")
            ]
            summaries.append(
                {
                    "crm_event_id": event.id,
                    "subject": event.name or "",
                    "start": None if event.allday else dt_to_wire(event.start),
                    "end": None if event.allday else dt_to_wire(event.stop),
                    "is_all_day": bool(event.allday),
                    "start_date": _date_text(event.start_date) if event.allday else None,
                    "recurring": bool(event.recurrence_id or event.m365_series_master_id),
                    "attendees": list(dict.fromkeys(a for a in addresses if a)),
                }
            )
        return _none_to_false(summaries)


class _EventPageWriter:
    """The writes of one ``store_event_page`` call (m365sync.crm.sqlite_calendar's semantics)."""

    def __init__(self, env, account):
        self.env = env
        self.account = account
        self.Event = env["calendar.event"]
        self.Binding = env["m365.event.binding"]
        self.created = self.updated = self.linked = self.removed = 0
        self.touched_recurrences = env["calendar.recurrence"]
        self.synced = env["calendar.event"]

    def result(self):
        return {
            "created": self.created,
            "updated": self.updated,
            "linked": self.linked,
            "removed": self.removed,
        }

    def lock(self, upserts):
        """Two mailboxes bringing the same meeting at once: serialise on its iCalUId."""
        keys = sorted(
            {
                f"ical:{(s.get('event') or {}).get('ical_uid')}"
                for s in upserts
                if _opt((s.get("event") or {}).get("ical_uid"))
            }
        )
        if keys:
            self.env.cr.execute(
                "SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest(%s::text[]) AS k", (keys,)
            )

    def _binding(self, graph_id):
        return self.Binding.search(
            [("account_id", "=", self.account.id), ("graph_id", "=", graph_id)], limit=1
        )

    # removals --------------------------------------------------------------------------------

    def unbind(self, graph_id):
        binding = self._binding(graph_id)
        if not binding:
            return
        event = binding.event_id
        binding.unlink()
        self.removed += 1
        if not self.Binding.search_count([("event_id", "=", event.id)]):
            recurrence = event.recurrence_id
            if event.m365_is_series_master:
                # The series left Outlook: Odoo's own occurrences that no mailbox holds (an
                # Odoo series whose occurrences Outlook had not listed yet) go with it.
                series = [("m365_series_master_id", "=", event.id)]
                if recurrence:
                    series = ["|", ("recurrence_id", "=", recurrence.id), *series]
                occurrences = self.Event.with_context(active_test=False).search(
                    [("m365_is_series_master", "=", False), *series]
                )
                occurrences.filtered(lambda e: not e.m365_binding_ids).unlink()
            event.unlink()
            if recurrence and not self.Event.search_count([("recurrence_id", "=", recurrence.id)]):
                recurrence.unlink()

    # upserts ---------------------------------------------------------------------------------

    def upsert(self, stored):
        """Write one item where the daemon placed it (``crm_event_id``: its bound event, the
        same meeting, or none for a new event), if the state is still the one it planned on:
        the item's binding and the target's ``m365_version`` (``expected_version``). Echoes
        and same-meeting matching are the daemon's (m365sync.sync.calendar), never here."""
        item = stored["event"]
        graph_id = item["graph_id"]
        change_key = _opt(item.get("change_key"))
        target_id = _opt(stored.get("crm_event_id"))
        target_id = int(target_id) if target_id else None
        binding = self._binding(graph_id)
        if binding and binding.event_id.id != target_id:
            raise UserError(f"M365:StalePlan: Outlook event {graph_id} is bound since the plan.")
        if target_id is None:
            event = self._create(stored)
            binding = self.Binding.create(
                {"account_id": self.account.id, "graph_id": graph_id, "event_id": event.id}
            )
            self.created += 1
        else:
            event = self.Event.browse(target_id).exists()
            expected = _opt(stored.get("expected_version"))
            if (
                not event
                or expected is None
                or event.m365_version != int(expected)
                or (not binding and event.m365_deleted)
            ):
                raise UserError(f"M365:StalePlan: event {target_id} changed since the plan.")
            self._write(event, stored, keep_details=bool(stored.get("keep_details")))
            if binding:
                self.updated += 1
            else:
                mine = self.Binding.search(
                    [("account_id", "=", self.account.id), ("event_id", "=", event.id)]
                )
                if mine:
                    # Outlook recreated the item under a new id: follow it.
                    mine.write({"graph_id": graph_id})
                    binding = mine
                else:
                    binding = self.Binding.create(
                        {"account_id": self.account.id, "graph_id": graph_id, "event_id": event.id}
                    )
                self.linked += 1
        binding.write({"change_key": change_key or False, "pushed_version": event.m365_version})
        self.synced |= event

    def _master_of(self, item):
        master_id = _opt(item.get("series_master_id"))
        if not master_id:
            return self.Event
        return self._binding(master_id).event_id

    def _create(self, stored):
        values, states = self._values(stored, self.Event)
        # Outlook reminds the user of its meetings; Odoo's reminders (a default one included)
        # would remind them twice.
        values["alarm_ids"] = [Command.clear()]
        event = self.Event.create(values)
        self._apply_states(event, states)
        self._apply_series(event, stored)
        return event

    def _write(self, event, stored, keep_details=False):
        values, states = self._values(stored, event)
        if keep_details:
            # The daemon left Odoo's details out of ``odoo_values``; the people and the
            # organizing user Odoo holds stay too.
            for name in PEOPLE_FIELDS:
                values.pop(name, None)
        if event.alarm_ids and not event.m365_owner_account_id:
            # An event the daemon made from Outlook carries no Odoo reminder; one made in Odoo
            # (it has an owner account) keeps its own.
            values["alarm_ids"] = [Command.clear()]
        event.write(values)
        if not keep_details:
            self._apply_states(event, states)
        self._apply_series(event, stored)

    @staticmethod
    def _apply_states(event, states):
        for attendee in event.attendee_ids:
            state = states.get(attendee.partner_id.id)
            if state and attendee.state != state:
                attendee.state = state

    def _organizer_user(self, address):
        if not address:
            return self.env["res.users"]
        account = self.env["m365.account"].search(
            [("address_normalized", "=", address), ("user_id", "!=", False)], order="id", limit=1
        )
        if account:
            return account.user_id
        return self.env["res.users"].search(
            [("partner_id.m365_email_normalized", "=", address), ("share", "=", False)],
            order="id",
            limit=1,
        )

    def _values(self, stored, event):
        """The values to write: the daemon's ``odoo_values`` (its mapping of the Outlook item,
        m365sync.sync.event_mapping: name, privacy, show-as, times...) and
        ``odoo_people_values`` (m365sync.sync.attendees: organizer, attendee states,
        companies, extra lines) as given, and what only Odoo's records can resolve: the
        organizing user, the account user's partner, the video call link, the series'
        pattern text."""
        item = stored["event"]
        values = {}
        placeholder = None
        for name, value in (stored.get("odoo_values") or {}).items():
            if name == "subject_placeholder":
                placeholder = _opt(value)
            elif name not in MAPPED_FIELDS:
                raise UserError(f"M365:BadRequest: the daemon may not write {name} of a meeting.")
            elif name in DATETIME_FIELDS:
                values[name] = dt_from_wire(_opt(value)) or False
            else:
                values[name] = False if value is None else value
        if "name" in values and not values["name"]:
            values["name"] = self._placeholder(placeholder)
        if event:
            for name, kept in (stored.get("odoo_kept_values") or {}).items():
                if name in values and event[name] in kept:
                    values.pop(name)
        people = _opt(stored.get("odoo_people_values"))
        if not isinstance(people, dict):
            raise UserError(
                "M365:BadRequest: the daemon sent no odoo_people_values; it is older than this "
                "addon: upgrade the daemon."
            )
        organizer = _opt(people.get("organizer")) or {}
        organizer_address = _opt(organizer.get("address")) or False
        organizer_user = self._organizer_user(organizer_address)
        values.update(
            user_id=organizer_user.id or False,
            m365_organizer_address=organizer_address,
            m365_organizer_name=_opt(organizer.get("name")) or False,
        )
        uid = _opt(item.get("ical_uid"))
        if uid:
            values["m365_ical_uid"] = uid
        url = _opt(item.get("online_meeting_url")) or False
        if url:
            values["videocall_location"] = url
        elif event and event.videocall_location and event.videocall_location == event.m365_online_meeting_url:
            values["videocall_location"] = False
        if item.get("event_type") == "seriesMaster":
            recurrence = _opt(item.get("recurrence"))
            values["m365_graph_recurrence"] = (
                json.dumps(recurrence, sort_keys=True) if recurrence else False
            )
            values["m365_recurrence_note"] = _opt(stored.get("odoo_recurrence_note")) or False
        else:
            values["m365_graph_recurrence"] = False
            values["m365_recurrence_note"] = False
        states, companies, extra = self._people(people, organizer_user)
        values["partner_ids"] = [Command.set(list(states))]
        values["m365_company_ids"] = [Command.set(sorted(companies))]
        values["m365_extra_attendees"] = json.dumps(extra, sort_keys=True) if extra else False
        return values, states

    def _placeholder(self, key):
        """The name of an Outlook event without a subject, in the user's language: the one
        label the addon picks (the daemon says which, m365sync.sync.event_mapping.odoo_subject)."""
        if key == "busy":
            return self.env._("Busy")
        return self.env._("(No subject)")

    def _people(self, people, organizer_user):
        """partner id -> attendee state, company ids and the lines matching no contact, as the
        daemon decided them (``odoo_people_values``, m365sync.sync.attendees): checked (states
        Odoo knows, ids that exist) and completed with what only Odoo resolves, the organizing
        user's and the account user's partners, each with the state the daemon gave it unless
        the daemon named that partner already."""
        states = {}
        for partner, state in (people.get("attendee_states") or {}).items():
            states[self._id(partner)] = self._state(state)
        if organizer_user:
            states.setdefault(organizer_user.partner_id.id, self._state(people.get("organizer_state")))
        owner_partner = self.account.user_id.partner_id
        if owner_partner:
            states.setdefault(owner_partner.id, self._state(people.get("owner_state")))
        Partner = self.env["res.partner"]
        existing = set(Partner.browse(list(states)).exists().ids)
        states = {pid: state for pid, state in states.items() if pid in existing}
        companies = {self._id(c) for c in people.get("company_ids") or []}
        companies &= set(Partner.browse(sorted(companies)).exists().ids)
        extra = [line for line in people.get("extra_attendees") or [] if isinstance(line, dict)]
        return states, companies, extra

    @staticmethod
    def _id(value):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise UserError(f"M365:BadRequest: {value!r} is not a record id.") from None

    @staticmethod
    def _state(state):
        if state not in ATTENDEE_STATES:
            raise UserError(f"M365:BadRequest: {state!r} is not an attendee state.")
        return state

    def _apply_series(self, event, stored):
        item = stored["event"]
        Recurrence = self.env["calendar.recurrence"]
        if event.m365_is_series_master:
            odoo_values = _opt(stored.get("odoo_recurrence"))
            recurrence = event.recurrence_id
            if odoo_values:
                values = self._recurrence_values(odoo_values)
                if recurrence:
                    recurrence.write(values)
                else:
                    recurrence = Recurrence.create(values | {"base_event_id": event.id})
                    event.write({"recurrence_id": recurrence.id, "recurrency": True})
                occurrences = self.Event.search(
                    [("m365_series_master_id", "=", event.id), ("recurrence_id", "!=", recurrence.id)]
                )
                occurrences.write({"recurrence_id": recurrence.id, "recurrency": True})
                self.touched_recurrences |= recurrence
            elif recurrence:
                # The pattern became one Odoo cannot express: no approximate Odoo recurrence.
                recurrence.calendar_event_ids.write({"recurrence_id": False, "recurrency": False})
                event.write({"recurrence_id": False, "recurrency": False})
                recurrence.unlink()
            return
        master = self._master_of(item)
        if master:
            values = {
                "m365_series_master_id": master.id,
                "recurrence_id": master.recurrence_id.id or False,
                "recurrency": bool(master.recurrence_id),
                "follow_recurrence": item.get("event_type") == "occurrence",
            }
            current = {
                "m365_series_master_id": event.m365_series_master_id.id,
                "recurrence_id": event.recurrence_id.id or False,
                "recurrency": event.recurrency,
                "follow_recurrence": event.follow_recurrence,
            }
            if current != values:
                event.write(values)
            if master.recurrence_id:
                self.touched_recurrences |= master.recurrence_id
        elif event.m365_series_master_id and item.get("event_type") == "singleInstance":
            event.write({"m365_series_master_id": False, "recurrence_id": False, "recurrency": False})

    def _recurrence_values(self, odoo_values):
        Recurrence = self.env["calendar.recurrence"]
        values = {k: v for k, v in odoo_values.items() if k in Recurrence._fields}
        values.pop("base_event_id", None)
        values.pop("calendar_event_ids", None)
        values.pop("rrule", None)
        if values.get("event_tz") and values["event_tz"] not in pytz.all_timezones_set:
            values.pop("event_tz")
        for key, value in list(values.items()):
            if value is None:
                values[key] = False
        return values

    def finish(self):
        """Each touched Odoo recurrence points at its first visible event; the page's events
        go through the ``_m365_synced_from_outlook`` hook."""
        for recurrence in self.touched_recurrences.exists():
            first = self.Event.with_context(active_test=True).search(
                [("recurrence_id", "=", recurrence.id), ("m365_is_series_master", "=", False)],
                order="start, id",
                limit=1,
            )
            if first and recurrence.base_event_id != first:
                recurrence.base_event_id = first
        self.synced.exists()._m365_synced_from_outlook()
