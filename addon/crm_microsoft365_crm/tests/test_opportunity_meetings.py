from datetime import timedelta

from odoo.addons.crm_microsoft365.tests.common import placed_page, unique
from odoo.tests import Form, tagged

from .common import GlueCase, iso, utc_now

CALENDAR = "calendarView-crm"


def wire_event(graph_id, start, subject="Review"):
    return {
        "graph_id": graph_id,
        "ical_uid": f"uid-{graph_id}",
        "event_type": "singleInstance",
        "subject": subject,
        "start": iso(start),
        "end": iso(start + timedelta(hours=1)),
        "time_zone": "UTC",
        "is_all_day": False,
        "start_date": None,
        "end_date": None,
        "series_master_id": None,
        "original_start": None,
        "recurrence": None,
        "body_html": "<p>Agenda</p>",
        "location": "Room 4",
        "online_meeting_url": None,
        "sensitivity": "normal",
        "show_as": "busy",
        "is_cancelled": False,
        "organizer": {"address": "sam@contoso.example", "name": "Sam"},
        "attendees": [],
        "change_key": "ck1",
        "last_modified": None,
        "transaction_id": None,
        "my_response": "none",
        "is_online_meeting": False,
    }


def attendee(partner):
    return {
        "role": "required",
        "address": partner.email.lower(),
        "name": partner.name,
        "response": "none",
        "partner_id": partner.id,
        "company_id": partner.parent_id.id or None,
    }


@tagged("post_install", "-at_install")
class TestOpportunityMeetings(GlueCase):
    def sync_meeting(self, *people, graph_id=None, change_key="ck1"):
        graph_id = graph_id or unique("ev")
        item = wire_event(graph_id, utc_now() + timedelta(days=2)) | {"change_key": change_key}
        page = {
            "account_id": self.account.id,
            "calendar_id": CALENDAR,
            "removed_ids": [],
            "upserts": [{"event": item, "attendees": [attendee(p) for p in people]}],
            "cursor": {"link": f"https://graph/delta?{graph_id}", "kind": "delta"},
            "skipped": {},
        }
        self.api.store_event_page({"page": placed_page(self.api, page)})
        binding = self.env["m365.event.binding"].search([("graph_id", "=", graph_id)])
        return binding.event_id

    def test_a_synced_meeting_gets_the_one_open_opportunity_of_its_contact(self):
        deal = self.opportunity("Acme rollout", self.ann)
        self.opportunity("Acme won deal", self.ann, probability=100)  # won: not open
        self.assertEqual(self.sync_meeting(self.ann).opportunity_id, deal)
        # Two open opportunities (here through two attendees): none is guessed.
        self.opportunity("Carl's pilot", self.carl)
        self.assertFalse(self.sync_meeting(self.ann, self.carl).opportunity_id)
        phase2 = self.opportunity("Acme phase 2", self.ann)
        graph_id = unique("ev")
        event = self.sync_meeting(self.ann, graph_id=graph_id)
        self.assertFalse(event.opportunity_id)
        # The user links one on the meeting; the meeting's next change from Outlook keeps it.
        event.with_user(self.sales).opportunity_id = phase2
        self.assertEqual(self.sync_meeting(self.ann, graph_id=graph_id, change_key="ck2"), event)
        self.assertEqual(event.opportunity_id, phase2)

    def test_schedule_meeting_from_the_opportunity_links_the_event(self):
        lead = self.opportunity("Acme rollout", self.ann).with_user(self.sales)
        action = lead.action_m365_schedule_meeting()
        self.assertEqual(action["res_model"], "m365.schedule.wizard")
        form = Form(self.env["m365.schedule.wizard"].with_user(self.sales).with_context(**action["context"]))
        self.assertEqual((form.partner_id, form.opportunity_id, form.subject), (self.ann, lead, "Acme rollout"))
        form.date = utc_now().date() + timedelta(days=3)
        form.start_time = 10.0
        form.save().action_confirm()
        event = self.env["calendar.event"].search([("opportunity_id", "=", lead.id)])
        self.assertEqual(len(event), 1)
        self.assertIn(self.ann, event.partner_ids)
        self.assertEqual(event.m365_owner_account_id, self.account)
        lead.invalidate_recordset()
        self.assertEqual((lead.m365_meeting_count, lead.m365_upcoming_meeting_count), (1, 1))
        self.assertEqual(lead.m365_next_meeting_at, event.start)

    def test_odoos_meeting_button_opens_schedule_meeting_with_an_account(self):
        lead = self.opportunity("Acme rollout", self.ann).with_user(self.sales)
        action = lead.with_context(m365_schedule=True).action_schedule_meeting()
        self.assertEqual(
            (action["res_model"], action["context"]["default_opportunity_id"]), ("m365.schedule.wizard", lead.id)
        )
        # Elsewhere (no flag), and for a user without an account, Odoo's calendar as before.
        self.assertEqual(lead.action_schedule_meeting()["res_model"], "calendar.event")
        self.account.sudo().status = "paused"
        self.assertEqual(lead.with_context(m365_schedule=True).action_schedule_meeting()["res_model"], "calendar.event")

    def test_the_meetings_tab_counts_what_it_shows_past_and_upcoming(self):
        lead = self.opportunity("Acme rollout", self.ann)
        now = utc_now()
        Event = self.env["calendar.event"]
        past = Event.create(
            {
                "name": "Intro",
                "start": now - timedelta(days=10),
                "stop": now - timedelta(days=10, hours=-1),
                "opportunity_id": lead.id,
            }
        )
        soon = Event.create(
            {
                "name": "Demo",
                "start": now + timedelta(days=1),
                "stop": now + timedelta(days=1, hours=1),
                "opportunity_id": lead.id,
            }
        )
        lead = lead.with_user(self.sales)
        self.assertEqual(lead.calendar_event_ids, past | soon)
        self.assertEqual((lead.m365_meeting_count, lead.m365_upcoming_meeting_count), (2, 1))
        self.assertEqual(lead.m365_next_meeting_at, soon.start)
        self.assertEqual(lead.m365_last_contact_at, past.start)
