import base64
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from odoo.exceptions import RedirectWarning, UserError
from odoo.tests import Form, HttpCase, new_test_user, tagged

from .common import INBOX, SENT, M365Case, unique, wire_message, wire_page, wire_spec, wire_stored


def berlin(day, hour):
    """``hour``:00 on ``day`` in Berlin, as Odoo stores it (naive UTC)."""
    local = datetime.combine(day, time(hour), tzinfo=ZoneInfo("Europe/Berlin"))
    return local.astimezone(timezone.utc).replace(tzinfo=None)


@tagged("post_install", "-at_install")
class TestComposeWizard(M365Case):
    def setUp(self):
        super().setUp()
        self.account_a = self.env["m365.account"].browse(
            self.account(owner="m365-test-a", address="a@contoso.example")["id"]
        )
        self.ann = self.partner("Ann Example", "ann@example.com")

    def typed(self, text):
        """What the To tags widget does with a typed new address (name_create, an address
        required)."""
        Partner = self.env["res.partner"].with_user(self.user_a).with_context(force_email=True)
        return Partner.browse(Partner.name_create(text)[0])

    def compose(self, user=None, **context):
        user = user or self.user_a
        return Form(self.env["m365.compose.wizard"].with_user(user).with_context(**context))

    def test_compose_from_a_contact_queues_the_mail(self):
        form = self.compose(default_partner_id=self.ann.id)
        self.assertEqual(form.account_id, self.account_a.with_user(self.user_a))
        self.assertEqual(form.recipient_ids[:], self.ann)
        self.assertEqual(form.email_to, '"Ann Example" <ann@example.com>')
        form.email_cc = "boss@contoso.example"
        form.subject = "Our offer"
        form.body_html = "<p>Hello Ann</p>"
        wizard = form.save()
        upload = (
            self.env["ir.attachment"]
            .with_user(self.user_a)
            .create(
                {
                    "name": "offer.txt",
                    "raw": b"the offer",
                    "res_model": "m365.compose.wizard",
                    "res_id": 0,
                }
            )
        )
        wizard.attachment_ids = upload
        action = wizard.action_send()
        self.assertEqual(action["tag"], "display_notification")
        self.assertIn("queued; sent through Outlook within seconds", action["params"]["message"])
        mail = self.env["m365.outbox"].search([("account_id", "=", self.account_a.id)])
        self.assertEqual(len(mail), 1)
        self.assertEqual(
            (
                mail.state,
                mail.partner_id,
                mail.email_to,
                mail.email_cc,
                mail.subject,
                mail.requested_by,
            ),
            (
                "queued",
                self.ann,
                '"Ann Example" <ann@example.com>',
                "boss@contoso.example",
                "Our offer",
                "m365-test-a",
            ),
        )
        self.assertIn("Hello Ann", mail.body_html)
        self.assertEqual((upload.res_model, upload.res_id), ("m365.outbox", mail.id))
        wire = self.api.outgoing_mail({"account_id": self.account_a.id})
        self.assertEqual(base64.b64decode(wire[0]["attachments"][0]["content"]), b"the offer")

    def test_compose_from_a_company_without_email(self):
        company = self.partner("Acme", None, is_company=True)
        self.user_a.groups_id += self.env.ref("base.group_partner_manager")
        form = self.compose(active_model="res.partner", active_id=company.id)
        self.assertFalse(form.recipient_ids)
        # A new address typed in To: the tags widget's quick create makes the contact.
        form.recipient_ids.add(self.typed("sales@acme.example"))
        form.subject = "Hi"
        form.save().action_send()
        mail = self.env["m365.outbox"].search([("account_id", "=", self.account_a.id)])
        self.assertEqual((mail.partner_id, mail.email_to), (company, "sales@acme.example"))

    def test_refused_without_a_connected_account(self):
        with self.assertRaisesRegex(RedirectWarning, "Connect Microsoft Account"):
            self.compose(user=self.user_b, default_partner_id=self.ann.id)
        self.account_a.sudo().write({"status": "needs_reconnect"})
        with self.assertRaisesRegex(RedirectWarning, "needs to be reconnected"):
            self.compose(default_partner_id=self.ann.id)

    def test_bad_input_fails_with_words(self):
        form = self.compose(default_partner_id=self.ann.id)
        form.recipient_ids.add(self.partner("Typo", "ann@example"))
        form.recipient_ids.add(self.partner("Two", "a@example.com, b@example.com"))
        form.email_cc = "ann@example, bob@example.com"
        wizard = form.save()
        with self.assertRaisesRegex(UserError, "To: Two, Typo has no single valid email address"):
            wizard.action_send()
        wizard.recipient_ids = self.ann
        with self.assertRaisesRegex(UserError, "Cc: not a valid email address: 'ann@example'"):
            wizard.action_send()
        wizard.recipient_ids = False
        wizard.email_cc = False
        with self.assertRaisesRegex(UserError, "at least one recipient"):
            wizard.action_send()
        wizard.recipient_ids = self.ann
        big = (
            self.env["ir.attachment"]
            .with_user(self.user_a)
            .create({"name": "huge.bin", "raw": b"0" * (3 * 1024 * 1024 + 1)})
        )
        wizard.attachment_ids = big
        with self.assertRaisesRegex(UserError, "over Microsoft Graph's 3 MB limit"):
            wizard.action_send()
        self.assertFalse(self.env["m365.outbox"].search([("account_id", "=", self.account_a.id)]))

    def test_cannot_pick_someone_elses_account(self):
        account_b = self.env["m365.account"].browse(self.account(owner="m365-test-b")["id"])
        wizard = self.compose(default_partner_id=self.ann.id).save()
        # The field's domain hides it; a crafted write is refused at Send.
        wizard.sudo().account_id = account_b
        with self.assertRaisesRegex(UserError, "your own Microsoft 365 account"):
            wizard.action_send()

    def test_reply_goes_to_the_threads_newest_message(self):
        conversation = unique("conv-")
        older = wire_message(
            "AAMkOld",
            "<old@example.com>",
            conversation=conversation,
            subject="Prices",
            sender="ann@example.com",
            to=("a@contoso.example",),
            at="2025-03-01T09:00:00+00:00",
        )
        mine = wire_message(
            "AAMkMine",
            "<mine@contoso>",
            folder=SENT,
            conversation=conversation,
            subject="RE: Prices",
            sender="a@contoso.example",
            to=("ann@example.com",),
            at="2025-03-01T10:00:00+00:00",
        )
        newest = wire_message(
            "AAMkNew",
            "<new@example.com>",
            conversation=conversation,
            subject="RE: Prices",
            sender="ann@example.com",
            to=("a@contoso.example",),
            at="2025-03-01T11:00:00+00:00",
        )
        people = {"ann@example.com": self.ann}
        self.api.store_mail_page(
            {
                "page": wire_page(
                    self.account_a.id,
                    INBOX,
                    [wire_stored(older, people), wire_stored(newest, people)],
                )
            }
        )
        self.api.store_mail_page(
            {"page": wire_page(self.account_a.id, SENT, [wire_stored(mine, people)])}
        )
        thread = self.env["m365.mail.thread"].search([("conversation_id", "=", conversation)])
        form = self.compose(default_thread_id=thread.id)
        self.assertEqual(form.reply_to_graph_id, "AAMkNew")
        self.assertEqual(form.recipient_ids[:], self.ann)  # the contact holding the address
        self.assertEqual(form.email_to, '"Ann Example" <ann@example.com>')
        self.assertEqual(form.subject, "RE: Prices")
        self.assertEqual(form.partner_id, self.ann)
        form.body_html = "<p>Agreed.</p>"
        form.save().action_send()
        mail = self.env["m365.outbox"].search([("account_id", "=", self.account_a.id)])
        self.assertEqual((mail.reply_to_graph_id, mail.reply_thread_id), ("AAMkNew", thread))
        self.assertEqual(mail.with_user(self.user_a).thread_id, thread)
        self.assertEqual(
            self.api.outgoing_mail({"account_id": self.account_a.id})[0]["reply_to_graph_id"],
            "AAMkNew",
        )

    def test_reply_when_the_user_sent_the_newest_message(self):
        conversation = unique("conv-")
        mine = wire_message(
            "AAMkMine2",
            "<mine2@contoso>",
            folder=SENT,
            conversation=conversation,
            subject="Visit",
            sender="a@contoso.example",
            to=("ann@example.com",),
        )
        self.api.store_mail_page(
            {
                "page": wire_page(
                    self.account_a.id, SENT, [wire_stored(mine, {"ann@example.com": self.ann})]
                )
            }
        )
        thread = self.env["m365.mail.thread"].search([("conversation_id", "=", conversation)])
        form = self.compose(default_thread_id=thread.id)
        self.assertEqual(
            (form.reply_to_graph_id, form.email_to),
            ("AAMkMine2", '"Ann Example" <ann@example.com>'),
        )

    def test_to_is_built_from_each_contacts_name_and_address(self):
        """To holds contacts; the outbox's email_to (the daemon's wire) is one formatted address
        per contact, whatever its name holds."""
        self.user_a.groups_id += self.env.ref("base.group_partner_manager")
        tricky = self.partner('Eve "Boss" <x@evil.example>, Bcc:\r\nz@evil.example', "eve@client.example")
        form = self.compose(default_partner_id=self.ann.id)
        form.recipient_ids.add(tricky)
        form.recipient_ids.add(self.typed("Carl Jones <carl@new.example>"))
        form.subject = "Offer"
        form.save().action_send()
        carl = self.env["res.partner"].search([("email", "=", "carl@new.example")])
        self.assertEqual(carl.name, "Carl Jones")
        mail = self.env["m365.outbox"].search([("account_id", "=", self.account_a.id)])
        self.assertEqual(
            mail.email_to,
            '"Ann Example" <ann@example.com>, "Carl Jones" <carl@new.example>, '
            '"Eve Boss x@evil.example Bcc: z@evil.example" <eve@client.example>',
        )
        self.assertNotIn("\r", mail.email_to)
        wire = self.api.outgoing_mail({"account_id": self.account_a.id})[0]
        self.assertEqual(
            [a["address"] for a in wire["to"]],
            ["ann@example.com", "carl@new.example", "eve@client.example"],
        )

    def test_a_reply_to_an_unknown_sender_makes_the_contact(self):
        conversation = unique("conv-")
        msg = wire_message(
            "AAMkStranger",
            "<stranger@example.net>",
            conversation=conversation,
            subject="Hello",
            sender="dora@stranger.example",
            to=("a@contoso.example",),
        )
        msg["sender"]["name"] = 'Dora "D" <spoof@evil.example>'
        self.api.store_mail_page(
            {"page": wire_page(self.account_a.id, INBOX, [wire_stored(msg, {})])}
        )
        thread = self.env["m365.mail.thread"].search([("conversation_id", "=", conversation)])
        # Without the right to create contacts: To stays empty and a note says why.
        form = self.compose(default_thread_id=thread.id)
        self.assertFalse(form.recipient_ids)
        self.assertIn(
            '"Dora D spoof@evil.example" <dora@stranger.example>: not a contact, and you cannot '
            "create contacts",
            form.reply_note,
        )
        self.assertFalse(self.env["res.partner"].search([("email", "=", "dora@stranger.example")]))
        self.user_a.groups_id += self.env.ref("base.group_partner_manager")
        form = self.compose(default_thread_id=thread.id)
        self.assertFalse(form.reply_note)
        dora = form.recipient_ids[:]
        self.assertEqual((dora.name, dora.email), ("Dora D spoof@evil.example", "dora@stranger.example"))
        self.assertEqual(form.email_to, '"Dora D spoof@evil.example" <dora@stranger.example>')


