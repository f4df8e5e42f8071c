"""A partner's meetings: one rule for the Meetings tab, Odoo's Meetings button (its count and
the calendar it opens) and the daemon's "upcoming meetings" RPC."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from odoo.tests import tagged

from odoo import Command, fields

from ..models.calendar_event import ORIGIN_KEY
from .common import M365Case, placed_page, unique
from .test_calendar_api import SOON, event_page, iso, link, stored, wire_event


@tagged("post_install", "-at_install")
class TestPartnerMeetings(M365Case):
    def store(self, account, *items):
        page = placed_page(self.api, event_page(account["id"], items))
        self.api.store_event_page({"page": page, "lease": None})

    def test_the_tab_the_count_and_the_button_agree(self):
        account = self.account()
        now = fields.Datetime.now()
        company = self.env["res.partner"].create({"name": unique("Fabrikam"), "is_company": True})
        self.anna = self.env["res.partner"].create(
            {"name": "Anna", "email": f"{unique('anna')}@example.com", "parent_id": company.id}
        )
        upcoming = wire_event(unique("g"), subject="Upcoming")
        past = wire_event(unique("g"), subject="Past", start=now - timedelta(days=2))
        cancelled = wire_event(unique("g"), subject="Cancelled", start=SOON + timedelta(days=1))
        cancelled["is_cancelled"] = True
        self.store(account, *(stored(e, [link(self.anna)]) for e in (upcoming, past, cancelled)))
        for partner in (self.anna, company):
            with self.subTest(partner=partner.name):
                partner.invalidate_recordset()
                self.assertEqual(partner.m365_upcoming_meeting_ids.mapped("name"), ["Upcoming"])
                self.assertEqual(partner.m365_past_meeting_ids.mapped("name"), ["Past"])
                shown = partner.m365_upcoming_meeting_ids | partner.m365_past_meeting_ids
                self.assertEqual(partner.meeting_count, len(shown))
                opened = self.env["calendar.event"].search(partner.schedule_meeting()["domain"])
                self.assertEqual(opened, shown)
        rpc = self.api.upcoming_events_for_partner(
            {"partner_id": company.id, "since": iso(now)}
        )
        self.assertEqual([summary["subject"] for summary in rpc], ["Upcoming"])


@tagged("post_install", "-at_install")
class TestMeetingRuleCases(M365Case):
    """The rule of a partner's meetings gives, case by case, what the daemon's gives
    (m365sync.sync.meetings, in the embedded store), from the table both test suites read."""

    def meeting(self, case, people):
        values = {
            "name": case["name"],
            "m365_is_cancelled": case.get("cancelled", False),
            "m365_deleted": case.get("deleted", False),
            "m365_is_series_master": case.get("series_master", False),
        }
        if "all_day" in case:
            first, last = case["all_day"]
            values |= {"allday": True, "start": f"{first} 08:00:00", "stop": f"{last} 18:00:00"}
        else:
            values |= {"start": self.utc(case["start"]), "stop": self.utc(case["end"])}
        if case["who"] == "work_domain":
            values["m365_company_ids"] = [Command.set([people["company"].id])]
        else:
            values["partner_ids"] = [Command.set([people[case["who"]].id])]
        return self.env["calendar.event"].with_context(**{ORIGIN_KEY: True}).create(values)

    @staticmethod
    def utc(text):
        return datetime.fromisoformat(text).astimezone(timezone.utc).replace(tzinfo=None)

    def test_the_shared_cases(self):
        table = json.loads(Path(__file__).with_name("meeting_cases.json").read_text("utf-8"))
        since, cases = self.utc(table["since"]), table["cases"]
        company = self.env["res.partner"].create({"name": unique("Fabrikam"), "is_company": True})
        people = {
            "company": company,
            "contact": self.env["res.partner"].create(
                {"name": "Anna", "email": f"{unique('anna')}@example.com", "parent_id": company.id}
            ),
            "stranger": self.env["res.partner"].create(
                {"name": "Stranger", "email": f"{unique('someone')}@elsewhere.example"}
            ),
        }
        for case in cases:
            self.meeting(case, people)
        upcoming = sorted(c["name"] for c in cases if c["upcoming"])
        meetings = sorted(c["name"] for c in cases if c["meeting"])
        Event = self.env["calendar.event"]
        found = Event.search(company._m365_meeting_domain(since))
        self.assertEqual(sorted(found.mapped("name")), upcoming)
        rpc = self.api.upcoming_events_for_partner(
            {"partner_id": company.id, "since": iso(since), "limit": 100}
        )
        self.assertEqual(sorted(summary["subject"] for summary in rpc), upcoming)
        counted = Event.browse(company._compute_meeting()[company.id])
        self.assertEqual(sorted(counted.mapped("name")), meetings)
        self.assertEqual(company.meeting_count, len(meetings))


@tagged("post_install", "-at_install")
class TestMeetingsReachOutlookPromptly(M365Case):
    """A meeting made, changed or deleted in Odoo asks the daemon for a cycle of its account
    at once (as Compose Email does), instead of waiting for the next sync interval."""

    def test_create_change_and_delete_ask_for_a_cycle(self):
        account = self.env["m365.account"].browse(self.account(owner="m365-test-a")["id"])
        self.assertFalse(account.sync_requested_at)
        event = (
            self.env["calendar.event"]
            .with_user(self.user_a)
            .create({"name": "Demo", "start": SOON, "stop": SOON + timedelta(hours=1)})
        )
        self.assertEqual(event.m365_owner_account_id, account)
        account.invalidate_recordset()
        created = account.sync_requested_at
        self.assertTrue(created)
        account.sudo().write({"sync_requested_at": False})
        event.with_user(self.user_a).write({"name": "Demo, moved"})
        account.invalidate_recordset()
        self.assertTrue(account.sync_requested_at)

    def test_a_meeting_of_a_user_without_a_mailbox_asks_nothing(self):
        account = self.env["m365.account"].browse(self.account(owner="m365-test-a")["id"])
        self.env["calendar.event"].with_user(self.user_b).create(
            {"name": "Lunch", "start": SOON, "stop": SOON + timedelta(hours=1)}
        )
        account.invalidate_recordset()
        self.assertFalse(account.sync_requested_at)
