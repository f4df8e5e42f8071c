"""The calendar half of the daemon's API (m365sync.crm.gateway, sqlite_calendar semantics)."""

import json
from datetime import datetime, timedelta, timezone

from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged
from odoo.tools import mute_logger

from odoo import Command

from .common import M365Case, placed_page, push_shape, pushed, unique

# Noon UTC, three days ahead: the same weekday in UTC and in Europe/Paris (the series' zone),
# whatever the hour the suite runs at (from 23:00 UTC Paris is already the next day, and an
# Odoo series split "this and following" then lost its weekday).
SOON = datetime.now(timezone.utc).replace(
    hour=12, minute=0, second=0, microsecond=0, tzinfo=None
) + timedelta(days=3)
CALENDAR = "calendarView-2025-01"
WEEKLY_ODOO = {
    "rrule_type": "weekly",
    "interval": 1,
    "mon": True,
    "tue": False,
    "wed": False,
    "thu": False,
    "fri": False,
    "sat": False,
    "sun": False,
    "month_by": "date",
    "day": 1,
    "weekday": False,
    "byday": False,
    "end_type": "forever",
    "count": 1,
    "until": False,
    "event_tz": "Europe/Paris",
}


def iso(moment):
    return moment.replace(tzinfo=timezone.utc).isoformat()


def wire_event(
    graph_id,
    *,
    uid=None,
    subject="Quarterly review",
    start=SOON,
    change_key="ck1",
    event_type="singleInstance",
    master=None,
    recurrence=None,
    organizer="meganb@contoso.example",
    sensitivity="normal",
):
    return {
        "graph_id": graph_id,
        "ical_uid": uid or f"uid-{graph_id}",
        "event_type": event_type,
        "subject": subject,
        "start": iso(start),
        "end": iso(start + timedelta(hours=1)),
        "time_zone": "Europe/Paris",
        "is_all_day": False,
        "start_date": None,
        "end_date": None,
        "series_master_id": master,
        "original_start": iso(start) if master else None,
        "recurrence": recurrence,
        "body_html": "<p>Agenda</p>",
        "location": "Room 4",
        "online_meeting_url": None,
        "sensitivity": sensitivity,
        "show_as": "busy",
        "is_cancelled": False,
        "organizer": {"address": organizer, "name": "Megan"} if organizer else None,
        "attendees": [],
        "change_key": change_key,
        "last_modified": None,
        "transaction_id": None,
        "my_response": "none",
        "is_online_meeting": False,
    }


def link(partner, response="accepted", role="required"):
    return {
        "role": role,
        "address": partner.email.lower(),
        "name": partner.name,
        "response": response,
        "partner_id": partner.id,
        "company_id": partner.parent_id.id or None,
    }


def stored(event, links=(), odoo_recurrence=None, note=None):
    item = {"event": event, "attendees": list(links)}
    if event["event_type"] == "seriesMaster":
        item |= {"odoo_recurrence": odoo_recurrence, "odoo_recurrence_note": note}
    return item


def event_page(account_id, upserts=(), removed=(), link_="https://graph/delta?1"):
    return {
        "account_id": account_id,
        "calendar_id": CALENDAR,
        "upserts": list(upserts),
        "removed_ids": list(removed),
        "cursor": {"link": link_, "kind": "delta"},
        "skipped": {},
    }