@tagged("post_install", "-at_install")
class TestScheduleWizard(M365Case):
    def setUp(self):
        super().setUp()
        self.user_a.tz = "Europe/Berlin"
        self.account_a = self.env["m365.account"].browse(
            self.account(owner="m365-test-a", address="a@contoso.example")["id"]
        )
        self.ann = self.partner("Ann Example", "ann@example.com")
        self.bob = self.partner("Bob Builder", "bob@example.com")
        self.day = date.today() + timedelta(days=7)

    def schedule(self, user=None, **context):
        user = user or self.user_a
        form = Form(
            self.env["m365.schedule.wizard"]
            .with_user(user)
            .with_context(**{"default_partner_id": self.ann.id, **context})
        )
        return form

    def test_defaults(self):
        form = self.schedule()
        self.assertEqual(form.account_id, self.account_a.with_user(self.user_a))
        self.assertEqual(form.time_zone, "Europe/Berlin")
        self.assertEqual(form.subject, "Meeting with Ann Example")
        self.assertEqual(form.duration, 1.0)
        with self.assertRaisesRegex(RedirectWarning, "Connect Microsoft Account"):
            self.schedule(user=self.user_b)

    def test_choosing_a_day_asks_outlook_and_shows_the_answer(self):
        # The user's own meeting that day, from the synced calendar (09:00-10:00 Berlin).
        nine = berlin(self.day, 9)
        self.env["calendar.event"].create(
            {
                "name": "Standup",
                "start": nine,
                "stop": nine + timedelta(hours=1),
                "user_id": self.user_a.id,
                "partner_ids": [(6, 0, self.user_a.partner_id.ids)],
            }
        )
        form = self.schedule()
        form.date = self.day
        form.attendee_ids.add(self.bob)
        form.start_time = 9.5
        request = form.free_busy_request_id
        self.assertEqual(request.state, "pending")
        self.assertEqual(request.address_list(), ["ann@example.com", "bob@example.com"])
        self.assertEqual((request.day, request.time_zone), (self.day, "Europe/Berlin"))
        html = str(form.availability_html)
        self.assertIn("09:00–10:00 Standup", html)
        self.assertIn("asking Outlook…", html)
        self.assertIn("overlaps busy time of You", form.conflict)

        # The daemon answers.
        [pending] = [p for p in self.api.pending_free_busy({}) if p["id"] == request.id]
        self.assertEqual(pending["day"], self.day.isoformat())
        start = f"{self.day.isoformat()}T12:00:00+00:00"
        end = f"{self.day.isoformat()}T13:00:00+00:00"
        self.api.store_free_busy(
            {
                "request_id": request.id,
                "results": [
                    {
                        "address": "ann@example.com",
                        "slots": [{"start": start, "end": end, "status": "busy"}],
                        "error": None,
                    },
                    {"address": "bob@example.com", "slots": [], "error": None},
                ],
            }
        )
        wizard = form.save()
        wizard.invalidate_recordset()
        html = str(wizard.availability_html)
        self.assertNotIn("asking Outlook…", html)
        # 12:00 UTC is 13:00 or 14:00 in Berlin (winter or summer time).
        self.assertRegex(html, r"1[34]:00–1[45]:00")
        self.assertIn("free all day", html)
        action = wizard.action_refresh()
        self.assertEqual(
            (action["res_model"], action["res_id"]), ("m365.schedule.wizard", wizard.id)
        )
        self.assertEqual(wizard.free_busy_request_id, request)  # a fresh answer is reused

    def test_subject_names_the_person_and_their_company(self):
        globex = self.partner("Globex", None, is_company=True)
        ramirez = self.partner("Ann Ramirez", "ann.ramirez@globex.example")
        ramirez.parent_id = globex
        form = self.schedule(default_partner_id=ramirez.id)
        self.assertEqual(form.subject, "Meeting with Ann Ramirez (Globex)")
        form = self.schedule(default_partner_id=globex.id)
        self.assertEqual(form.subject, "Meeting with Globex")

    def busy(self, name, start, minutes):
        return self.env["calendar.event"].create(
            {
                "name": name,
                "start": start,
                "stop": start + timedelta(minutes=minutes),
                "user_id": self.user_a.id,
                "partner_ids": [(6, 0, self.user_a.partner_id.ids)],
            }
        )

    def test_the_proposed_slot_is_the_users_first_free_one(self):
        # Busy 09:00-10:00, 10:00-11:30 and 12:00-13:00 (Berlin): the first free hour is 13:00,
        # the first free half hour 11:30. A free (show as available) event does not count.
        self.busy("Standup", berlin(self.day, 9), 60)
        self.busy("Review", berlin(self.day, 10), 90)
        self.busy("Lunch", berlin(self.day, 12), 60)
        self.busy("Focus", berlin(self.day, 13), 60).show_as = "free"
        form = self.schedule()
        form.date = self.day
        self.assertEqual(form.start_time, 13.0)
        self.assertFalse(form.conflict)
        form.duration = 0.5
        form.date = self.day - timedelta(days=1)
        self.assertEqual(form.start_time, 9.0)  # a free day: the start of working hours
        form.date = self.day
        self.assertEqual(form.start_time, 11.5)
        # A day busy throughout its working hours keeps the time as it was.
        self.busy("Offsite", berlin(self.day + timedelta(days=1), 8), 11 * 60)
        form.date = self.day + timedelta(days=1)
        self.assertEqual(form.start_time, 11.5)
        self.assertIn("overlaps busy time of You", form.conflict)

    def test_an_external_attendees_unknown_availability_in_words(self):
        form = self.schedule()
        form.date = self.day
        form.start_time = 20.0  # the day's bar runs to 21:00
        request = form.free_busy_request_id
        self.api.store_free_busy(
            {
                "request_id": request.id,
                "results": [
                    {
                        "address": "ann@example.com",
                        "slots": [],
                        "error": "Unable to resolve e-mail address ann@example.com to an Active "
                        "Directory object.",
                    },
                ],
            }
        )
        wizard = form.save()
        wizard.invalidate_recordset()
        html = str(wizard.availability_html)
        self.assertIn("unknown: availability not shared outside your organisation", html)
        self.assertNotIn("Active Directory", html)
        # The name and the address each on their own line, in full; the hour labels at the
        # bar's ends lean inwards.
        self.assertIn('<div class="o_m365_name">Ann Example</div>', html)
        self.assertIn('<div class="o_m365_address">ann@example.com</div>', html)
        self.assertIn('<span class="o_m365_tick o_m365_tick_last" style="left:100.00%">21:00', html)

    def test_confirm_creates_the_event_owned_by_the_account(self):
        mails_before = self.env["mail.mail"].sudo().search_count([])
        form = self.schedule()
        form.subject = "Project kick-off"
        form.date = self.day
        form.start_time = 14.0
        form.duration = 1.5
        form.attendee_ids.add(self.bob)
        form.location = "Room 1"
        form.online_meeting = True
        wizard = form.save()
        action = wizard.action_confirm()
        self.assertIn("Outlook sends the invitations", action["params"]["message"])
        event = self.env["calendar.event"].search([("name", "=", "Project kick-off")])
        self.assertEqual(len(event), 1)
        self.assertEqual(event.partner_ids, self.user_a.partner_id | self.ann | self.bob)
        self.assertEqual(event.user_id, self.user_a)
        self.assertEqual(event.location, "Room 1")
        self.assertAlmostEqual(event.duration, 1.5)
        expected = berlin(self.day, 14)
        self.assertEqual((event.start, event.stop), (expected, expected + timedelta(minutes=90)))
        # The calendar mapping's fields: the account that pushes it, with a Teams meeting.
        if "m365_owner_account_id" in event._fields:
            self.assertEqual(event.m365_owner_account_id, self.account_a)
        if "m365_is_online_meeting" in event._fields:
            self.assertTrue(event.m365_is_online_meeting)
        # No Odoo invitation mail: Outlook invites.
        self.assertEqual(self.env["mail.mail"].sudo().search_count([]), mails_before)

    def test_confirm_refuses_bad_input(self):
        nobody = self.partner("No Mail", None)
        form = self.schedule()
        form.date = self.day
        form.attendee_ids.add(nobody)
        wizard = form.save()
        with self.assertRaisesRegex(UserError, "No Mail has no email address"):
            wizard.action_confirm()
        wizard.attendee_ids = False
        wizard.duration = 0
        with self.assertRaisesRegex(UserError, "duration"):
            wizard.action_confirm()


@tagged("post_install", "-at_install")
class TestComposeTour(HttpCase):
    def test_compose_email_from_the_partner_form(self):
        user = new_test_user(
            self.env, login="m365-compose-tour", groups="base.group_user,base.group_partner_manager"
        )
        daemon = new_test_user(
            self.env,
            login="m365-compose-daemon",
            groups="base.group_user,crm_microsoft365.group_m365_daemon",
        )
        api = self.env["m365.daemon.api"].with_user(daemon)
        account = api.upsert_account({"spec": wire_spec(owner="m365-compose-tour")})
        ann = self.env["res.partner"].create({"name": "Tour Ann", "email": "ann@tour-acme.example"})
        self.start_tour(
            f"/odoo/contacts/{ann.id}", "crm_microsoft365_compose_email", login="m365-compose-tour"
        )
        mail = self.env["m365.outbox"].search([("account_id", "=", account["id"])])
        self.assertEqual(len(mail), 1, "the tour queued one mail")
        self.assertEqual(
            (mail.state, mail.partner_id, mail.subject, mail.email_cc, mail.requested_by),
            ("queued", ann, "Tour offer", "colleague@contoso.example", user.login),
        )
        self.assertEqual(
            mail.email_to, '"Bo Buyer" <bo@tour-acme.example>, "Tour Ann" <ann@tour-acme.example>'
        )  # in the contacts' order
        bo = self.env["res.partner"].search([("email", "=", "bo@tour-acme.example")])
        self.assertEqual(bo.name, "Bo Buyer")  # the new address became a contact
        self.assertIn("Hello Ann, here is our offer.", mail.body_html)