@tagged("post_install", "-at_install")
class TestCalendarApi(M365Case):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.anna = cls.env["res.partner"].create(
            {"name": "Anna", "email": f"{unique('anna')}@example.com"}
        )

    # --- helpers ----------------------------------------------------------------------------

    def store(self, account, *items, removed=()):
        page = placed_page(self.api, event_page(account["id"], items, removed))
        return self.api.store_event_page({"page": page, "lease": None})

    def upcoming(self, partner=None, since=None):
        return self.api.upcoming_events_for_partner(
            {
                "partner_id": (partner or self.anna).id,
                "since": iso(since or SOON - timedelta(days=1)),
                "limit": 20,
            }
        )

    def changes(self, account, event=None):
        """The account's pending changes the daemon pushes (it leaves out, by their stored
        fields, the occurrences Odoo expanded of a series: see ``push_shape``), with the
        organizer, attendees and answer it decides from their stored people (``pushed``)."""
        found = self.api.event_changes_to_push({"account_id": account["id"]})
        found = [pushed(c) for c in found if push_shape(c["odoo_event"]) != "skip"]
        if event is None:
            return found
        return [c for c in found if c["crm_event_id"] == event.id]

    def bound_event(self, account, graph_id):
        binding = self.env["m365.event.binding"].search(
            [("account_id", "=", account["id"]), ("graph_id", "=", graph_id)]
        )
        return binding.event_id

    def mails_since(self, last):
        """Invitations Odoo sent since ``last``: its notifications to attendees (each one an
        email to a contact) and any queued mail."""
        last_message, last_mail = last
        notes = self.env["mail.message"].sudo().search_count(
            [("id", ">", last_message), ("model", "=", "calendar.event"),
             ("message_type", "=", "user_notification")]
        )
        return notes + self.env["mail.mail"].sudo().search_count([("id", ">", last_mail)])

    def last_mail_id(self):
        message = self.env["mail.message"].sudo().search([], order="id desc", limit=1)
        mail = self.env["mail.mail"].sudo().search([], order="id desc", limit=1)
        return message.id or 0, mail.id or 0

    def user_event(self, user, **values):
        return (
            self.env["calendar.event"]
            .with_user(user)
            .create(
                {
                    "name": "Demo",
                    "start": SOON,
                    "stop": SOON + timedelta(hours=1),
                    "partner_ids": [Command.set([self.anna.id, user.partner_id.id])],
                    **values,
                }
            )
        )

    # --- Outlook -> CRM ---------------------------------------------------------------------

    def test_store_is_idempotent_and_keeps_the_cursor(self):
        account = self.account()
        item = stored(wire_event(unique("g")), [link(self.anna)])
        first = self.store(account, item)
        self.assertEqual(first, {"created": 1, "updated": 0, "linked": 0, "removed": 0})
        again = self.store(account, item)
        self.assertEqual(again, {"created": 0, "updated": 0, "linked": 0, "removed": 0})
        (summary,) = self.upcoming()
        self.assertEqual(summary["subject"], "Quarterly review")
        self.assertEqual(summary["start"], iso(SOON))
        self.assertIn(self.anna.email.lower(), summary["attendees"])
        cursor = self.api.get_cursor({"account_id": account["id"], "folder_id": CALENDAR})
        self.assertEqual(cursor["link"], "https://graph/delta?1")
        event = self.bound_event(account, item["event"]["graph_id"])
        self.assertEqual(event.attendee_ids.filtered(lambda a: a.partner_id == self.anna).state, "accepted")
        self.assertEqual((event.location, event.privacy, event.show_as), ("Room 4", "public", "busy"))
        self.assertFalse(event.user_id)  # an outside organizer is kept in its own fields
        self.assertEqual(event.m365_organizer_address, "meganb@contoso.example")

    def test_the_same_meeting_through_two_accounts_is_one_event(self):
        organizer, attendee = self.account(), self.account()
        uid = unique("uid")
        self.store(organizer, stored(wire_event(unique("g"), uid=uid), [link(self.anna)]))
        seen = self.store(attendee, stored(wire_event(unique("g"), uid=uid), [link(self.anna)]))
        self.assertEqual((seen["created"], seen["linked"]), (0, 1))
        self.assertEqual(len(self.upcoming()), 1)
        event = self.env["calendar.event"].search([("m365_ical_uid", "=", uid)])
        self.assertEqual(len(event), 1)
        self.assertEqual(len(event.sudo().m365_binding_ids), 2)

    def test_removal_unbinds_and_the_last_binding_takes_the_event(self):
        one, two = self.account(), self.account()
        uid, g1, g2 = unique("uid"), unique("g"), unique("g")
        self.store(one, stored(wire_event(g1, uid=uid), [link(self.anna)]))
        self.store(two, stored(wire_event(g2, uid=uid), [link(self.anna)]))
        event = self.bound_event(one, g1)
        self.assertEqual(self.store(one, removed=[g1])["removed"], 1)
        self.assertTrue(event.exists())
        self.assertEqual(len(self.upcoming()), 1)
        self.store(two, removed=[g2])
        self.assertFalse(event.exists())
        self.assertEqual(self.upcoming(), [])

    def test_echo_and_outlook_edits(self):
        account = self.account()
        graph_id = unique("g")
        self.store(account, stored(wire_event(graph_id), [link(self.anna)]))
        bindings = self.api.event_bindings({"account_id": account["id"], "graph_ids": [graph_id, "unknown"]})
        self.assertEqual(list(bindings), [graph_id])
        binding = bindings[graph_id]
        self.assertEqual(binding["change_key"], "ck1")
        self.assertEqual(binding["version"], binding["pushed_version"])
        moved = wire_event(graph_id, start=SOON + timedelta(hours=2), change_key="ck2")
        self.assertEqual(self.store(account, stored(moved, [link(self.anna)]))["updated"], 1)
        self.assertEqual(self.bound_event(account, graph_id).start, SOON + timedelta(hours=2))

    def test_all_day_private_and_free(self):
        account = self.account()
        day = SOON.date() + timedelta(days=1)
        item = wire_event(unique("g"), subject=None, sensitivity="private")
        item |= {
            "is_all_day": True,
            "start": None,
            "end": None,
            "start_date": day.isoformat(),
            "end_date": (day + timedelta(days=1)).isoformat(),
            "show_as": "free",
        }
        self.store(account, stored(item, [link(self.anna)]))
        (summary,) = self.upcoming(since=SOON)
        self.assertTrue(summary["is_all_day"])
        self.assertEqual(summary["start_date"], day.isoformat())
        self.assertIs(summary["start"], False)
        event = self.bound_event(account, item["graph_id"])
        self.assertEqual((event.start_date, event.stop_date), (day, day))
        self.assertEqual((event.privacy, event.show_as), ("private", "free"))

    def test_series_odoo_can_express(self):
        account = self.account()
        master = unique("m")
        pattern = {"pattern_type": "weekly", "start_date": SOON.date().isoformat(), "interval": 1,
                   "days_of_week": ["monday"], "range_type": "noEnd"}
        items = [
            stored(
                wire_event(master, event_type="seriesMaster", recurrence=pattern),
                [link(self.anna)],
                odoo_recurrence=WEEKLY_ODOO,
            )
        ]
        items += [
            stored(
                wire_event(unique("o"), uid=unique("uid"), start=SOON + timedelta(weeks=n),
                           event_type="occurrence" if n != 1 else "exception", master=master),
                [link(self.anna)],
            )
            for n in range(3)
        ]
        result = self.store(account, *reversed(items))  # masters go first whatever the order
        self.assertEqual(result["created"], 4)
        upcoming = self.upcoming()
        self.assertEqual([u["start"] for u in upcoming], [iso(SOON + timedelta(weeks=n)) for n in range(3)])
        self.assertTrue(all(u["recurring"] for u in upcoming))
        series = self.bound_event(account, master)
        self.assertFalse(series.active)
        self.assertTrue(series.m365_is_series_master)
        recurrence = series.recurrence_id
        self.assertEqual((recurrence.rrule_type, recurrence.mon, recurrence.end_type), ("weekly", True, "forever"))
        occurrences = self.env["calendar.event"].search([("recurrence_id", "=", recurrence.id)])
        self.assertEqual(len(occurrences), 3)  # Odoo expanded nothing itself
        self.assertEqual(recurrence.base_event_id, occurrences.sorted("start")[0])
        self.assertFalse(series.m365_recurrence_note)
        self.assertEqual(json.loads(series.m365_graph_recurrence), pattern)
        # A replay of the whole page changes nothing.
        self.assertEqual(self.store(account, *items)["created"], 0)

    def test_series_odoo_cannot_express_keeps_outlook_pattern(self):
        account = self.account()
        master = unique("m")
        pattern = {"pattern_type": "relativeYearly", "start_date": SOON.date().isoformat(), "interval": 1,
                   "days_of_week": ["friday"], "index": "last", "month": 11, "range_type": "noEnd"}
        note = "Odoo cannot repeat yearly on a weekday of a month (such as the last Friday of November)."
        self.store(
            account,
            stored(wire_event(master, event_type="seriesMaster", recurrence=pattern), [link(self.anna)], note=note),
            stored(wire_event(unique("o"), event_type="occurrence", master=master), [link(self.anna)]),
        )
        series = self.bound_event(account, master)
        self.assertEqual(series.m365_recurrence_note, note)
        self.assertFalse(series.recurrence_id)
        self.assertEqual(json.loads(series.m365_graph_recurrence), pattern)
        (summary,) = self.upcoming()
        occurrence = self.env["calendar.event"].browse(summary["crm_event_id"])
        self.assertEqual(occurrence.m365_series_master_id, series)
        self.assertEqual(occurrence.m365_recurrence_notice, note)
        self.assertTrue(summary["recurring"])

    # --- CRM -> Outlook ---------------------------------------------------------------------

    def test_user_edit_is_pushed_and_inbound_writes_never_echo(self):
        account = self.account(owner="m365-test-a")
        event = self.user_event(self.user_a)
        self.assertEqual(event.m365_owner_account_id.id, account["id"])
        self.assertEqual(event.m365_version, 1)
        (change,) = self.changes(account, event)
        self.assertEqual(change["version"], 1)
        self.assertFalse(change["deleted"])
        self.assertEqual(change["event"]["graph_id"], "")
        self.assertTrue(change["owned_by_account"])
        self.assertEqual(change["attendee_addresses"], [self.anna.email.lower()])
        self.assertEqual(change["event"]["organizer"]["address"], "a@contoso.example")
        graph_id, uid = unique("g"), unique("uid")
        self.api.mark_event_pushed(
            {"account_id": account["id"], "crm_event_id": event.id, "graph_id": graph_id,
             "change_key": "ck-ours", "version": 1, "ical_uid": uid,
             "online_meeting_url": "https://teams.example/join/1"}
        )
        self.assertEqual(self.changes(account, event), [])
        self.assertEqual((event.m365_ical_uid, event.videocall_location), (uid, "https://teams.example/join/1"))
        # Our own change key coming back: nothing stored, nothing to push.
        echo = wire_event(graph_id, uid=uid, change_key="ck-ours", organizer=account["address"])
        self.assertEqual(self.store(account, stored(echo, [link(self.anna)]))["updated"], 0)
        # An Outlook edit is stored and, being inbound, is not pushed back.
        edited = wire_event(graph_id, uid=uid, subject="Moved review", change_key="ck-theirs",
                            organizer=account["address"])
        self.store(account, stored(edited, [link(self.anna)]))
        self.assertEqual(event.name, "Moved review")
        self.assertEqual(self.changes(account, event), [])
        # A user's edit bumps the version and is listed with the Outlook id.
        event.with_user(self.user_a).write({"name": "Renamed"})
        self.assertEqual(event.m365_version, 2)
        (change,) = self.changes(account, event)
        self.assertEqual(
            (change["version"], change["event"]["subject"], change["event"]["graph_id"],
             change["event"]["change_key"]),
            (2, "Renamed", graph_id, "ck-theirs"),
        )

    def test_delete_is_a_tombstone_until_pushed(self):
        account = self.account(owner="m365-test-a")
        event = self.user_event(self.user_a)
        graph_id = unique("g")
        self.api.mark_event_pushed(
            {"account_id": account["id"], "crm_event_id": event.id, "graph_id": graph_id,
             "change_key": "a", "version": 1}
        )
        event.with_user(self.user_a).unlink()
        self.assertTrue(event.exists())
        self.assertFalse(event.active)
        self.assertTrue(event.m365_deleted)
        self.assertEqual(self.upcoming(), [])
        (gone,) = self.changes(account, event)
        self.assertTrue(gone["deleted"])
        self.assertEqual(gone["event"]["graph_id"], graph_id)
        self.api.mark_event_pushed(
            {"account_id": account["id"], "crm_event_id": event.id, "graph_id": graph_id,
             "change_key": None, "version": gone["version"]}
        )
        self.assertFalse(event.exists())
        self.assertEqual(self.api.event_bindings({"account_id": account["id"], "graph_ids": [graph_id]}), {})
        self.assertEqual(self.changes(account), [])

    def test_an_unpushed_event_is_simply_deleted(self):
        account = self.account(owner="m365-test-a")
        event = self.user_event(self.user_a)
        event.with_user(self.user_a).unlink()
        self.assertFalse(event.exists())
        self.assertEqual(self.changes(account), [])

    def test_last_event_id_is_the_highest_ever_given(self):
        """An unbound event deleted outright leaves no row, but its id stays given: the daemon
        deletes its own Outlook create of such an event only for an id up to this one."""
        event = self.user_event(self.user_a)
        self.assertEqual(self.api.last_event_id({}), event.id)
        later = self.user_event(self.user_a)
        later.with_user(self.user_a).unlink()
        self.assertEqual(self.api.last_event_id({}), later.id)
        self.assertGreater(later.id, event.id)

    def test_events_older_than_the_account_are_never_pushed(self):
        account = self.account(owner="m365-test-a")
        event = self.user_event(self.user_a)
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE calendar_event SET m365_modified_at = %s WHERE id = %s",
            (datetime(2000, 1, 1), event.id),
        )
        event.invalidate_recordset()
        self.assertEqual(self.changes(account, event), [])

    def test_answering_an_invitation_pushes_only_the_answer(self):
        account = self.account(owner="m365-test-a")
        graph_id = unique("g")
        self.store(account, stored(wire_event(graph_id), [link(self.anna)]))
        event = self.bound_event(account, graph_id)
        mine = event.attendee_ids.filtered(lambda a: a.partner_id == self.user_a.partner_id)
        self.assertEqual(mine.state, "needsAction")
        self.assertEqual(self.changes(account, event), [])
        mine.with_user(self.user_a).do_accept()
        (change,) = self.changes(account, event)
        self.assertFalse(change["owned_by_account"])  # an invitation: Megan organizes it
        self.assertEqual(change["event"]["organizer"]["address"], "meganb@contoso.example")
        self.assertEqual(change["my_response"], "accepted")

    def test_an_odoo_series_is_pushed_once_and_bound_as_outlook_sends_it_back(self):
        account = self.account(owner="m365-test-a")
        event = self.user_event(
            self.user_a, recurrency=True, rrule_type="weekly", interval=1, end_type="count", count=3,
            **{SOON.strftime("%a").lower(): True},
        )
        series = event.recurrence_id
        self.assertEqual(len(series.calendar_event_ids), 3)
        (change,) = [c for c in self.changes(account) if c["crm_event_id"] in series.calendar_event_ids.ids]
        self.assertEqual(change["crm_event_id"], series.base_event_id.id)
        self.assertEqual(push_shape(change["odoo_event"]), "series")
        self.assertEqual(change["odoo_recurrence"]["rrule_type"], "weekly")
        self.assertEqual(change["odoo_recurrence"]["count"], 3)
        self.assertIn(change["odoo_recurrence"]["week_start"], ("monday", "sunday"))
        master_id = unique("m")
        self.api.mark_event_pushed(
            {"account_id": account["id"], "crm_event_id": change["crm_event_id"],
             "graph_id": master_id, "change_key": "m1", "version": change["version"]}
        )
        self.assertEqual(self.changes(account), [])
        master = self.bound_event(account, master_id)
        self.assertTrue(master.m365_is_series_master)
        self.assertNotEqual(master, series.base_event_id)
        occurrences = [
            stored(wire_event(unique("o"), start=e.start, event_type="occurrence", master=master_id,
                              organizer=account["address"]), [link(self.anna)])
            for e in series.calendar_event_ids.sorted("start")
        ]
        result = self.store(account, *occurrences)
        self.assertEqual((result["created"], result["linked"]), (0, 3))
        self.assertEqual(self.env["calendar.event"].search_count([("recurrence_id", "=", series.id)]), 3)
        self.assertEqual(self.changes(account), [])

    def test_an_odoo_series_recorded_twice_stays_on_its_master(self):
        """Two workers that both held the lease pushed the same series (one transactionId,
        so one Outlook series), and Odoo ran the second record again after a serialization
        failure: the master the first one made keeps the binding, no second master is made
        and nothing goes to Outlook again (reliability soak against Odoo, seed 427375925:
        the base event took the binding, and the unbound master went as a second series)."""
        account = self.account(owner="m365-test-a")
        event = self.user_event(
            self.user_a, recurrency=True, rrule_type="daily", interval=1, end_type="count", count=3,
        )
        series = event.recurrence_id
        (change,) = [c for c in self.changes(account) if c["crm_event_id"] in series.calendar_event_ids.ids]
        master_id = unique("m")
        payload = {"account_id": account["id"], "crm_event_id": change["crm_event_id"],
                   "graph_id": master_id, "change_key": "m1", "version": change["version"]}
        self.assertTrue(self.api.mark_event_pushed(dict(payload)))
        master = self.bound_event(account, master_id)
        self.assertTrue(self.api.mark_event_pushed(dict(payload, change_key="m2")))
        self.assertEqual(self.bound_event(account, master_id), master)
        self.assertEqual(master.m365_binding_ids.change_key, "m2")
        Event = self.env["calendar.event"].with_context(active_test=False)
        self.assertEqual(Event.search([("recurrence_id", "=", series.id), ("m365_is_series_master", "=", True)]),
                         master)
        self.assertFalse(series.base_event_id.m365_binding_ids)
        self.assertEqual(self.changes(account), [])

    # --- people: stored here, decided by the daemon (m365sync.sync.attendees) ----------------

    def test_a_pending_change_carries_its_people_as_stored(self):
        account = self.account(owner="m365-test-a")
        event = self.user_event(self.user_a)
        event.sudo().write({"m365_extra_attendees": json.dumps(
            [{"address": "zoe@example.com", "name": "Zoe", "role": "optional", "response": "accepted"}]
        )})
        (change,) = self.api.event_changes_to_push({"account_id": account["id"]})
        people = change["odoo_people"]
        rows = {row["partner_id"]: row for row in people["attendees"]}
        self.assertEqual(set(rows), {self.anna.id, self.user_a.partner_id.id})
        self.assertEqual((rows[self.anna.id]["address"], rows[self.anna.id]["is_user"]),
                         (self.anna.email, False))
        self.assertTrue(rows[self.user_a.partner_id.id]["is_user"])
        self.assertEqual({row["state"] for row in rows.values()} - {"needsAction", "accepted"}, set())
        self.assertEqual(people["extra_attendees"], [
            {"address": "zoe@example.com", "name": "Zoe", "role": "optional", "response": "accepted"}
        ])
        self.assertFalse(people["organizer"])  # no Outlook organizer stored: the daemon picks
        self.assertEqual(people["user"]["address"], "a@contoso.example")
        self.assertEqual(people["owner_address"], account["address"])
        # Nothing of it decided here: no organizer, attendee list or answer on the wire.
        self.assertNotIn("attendees", change["event"])
        self.assertNotIn("organizer", change["event"])
        self.assertNotIn("my_response", change)

    def test_the_daemons_people_are_written_with_what_only_odoo_resolves(self):
        account = self.account(owner="m365-test-b")
        gone = self.env["res.partner"].create({"name": "Gone"})
        gone_id = gone.id
        gone.unlink()
        company = self.env["res.partner"].create({"name": unique("Fabrikam"), "is_company": True})
        item = stored(wire_event(unique("g"), organizer="A@contoso.example"))
        item |= {"crm_event_id": None, "expected_version": None, "keep_details": False,
                 "odoo_values": {"name": "Planned", "start": iso(SOON), "stop": iso(SOON + timedelta(hours=1))},
                 "odoo_kept_values": {}}
        people = {
            "organizer": {"address": "a@contoso.example", "name": "Alex"},
            "attendee_states": {str(self.anna.id): "declined", str(gone_id): "accepted"},
            "organizer_state": "accepted",
            "owner_state": "tentative",
            "company_ids": [company.id, gone_id],
            "extra_attendees": [{"address": "zoe@example.com", "name": "Zoe", "role": "optional",
                                 "response": "none"}],
        }
        page = event_page(account["id"], [item | {"odoo_people_values": people}])
        self.api.store_event_page({"page": page, "lease": None})
        event = self.bound_event(account, item["event"]["graph_id"])
        self.assertEqual(event.user_id, self.user_a)  # the organizing user, found by address
        self.assertEqual(event.m365_organizer_address, "a@contoso.example")
        states = {a.partner_id: a.state for a in event.attendee_ids}
        self.assertEqual(states, {self.anna: "declined", self.user_a.partner_id: "accepted",
                                  self.user_b.partner_id: "tentative"})
        self.assertEqual(event.m365_company_ids, company)  # ids that no longer exist are dropped
        self.assertEqual([line["address"] for line in event._m365_extra_attendees()], ["zoe@example.com"])
        # A state Odoo does not know, or no people at all (an older daemon), is refused whole.
        for people_ in (people | {"owner_state": "maybe"}, people | {"company_ids": ["x"]}, None):
            with self.subTest(people=people_), self.assertRaisesRegex(UserError, "^M365:BadRequest:"):
                other = item | {"event": item["event"] | {"graph_id": unique("g")},
                                "odoo_people_values": people_}
                self.api.store_event_page({"page": event_page(account["id"], [other]), "lease": None})

    # --- no Odoo invitations for synced meetings ---------------------------------------------

    def test_no_invitation_mails_for_synced_meetings(self):
        # Control: a user without a mailbox gets Odoo's own invitations.
        last = self.last_mail_id()
        self.user_event(self.user_b)
        self.assertGreater(self.mails_since(last), 0)
        # The owner of a connected account: Outlook invites, not Odoo.
        self.account(owner="m365-test-a")
        last = self.last_mail_id()
        event = self.user_event(self.user_a)
        event.with_user(self.user_a).write(
            {"start": SOON + timedelta(days=1), "stop": SOON + timedelta(days=1, hours=1)}
        )
        other = self.env["res.partner"].create({"name": "Olga", "email": f"{unique('olga')}@example.com"})
        event.with_user(self.user_a).write({"partner_ids": [Command.link(other.id)]})
        self.assertEqual(self.mails_since(last), 0)
        # Inbound writes: never.
        account = self.account()
        graph_id = unique("g")
        self.store(account, stored(wire_event(graph_id), [link(self.anna), link(other)]))
        moved = wire_event(graph_id, start=SOON + timedelta(days=2), change_key="ck2")
        self.store(account, stored(moved, [link(self.anna)]))
        self.assertEqual(self.mails_since(last), 0)

    # --- access -------------------------------------------------------------------------------

    @mute_logger("odoo.models")
    def test_only_the_daemon_may_call_and_write_sync_state(self):
        account = self.account(owner="m365-test-a")
        for method, payload in (
            ("store_event_page", {"page": event_page(account["id"]), "lease": None}),
            ("event_bindings", {"account_id": account["id"], "graph_ids": []}),
            ("bound_event_ids", {"account_id": account["id"]}),
            ("unconfirmed_series_ids", {"account_id": account["id"]}),
            ("unconfirmed_occurrences", {"account_id": account["id"], "start": iso(SOON),
                                         "end": iso(SOON), "limit": 1}),
            ("remove_cancelled_occurrences", {"account_id": account["id"], "removals": []}),
            ("event_changes_to_push", {"account_id": account["id"]}),
            ("mark_event_pushed", {"account_id": account["id"], "crm_event_id": 1, "graph_id": "g",
                                   "change_key": None, "version": 1}),
            ("upcoming_events_for_partner", {"partner_id": self.anna.id, "since": iso(SOON)}),
        ):
            with self.subTest(method=method), self.assertRaises(AccessError):
                getattr(self.env["m365.daemon.api"].with_user(self.user_a), method)(payload)
        event = self.user_event(self.user_a)
        with self.assertRaises(AccessError):
            event.with_user(self.user_a).write({"m365_version": 99})
        with self.assertRaises(AccessError):
            self.user_event(self.user_b, m365_owner_account_id=account["id"])
        with self.assertRaises(AccessError):
            self.env["m365.event.binding"].with_user(self.user_a).search([])

    def test_unknown_account(self):
        missing = 2**31 - 7
        with self.assertRaisesRegex(UserError, "^M365:UnknownAccount:"):
            self.api.store_event_page({"page": event_page(missing), "lease": None})
        with self.assertRaisesRegex(UserError, "^M365:UnknownAccount:"):
            self.api.event_changes_to_push({"account_id": missing})

    # --- reminders ----------------------------------------------------------------------------

    def test_outlook_events_carry_no_odoo_reminders(self):
        alarm = self.env.ref("calendar.alarm_notif_1")
        self.env["ir.default"].set("calendar.event", "alarm_ids", [alarm.id])
        account = self.account(owner="m365-test-a")
        made_in_odoo = self.user_event(self.user_a)
        self.assertEqual(made_in_odoo.alarm_ids, alarm)  # Odoo's default applies to Odoo's own
        graph_id = unique("g")
        self.store(account, stored(wire_event(graph_id), [link(self.anna)]))
        from_outlook = self.bound_event(account, graph_id)
        self.assertFalse(from_outlook.alarm_ids)
        # A reminder added to it in Odoo goes with the next change from Outlook.
        from_outlook.write({"alarm_ids": [Command.link(alarm.id)]})
        moved = wire_event(graph_id, start=SOON + timedelta(hours=1), change_key="ck2")
        self.store(account, stored(moved, [link(self.anna)]))
        self.assertFalse(from_outlook.alarm_ids)
        # An event made in Odoo keeps its reminders when Outlook's copy changes.
        pushed = unique("g")
        self.api.mark_event_pushed(
            {"account_id": account["id"], "crm_event_id": made_in_odoo.id, "graph_id": pushed,
             "change_key": "p1", "version": made_in_odoo.m365_version}
        )
        edited = wire_event(pushed, subject="Edited in Outlook", change_key="p2",
                            organizer=account["address"])
        self.store(account, stored(edited, [link(self.anna)]))
        self.assertEqual(made_in_odoo.name, "Edited in Outlook")
        self.assertEqual(made_in_odoo.alarm_ids, alarm)

    # --- privacy ------------------------------------------------------------------------------

    def test_only_internal_users_goes_to_outlook_as_private(self):
        account = self.account(owner="m365-test-a")
        self.assertIn("confidential", dict(self.env["calendar.event"]._fields["privacy"].selection))
        # The daemon maps Odoo's privacy to Outlook's sensitivity (m365sync.sync.event_mapping,
        # tests/unit/test_event_mapping.py): the addon reports the stored privacy as it is.
        for privacy in ("confidential", "private", "public"):
            with self.subTest(privacy=privacy):
                event = self.user_event(self.user_a, privacy=privacy)
                (change,) = self.changes(account, event)
                self.assertEqual(change["odoo_event"]["privacy"], privacy)

    def test_a_private_odoo_event_goes_to_outlook_with_its_details_and_attendees(self):
        account = self.account(owner="m365-test-a")
        for privacy in ("private", "confidential"):
            with self.subTest(privacy=privacy):
                event = self.user_event(
                    self.user_a, privacy=privacy, location="Room 7", description="<p>Terms</p>"
                )
                (change,) = self.changes(account, event)
                wire = change["event"]
                self.assertEqual(change["odoo_event"]["privacy"], privacy)
                self.assertEqual((wire["subject"], wire["location"]), ("Demo", "Room 7"))
                self.assertIn("Terms", wire["body_html"])
                self.assertIn(self.anna.email.lower(), [a["address"] for a in wire["attendees"]])
                self.assertIn(self.anna.email.lower(), change["attendee_addresses"])

    def busy_time(self, graph_id, start, change_key, organizer):
        """A private Outlook event as the daemon stores it (sync.calendar.busy_only)."""
        item = wire_event(graph_id, subject=None, start=start, change_key=change_key,
                          organizer=organizer, sensitivity="private")
        return item | {"body_html": None, "location": None}

    def test_a_bound_private_event_moved_in_outlook_keeps_odoos_details(self):
        account = self.account(owner="m365-test-a")
        for privacy, kept in (("confidential", "confidential"), ("private", "private"),
                              ("public", "private")):
            with self.subTest(privacy=privacy):
                event = self.user_event(self.user_a, privacy=privacy, location="Room 7",
                                        description="<p>Terms</p>")
                graph_id = unique("g")
                self.api.mark_event_pushed(
                    {"account_id": account["id"], "crm_event_id": event.id, "graph_id": graph_id,
                     "change_key": "p1", "version": event.m365_version}
                )
                later = SOON + timedelta(hours=2)
                organizer = {"role": "organizer", "address": account["address"], "name": "",
                             "response": "organizer", "partner_id": None, "company_id": None}
                item = stored(self.busy_time(graph_id, later, "p2", account["address"]),
                              [organizer])
                item["keep_details"] = True
                self.assertEqual(self.store(account, item)["updated"], 1)
                self.assertEqual((event.name, event.location), ("Demo", "Room 7"))
                self.assertIn("Terms", str(event.description))
                self.assertIn(self.anna, event.partner_ids)
                self.assertEqual((event.start, event.stop), (later, later + timedelta(hours=1)))
                self.assertEqual((event.privacy, event.m365_sensitivity), (kept, "private"))
                self.assertFalse(self.changes(account, event))  # nothing to push back

    def test_a_colleagues_private_copy_does_not_wipe_the_meeting(self):
        """A colleague invited to a private Odoo meeting holds a private copy (same iCalUId):
        it links, busy time only, and leaves the meeting's details and attendees alone."""
        organizer, colleague = self.account(owner="m365-test-a"), self.account()
        event = self.user_event(self.user_a, privacy="private", location="Room 7")
        uid = unique("uid")
        self.api.mark_event_pushed(
            {"account_id": organizer["id"], "crm_event_id": event.id, "graph_id": unique("g"),
             "change_key": "p1", "version": event.m365_version, "ical_uid": uid}
        )
        copy = self.busy_time(unique("g"), SOON, "c1", organizer["address"]) | {"ical_uid": uid}
        self.assertEqual(self.store(colleague, stored(copy))["linked"], 1)
        self.assertEqual((event.name, event.location, event.privacy), ("Demo", "Room 7", "private"))
        self.assertIn(self.anna, event.partner_ids)

    def test_keep_details_needs_a_binding(self):
        """An unbound private event (a personal appointment) is busy time only, whatever the
        flag says: nothing of it is kept but its time."""
        account = self.account(owner="m365-test-a")
        graph_id = unique("g")
        item = stored(self.busy_time(graph_id, SOON, "ck1", "meganb@contoso.example"))
        item["keep_details"] = True
        self.assertEqual(self.store(account, item)["created"], 1)
        event = self.bound_event(account, graph_id)
        self.assertEqual((event.name, event.privacy, event.location), ("Busy", "private", False))

    def test_the_daemons_mapped_values_cannot_reach_other_fields(self):
        """The daemon maps an Outlook item to Odoo's fields (``odoo_values``); the API writes
        only the fields such a mapping decides, never the owner account, versions or people."""
        account = self.account(owner="m365-test-a")
        page = placed_page(self.api, event_page(account["id"], [stored(wire_event(unique("g")))]))
        page["upserts"][0]["odoo_values"]["m365_owner_account_id"] = account["id"]
        with self.assertRaisesRegex(UserError, "M365:BadRequest: .*m365_owner_account_id"):
            self.api.store_event_page({"page": page, "lease": None})

    # --- free/busy clean-up -------------------------------------------------------------------

    def test_old_free_busy_requests_are_removed_by_the_daily_cron(self):
        account = self.account(owner="m365-test-a")
        Request = self.env["m365.free.busy.request"]
        old, fresh = (
            Request.create({"account_id": account["id"], "day": SOON.date(), "addresses": a})
            for a in ("old@example.com", "fresh@example.com")
        )
        self.env["m365.free.busy"].create(
            [{"request_id": r.id, "address": "x@example.com", "start": SOON,
              "end": SOON + timedelta(hours=1), "status": "busy"} for r in (old, fresh)]
        )
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE m365_free_busy_request SET create_date = %s WHERE id = %s",
            (datetime.now() - timedelta(days=1, minutes=5), old.id),
        )
        self.env.invalidate_all()
        cron = self.env.ref("crm_microsoft365.ir_cron_m365_free_busy_gc")
        self.assertEqual((cron.interval_number, cron.interval_type, cron.active), (1, "days", True))
        cron.method_direct_trigger()
        self.assertFalse(old.exists())
        self.assertFalse(self.env["m365.free.busy"].search([("request_id", "=", old.id)]))
        self.assertTrue(fresh.exists())
        self.assertEqual(len(fresh.result_ids), 1)

    # --- whole-series changes -----------------------------------------------------------------

    def pushed_series(self, count=3):
        """An Odoo series of ``count`` weekly meetings, pushed, with Outlook's occurrences back:
        (account, master, Outlook's master id, the occurrences by start)."""
        account = self.account(owner="m365-test-a")
        event = self.user_event(
            self.user_a, recurrency=True, rrule_type="weekly", interval=1, end_type="count",
            count=count, **{SOON.strftime("%a").lower(): True},
        )
        recurrence = event.recurrence_id
        (change,) = [c for c in self.changes(account)
                     if c["crm_event_id"] in recurrence.calendar_event_ids.ids]
        master_id = unique("m")
        self.api.mark_event_pushed(
            {"account_id": account["id"], "crm_event_id": change["crm_event_id"],
             "graph_id": master_id, "change_key": "m1", "version": change["version"]}
        )
        master = self.bound_event(account, master_id)
        occurrences = recurrence.calendar_event_ids.sorted("start")
        self.store(account, *[
            stored(wire_event(unique("o"), start=e.start, event_type="occurrence",
                              master=master_id, organizer=account["address"]), [link(self.anna)])
            for e in occurrences
        ])
        self.assertEqual(self.changes(account), [])
        return account, master, master_id, occurrences

    def test_an_all_events_edit_of_details_patches_the_master_only(self):
        account, master, master_id, occurrences = self.pushed_series()
        occurrences[1].with_user(self.user_a).write(
            {"name": "Weekly sync", "location": "Room 9", "recurrence_update": "all_events"}
        )
        self.assertEqual(set(occurrences.mapped("name")), {"Weekly sync"})
        (change,) = self.changes(account)
        self.assertEqual(change["crm_event_id"], master.id)
        self.assertEqual(change["event"]["graph_id"], master_id)
        self.assertTrue(change["odoo_event"]["is_series_master"])
        self.assertEqual((change["event"]["subject"], change["event"]["location"]),
                         ("Weekly sync", "Room 9"))
        self.assertIs(change["reshapes_series"], False)  # the exceptions stay in Outlook
        self.assertEqual(change["odoo_recurrence"]["count"], 3)
        self.api.mark_event_pushed(
            {"account_id": account["id"], "crm_event_id": master.id, "graph_id": master_id,
             "change_key": "m2", "version": change["version"]}
        )
        self.assertEqual(self.changes(account), [])

    def test_an_all_events_change_of_times_reshapes_the_master(self):
        account, master, master_id, occurrences = self.pushed_series()
        first = occurrences[0].start
        later = occurrences[1].start + timedelta(hours=2)
        occurrences[1].with_user(self.user_a).write(
            {"start": later, "stop": later + timedelta(hours=1), "recurrence_update": "all_events"}
        )
        (change,) = self.changes(account)
        self.assertEqual(change["crm_event_id"], master.id)
        self.assertIs(change["reshapes_series"], True)
        self.assertEqual(change["odoo_event"]["start"], iso(first + timedelta(hours=2)))
        self.assertEqual(change["odoo_recurrence"]["rrule_type"], "weekly")
        self.assertFalse(change["deleted"])
        # A record that says nothing of the shape (another mailbox's answer, a details-only
        # PATCH) leaves the reshape pending: only the daemon knows what its push carried.
        self.api.mark_event_pushed(
            {"account_id": account["id"], "crm_event_id": master.id, "graph_id": master_id,
             "change_key": "m2", "version": change["version"]}
        )
        self.assertTrue(master.m365_series_reshaped)
        self.api.mark_event_pushed(
            {"account_id": account["id"], "crm_event_id": master.id, "graph_id": master_id,
             "change_key": "m2", "version": change["version"], "shape_pushed": True}
        )
        self.assertFalse(master.m365_series_reshaped)
        # Outlook's new occurrences come back and are bound to Odoo's new ones, none created.
        series = master.recurrence_id
        self.assertEqual(len(series.calendar_event_ids), 3)
        result = self.store(account, *[
            stored(wire_event(unique("o"), start=e.start, event_type="occurrence",
                              master=master_id, organizer=account["address"]), [link(self.anna)])
            for e in series.calendar_event_ids.sorted("start")
        ])
        self.assertEqual((result["created"], result["linked"]), (0, 3))
        self.assertEqual(self.changes(account), [])

    def _delete_all_events(self, action):
        account, master, master_id, occurrences = self.pushed_series()
        getattr(occurrences[1].with_user(self.user_a), action)("all_events")
        self.assertFalse(occurrences.exists().filtered("active"))
        (change,) = self.changes(account)
        self.assertEqual((change["crm_event_id"], change["deleted"]), (master.id, True))
        self.assertEqual(change["event"]["graph_id"], master_id)
        self.api.mark_event_pushed(
            {"account_id": account["id"], "crm_event_id": master.id,
             "graph_id": master_id, "change_key": None, "version": change["version"]}
        )
        self.assertFalse(master.exists())
        self.assertEqual(self.changes(account), [])
        return occurrences

    def test_deleting_all_events_deletes_the_master(self):
        self.assertFalse(self._delete_all_events("action_mass_deletion").exists())

    def test_archiving_all_events_deletes_the_master(self):
        # The calendar view's delete of a recurring meeting archives it.
        occurrences = self._delete_all_events("action_mass_archive")
        self.assertEqual(len(occurrences.exists()), 3)  # archived, not tombstones
        self.assertFalse(any(occurrences.mapped("m365_deleted")))

    def test_this_and_following_ends_the_old_series_and_starts_a_new_one(self):
        account, master, master_id, occurrences = self.pushed_series(count=4)
        third = occurrences[2]
        third.with_user(self.user_a).write(
            {"name": "New format", "recurrence_update": "future_events"}
        )
        changes = self.changes(account)
        self.assertEqual(len(changes), 2, changes)
        old, new = sorted(changes, key=lambda c: c["event"]["graph_id"] == "")
        self.assertEqual((old["crm_event_id"], old["event"]["graph_id"]), (master.id, master_id))
        self.assertIs(old["reshapes_series"], True)
        self.assertEqual(old["odoo_recurrence"]["end_type"], "end_date")
        until = old["odoo_recurrence"]["until"]
        self.assertTrue(occurrences[1].start.date().isoformat() <= until < third.start.date().isoformat())
        self.assertEqual(new["crm_event_id"], third.id)
        self.assertEqual(push_shape(new["odoo_event"]), "series")
        self.assertEqual(new["event"]["subject"], "New format")
        self.assertEqual(new["odoo_recurrence"]["count"], 2)

    def test_deleting_this_and_following_ends_the_series(self):
        account, master, _master_id, occurrences = self.pushed_series(count=4)
        third = occurrences[2]
        third_day = third.start.date()
        third.with_user(self.user_a).action_mass_deletion("future_events")
        self.assertEqual(occurrences.exists(), occurrences[:2])
        (change,) = self.changes(account)
        self.assertEqual(change["crm_event_id"], master.id)
        self.assertFalse(change["deleted"])
        self.assertEqual(change["odoo_recurrence"]["end_type"], "end_date")
        until = change["odoo_recurrence"]["until"]
        self.assertTrue(occurrences[1].start.date().isoformat() <= until < third_day.isoformat())

    def outlook_series(self, organizer):
        account = self.account(owner="m365-test-a")
        master_id = unique("m")
        pattern = {"pattern_type": "weekly", "start_date": SOON.date().isoformat(), "interval": 1,
                   "days_of_week": [SOON.strftime("%A").lower()], "range_type": "noEnd"}
        odoo = dict(WEEKLY_ODOO, mon=False, **{SOON.strftime("%a").lower(): True})
        self.store(account, stored(
            wire_event(master_id, event_type="seriesMaster", recurrence=pattern,
                       organizer=organizer or account["address"]),
            [link(self.anna)], odoo_recurrence=odoo,
        ), *[
            stored(wire_event(unique("o"), start=SOON + timedelta(weeks=n), event_type="occurrence",
                              master=master_id, organizer=organizer or account["address"]),
                   [link(self.anna)])
            for n in range(3)
        ])
        master = self.bound_event(account, master_id)
        occurrences = self.env["calendar.event"].search(
            [("m365_series_master_id", "=", master.id)], order="start")
        self.assertEqual(len(occurrences), 3)
        self.assertEqual(self.changes(account), [])
        return account, master, master_id, pattern, occurrences

    def test_an_outlook_series_edited_for_all_events_in_odoo(self):
        account, master, master_id, pattern, occurrences = self.outlook_series(None)
        occurrences[0].with_user(self.user_a).write(
            {"name": "Renamed series", "recurrence_update": "all_events"}
        )
        (change,) = self.changes(account)
        self.assertEqual((change["crm_event_id"], change["event"]["graph_id"]), (master.id, master_id))
        self.assertEqual(change["event"]["recurrence"], pattern)  # Outlook's own pattern
        self.assertIs(change["reshapes_series"], False)
        self.assertEqual(change["event"]["organizer"]["address"], account["address"].lower())

    def test_this_and_following_of_an_outlook_series_in_odoo(self):
        account, master, _master_id, _pattern, occurrences = self.outlook_series(None)
        occurrences[1].with_user(self.user_a).write(
            {"location": "Room 12", "recurrence_update": "future_events"}
        )
        changes = {c["crm_event_id"]: c for c in self.changes(account)}
        self.assertEqual(set(changes), {master.id, occurrences[1].id})
        old, new = changes[master.id], changes[occurrences[1].id]
        self.assertFalse(old["event"]["recurrence"])  # the trimmed Odoo pattern goes instead
        self.assertEqual(old["odoo_recurrence"]["end_type"], "end_date")
        self.assertIs(old["reshapes_series"], True)
        self.assertEqual((new["event"]["graph_id"], push_shape(new["odoo_event"])), ("", "series"))
        self.assertEqual(new["event"]["location"], "Room 12")
        self.assertEqual(occurrences[1].m365_owner_account_id.id, account["id"])

    def test_someone_elses_series_is_not_changed_through_its_master(self):
        account, master, _master_id, _pattern, occurrences = self.outlook_series(
            "meganb@contoso.example"
        )
        occurrences[0].write({"name": "My own title", "recurrence_update": "all_events"})
        changes = self.changes(account)
        self.assertNotIn(master.id, [c["crm_event_id"] for c in changes])
        self.assertTrue(changes)
        self.assertFalse(any(c["owned_by_account"] for c in changes))
        self.assertEqual({c["event"]["organizer"]["address"] for c in changes},
                         {"meganb@contoso.example"})
