"""The calendar both ways and Compose Email, from Odoo through the daemon to the emulator.

The CRM side is what a person does in Odoo, over plain XML-RPC on Odoo's own models: a
meeting is a ``calendar.event`` created (or edited) by a salesperson, a mail is an
``m365.outbox`` row created by an ordinary user who owns the account. What the daemon made of
it is read back the same way, and in the emulator's Outlook (its calendar, what was written
to it, its Sent Items). Skipped when the addon on the server has no calendar or outbox yet.
"""

from __future__ import annotations

import base64
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from m365sync.crm.odoo import XmlRpcTransport
from m365sync.emulator.mailbox import Mailbox
from m365sync.graph.calendar import CalendarWriter
from m365sync.service.account_sync import sync_account_mail
from m365sync.service.calendar_cycle import CalendarCycle
from m365sync.service.connect import connect_account

from .conftest import OdooStack, odoo_stack_for

pytestmark = [pytest.mark.odoo, pytest.mark.slow]

NOW = datetime.now(UTC).replace(microsecond=0)


def odoo_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def from_odoo(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def token() -> str:
    return secrets.token_hex(4)


@pytest.fixture
def cal_stack(tmp_path: Path):
    """A small mailbox with an empty calendar, the calendar on, an Odoo with its calendar."""
    mailbox = Mailbox.seeded(size=20, seed=secrets.randbelow(10**9))
    for item in mailbox.calendar.events():
        mailbox.calendar.delete(item["id"])
    with odoo_stack_for(tmp_path, mailbox, calendar=True) as stack:
        yield stack


@pytest.fixture
def mail_stack(tmp_path: Path):
    mailbox = Mailbox.seeded(size=20, seed=secrets.randbelow(10**9))
    with odoo_stack_for(tmp_path, mailbox) as stack:
        yield stack


def connect(stack: OdooStack):
    account = connect_account(stack.runtime, browser="follow", announce=lambda _text: None)
    stack.account_ids.append(account.id)
    return account


def our_transaction(stack: OdooStack, event_id: int) -> str:
    """What the daemon's create of this Odoo event carries: the database's tag (issue #17)."""
    tag = stack.gateway.crm_settings().crm_tag
    assert len(tag) == 8 and int(tag, 16) >= 0  # the addon's: from database.uuid
    return f"m365sync-{tag}-crm-event-{event_id}"


def sync(stack: OdooStack, account_id: int):
    run = sync_account_mail(stack.runtime, stack.gateway.get_account(account_id))
    assert run.error is None, run.error
    return run


def contact(stack: OdooStack, name: str) -> tuple[int, str]:
    """A contact a person adds in Odoo, with an address no other run uses."""
    address = f"{name.split()[0].lower()}.{token()}@fabrikam.example"
    partner_id = stack.admin.execute_kw("res.partner", "create", [{"name": name, "email": address}])
    return partner_id, address


def writes(stack: OdooStack, *methods: str) -> list[dict[str, Any]]:
    return [w for w in stack.mailbox.calendar.written() if w["method"] in methods]


def outlook_events(stack: OdooStack, subject: str) -> list[dict[str, Any]]:
    return [e for e in stack.mailbox.calendar.events() if e.get("subject") == subject]


# --- Odoo -> Outlook ------------------------------------------------------------------------------


def odoo_meeting(
    stack: OdooStack, account_id: int, partner: int, subject: str, start: datetime, daily: int = 0
) -> int:
    """An hour's meeting a salesperson saves in Odoo for the account, with one contact; with
    ``daily``, a daily series of that many occurrences (Odoo's recurrence fields, in UTC)."""
    values: dict[str, Any] = {
        "name": subject,
        "start": odoo_datetime(start),
        "stop": odoo_datetime(start + timedelta(hours=1)),
        "partner_ids": [(6, 0, [partner])],
        "m365_owner_account_id": account_id,
    }
    if daily:
        values.update(
            recurrency=True,
            rrule_type="daily",
            interval=1,
            end_type="count",
            count=daily,
            event_tz="UTC",
        )
    event_id = stack.admin.execute_kw("calendar.event", "create", [values])
    stack.event_ids.append(event_id)
    return event_id


def test_an_event_created_in_odoo_reaches_outlook_once_and_comes_back_without_echo(cal_stack):
    stack = cal_stack
    anna, anna_address = contact(stack, "Anna Lidman")
    account = connect(stack)
    subject = f"Demo call {token()}"
    start = (NOW + timedelta(days=5)).replace(minute=0, second=0)
    event_id = odoo_meeting(stack, account.id, anna, subject, start)

    first = sync(stack, account.id)
    (post,) = writes(stack, "POST")
    assert post["body"]["transactionId"] == our_transaction(stack, event_id)
    (in_outlook,) = outlook_events(stack, subject)
    invited = {a["emailAddress"]["address"].lower() for a in in_outlook.get("attendees", [])}
    assert anna_address in invited
    assert first.calendar.get("pushed", 0) >= 1

    def odoo_side():
        events = stack.read(
            "calendar.event", [("name", "=", subject)], ["m365_version"], archived=True
        )
        bindings = stack.read(
            "m365.event.binding",
            [("event_id", "=", event_id)],
            ["account_id", "graph_id", "pushed_version", "change_key"],
        )
        return events, bindings

    events, bindings = odoo_side()
    assert [e["id"] for e in events] == [event_id]
    (binding,) = bindings
    assert binding["account_id"][0] == account.id and binding["graph_id"] == in_outlook["id"]
    assert binding["pushed_version"] == events[0]["m365_version"]

    # The next cycles read our own event back from Outlook: nothing is stored again, nothing
    # is pushed again, and the event is still one event on each side.
    sync(stack, account.id)
    sync(stack, account.id)
    assert len(writes(stack, "POST", "PATCH", "DELETE")) == 1
    assert len(outlook_events(stack, subject)) == 1
    assert odoo_side() == (events, bindings)

    # An edit in Odoo goes out once, as an update of the same Outlook event.
    stack.admin.execute_kw("calendar.event", "write", [[event_id], {"name": f"{subject} (moved)"}])
    sync(stack, account.id)
    sync(stack, account.id)
    (patch,) = writes(stack, "PATCH")
    assert patch["body"]["subject"] == f"{subject} (moved)"
    assert [e["id"] for e in outlook_events(stack, f"{subject} (moved)")] == [in_outlook["id"]]


def test_a_series_made_in_odoo_and_deleted_in_outlook_before_it_came_back_leaves_odoo(
    cal_stack, monkeypatch
):
    """A daily series made in Odoo reaches Outlook (its hidden master bound), and a person
    deletes it in Outlook before the daemon's pull has listed its occurrences: calendarView
    delta never names a master, and Odoo's own occurrences are bound only when Outlook's come
    back, so nothing named the series again. Its master is asked about until its occurrences
    are bound: the deletion leaves Odoo with every occurrence (reliability soak, seed
    138410683)."""
    stack = cal_stack
    anna, _address = contact(stack, "Anna Lidman")
    account = connect(stack)
    sync(stack, account.id)  # the first round is done: the next ones follow the delta link
    subject = f"Daily stand-up {token()}"
    start = (NOW + timedelta(days=4)).replace(minute=0, second=0)
    odoo_meeting(stack, account.id, anna, subject, start, daily=3)
    pull = CalendarCycle.pull

    def deleted_in_outlook_first(cycle, *args, **kwargs):
        # The person deletes the series between the daemon's create and its pull.
        for item in outlook_events(stack, subject):
            if item.get("type") == "seriesMaster":
                stack.mailbox.calendar.delete(item["id"])
        return pull(cycle, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(CalendarCycle, "pull", deleted_in_outlook_first)
        sync(stack, account.id)

    def ours():
        """The calendar's writes (the mail's own POSTs left out)."""
        calendar = writes(stack, "POST", "PATCH", "DELETE")
        return [w for w in calendar if w["method"] != "POST" or w["body"].get("subject") == subject]

    (post,) = ours()
    assert post["method"] == "POST"
    assert post["body"]["recurrence"]["range"]["numberOfOccurrences"] == 3
    assert outlook_events(stack, subject) == []

    def in_odoo():
        return stack.read("calendar.event", [("name", "=", subject)], ["start"], archived=True)

    # The series' three occurrences and its hidden master left Odoo in that cycle's pull, and
    # nothing of it is pushed again (Outlook's deletion is not undone).
    assert in_odoo() == []
    sync(stack, account.id)
    assert in_odoo() == []
    assert ours() == [post]
    assert outlook_events(stack, subject) == []


def synced_then_a_new_meeting(stack: OdooStack) -> tuple[Any, str, int]:
    """A connected account synced once, then a new Odoo meeting with Anna in five days:
    (the account, the meeting's subject, its id)."""
    anna, _address = contact(stack, "Anna Lidman")
    account = connect(stack)
    sync(stack, account.id)
    subject = f"Demo call {token()}"
    start = (NOW + timedelta(days=5)).replace(minute=0, second=0)
    return account, subject, odoo_meeting(stack, account.id, anna, subject, start)


def in_odoo(stack: OdooStack, subject: str) -> list[dict[str, Any]]:
    """The Odoo events of that subject, archived ones included."""
    return stack.read("calendar.event", [("name", "=", subject)], ["start"], archived=True)


def test_a_meeting_deleted_in_odoo_while_its_create_goes_to_outlook_stays_deleted(
    cal_stack, monkeypatch
):
    """A salesperson deletes a meeting while the daemon's create of it is in flight (Graph
    slow to answer, retrying a 503). Odoo removes an event Outlook does not hold yet outright,
    so the create's outcome finds nothing to record: the copy Outlook made is deleted at once,
    and no later pull brings it back as a new meeting on both sides (reliability soak against
    Odoo, seed 904967430)."""
    stack = cal_stack
    account, subject, event_id = synced_then_a_new_meeting(stack)
    create = CalendarWriter.create

    def deleted_in_odoo_meanwhile(writer, *args, **kwargs):
        made = create(writer, *args, **kwargs)
        stack.admin.execute_kw("calendar.event", "unlink", [[event_id]])
        return made

    with monkeypatch.context() as patch:
        patch.setattr(CalendarWriter, "create", deleted_in_odoo_meanwhile)
        sync(stack, account.id)

    (post,) = [w for w in writes(stack, "POST") if w["body"].get("subject") == subject]
    assert post["body"]["transactionId"] == our_transaction(stack, event_id)
    assert outlook_events(stack, subject) == []

    assert in_odoo(stack, subject) == []
    sync(stack, account.id)
    sync(stack, account.id)
    assert in_odoo(stack, subject) == []
    assert outlook_events(stack, subject) == []
    assert [w for w in writes(stack, "POST") if w["body"].get("subject") == subject] == [post]


class Killed(BaseException):
    """SIGKILL at that point: nothing after it runs (not an error any handler catches)."""


def test_a_meeting_deleted_in_odoo_after_the_daemon_died_before_recording_its_create_stays_deleted(
    cal_stack, monkeypatch
):
    """Issue #17: the daemon is killed after Graph answered its create and before Odoo stored
    the binding; a salesperson then deletes the meeting, which Odoo removes outright (Outlook
    holds no copy it knows of). On restart nothing remembers the create: the pull finds the
    organizer's copy carrying this database's tag for an id Odoo gave and no longer holds, and
    deletes it from Outlook instead of bringing the meeting back on both sides."""
    stack = cal_stack
    account, subject, event_id = synced_then_a_new_meeting(stack)
    gateway = type(stack.gateway)

    def killed(*args, **kwargs):
        raise Killed("SIGKILL before mark_event_pushed")

    with monkeypatch.context() as patch:
        patch.setattr(gateway, "mark_event_pushed", killed)
        with pytest.raises(Killed):
            sync_account_mail(stack.runtime, stack.gateway.get_account(account.id))
    (made,) = outlook_events(stack, subject)
    assert made["transactionId"] == our_transaction(stack, event_id)
    stack.admin.execute_kw("calendar.event", "unlink", [[event_id]])

    run = sync(stack, account.id)
    assert run.calendar.get("deleted_in_outlook") == 1
    assert outlook_events(stack, subject) == []
    assert in_odoo(stack, subject) == []
    sync(stack, account.id)
    assert in_odoo(stack, subject) == [] and outlook_events(stack, subject) == []


def test_an_occurrence_of_an_odoo_series_cancelled_in_outlook_before_it_came_back_leaves_odoo(
    cal_stack, monkeypatch
):
    """A daily series made in Odoo reaches Outlook, and a person cancels its second occurrence
    in Outlook before the daemon's pull has listed the occurrences: Odoo's own occurrence in
    that slot is bound by nothing (calendarView delta reports only the removal of an id Odoo
    never had), so it stayed in Odoo for good. After the round the daemon asks Outlook for the
    instances of the series whose Odoo occurrences no mailbox holds: the cancelled one leaves
    Odoo, the others are bound, and nothing goes back to Outlook (reliability soak, seed
    61480911)."""
    stack = cal_stack
    anna, _address = contact(stack, "Anna Lidman")
    account = connect(stack)
    sync(stack, account.id)  # the first round is done: the next ones follow the delta link
    subject = f"Daily stand-up {token()}"
    start = (NOW + timedelta(days=4)).replace(minute=0, second=0)
    odoo_meeting(stack, account.id, anna, subject, start, daily=3)
    pull = CalendarCycle.pull
    second = start + timedelta(days=1)

    def cancelled_in_outlook_first(cycle, *args, **kwargs):
        # The person cancels the second occurrence between the daemon's create and its pull.
        calendar = stack.mailbox.calendar
        for item in outlook_events(stack, subject):
            if item.get("type") == "seriesMaster":
                for instance in calendar.instances(item["id"], start, start + timedelta(days=3)):
                    if instance["start"]["dateTime"].startswith(f"{second:%Y-%m-%dT%H:%M}"):
                        calendar.delete(instance["id"])
        return pull(cycle, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(CalendarCycle, "pull", cancelled_in_outlook_first)
        run = sync(stack, account.id)

    def ours():
        calendar = writes(stack, "POST", "PATCH", "DELETE")
        return [w for w in calendar if w["method"] != "POST" or w["body"].get("subject") == subject]

    def in_odoo():
        rows = stack.read(
            "calendar.event",
            [("name", "=", subject), ("m365_is_series_master", "=", False)],
            ["start", "m365_binding_ids"],
        )
        return sorted((from_odoo(r["start"]), bool(r["m365_binding_ids"])) for r in rows)

    (post,) = ours()
    assert post["body"]["recurrence"]["range"]["numberOfOccurrences"] == 3
    (master,) = outlook_events(stack, subject)
    left = stack.mailbox.calendar.instances(master["id"], start, start + timedelta(days=3))
    assert sorted(i["start"]["dateTime"][:16] for i in left) == [
        f"{start:%Y-%m-%dT%H:%M}",
        f"{start + timedelta(days=2):%Y-%m-%dT%H:%M}",
    ]
    # The cancelled occurrence left Odoo in that cycle; the other two are bound.
    assert in_odoo() == [(start, True), (start + timedelta(days=2), True)]
    assert run.calendar.get("removed", 0) >= 1
    sync(stack, account.id)
    assert in_odoo() == [(start, True), (start + timedelta(days=2), True)]
    assert ours() == [post]  # Outlook's cancellation is not undone, nothing else was written


# --- Outlook -> Odoo ------------------------------------------------------------------------------


def test_an_outlook_series_reaches_odoo_with_its_recurrence(cal_stack):
    stack = cal_stack
    anna, anna_address = contact(stack, "Anna Lidman")
    account = connect(stack)
    paris = ZoneInfo("Europe/Paris")
    first = (
        (NOW + timedelta(days=3)).astimezone(paris).replace(hour=9, minute=0, second=0, tzinfo=None)
    )
    while first.weekday() != 0:
        first += timedelta(days=1)
    subject = f"Weekly sync {token()}"
    wall = "%Y-%m-%dT%H:%M:%S.0000000"
    master, _ = stack.mailbox.calendar.create(
        {
            "subject": subject,
            "start": {"dateTime": first.strftime(wall), "timeZone": "Romance Standard Time"},
            "end": {
                "dateTime": (first + timedelta(hours=1)).strftime(wall),
                "timeZone": "Romance Standard Time",
            },
            "attendees": [
                {"emailAddress": {"address": anna_address, "name": "Anna"}, "type": "required"}
            ],
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                "range": {
                    "type": "numbered",
                    "startDate": first.date().isoformat(),
                    "numberOfOccurrences": 4,
                },
            },
        }
    )
    sync(stack, account.id)

    masters = stack.read(
        "calendar.event",
        [("m365_is_series_master", "=", True), ("m365_binding_ids.account_id", "=", account.id)],
        ["name", "recurrence_id", "m365_recurrence_note", "m365_graph_recurrence"],
        archived=True,
    )
    assert [m["name"] for m in masters] == [subject]
    (series,) = masters
    assert not series["m365_recurrence_note"]
    assert series["recurrence_id"], "a weekly series Odoo can express gets its recurrence"
    (rule,) = stack.read(
        "calendar.recurrence",
        [("id", "=", series["recurrence_id"][0])],
        ["rrule_type", "interval", "mon", "tue", "end_type", "count", "event_tz"],
    )
    assert (rule["rrule_type"], rule["interval"], rule["mon"], rule["tue"]) == (
        "weekly",
        1,
        True,
        False,
    )
    assert (rule["end_type"], rule["count"]) == ("count", 4)
    assert rule["event_tz"] == "Europe/Paris"

    def occurrences():
        rows = stack.read(
            "calendar.event",
            [("m365_series_master_id", "=", series["id"])],
            ["start", "partner_ids", "m365_version"],
            archived=True,
        )
        return sorted(rows, key=lambda r: r["start"])

    found = occurrences()
    assert len(found) == 4
    assert all(anna in row["partner_ids"] for row in found)
    assert {from_odoo(row["start"]).astimezone(paris).hour for row in found} == {9}
    upcoming = stack.gateway.upcoming_events_for_partner(anna, since=NOW, limit=50)
    assert len(upcoming) == 4 and all(u.recurring for u in upcoming)

    # Coming back again changes nothing, and nothing inbound is ever pushed to Outlook.
    sync(stack, account.id)
    assert occurrences() == found
    assert writes(stack, "POST", "PATCH", "DELETE") == []
    assert master["id"] in {e["id"] for e in stack.mailbox.calendar.events()}


# --- Compose Email ----------------------------------------------------------------------------


def odoo_user(stack: OdooStack) -> tuple[int, str, str]:
    """An ordinary salesperson: internal user and Microsoft 365 user, with a password."""
    login = f"m365-e2e-{token()}"
    password = secrets.token_urlsafe(18)
    groups = [
        stack.admin.execute_kw(
            "ir.model.data",
            "search_read",
            [[("module", "=", module), ("name", "=", name)]],
            {"fields": ["res_id"]},
        )[0]["res_id"]
        for module, name in (("base", "group_user"), ("crm_microsoft365", "group_m365_user"))
    ]
    user_id = stack.admin.execute_kw(
        "res.users",
        "create",
        [
            {
                "name": f"Sales {login}",
                "login": login,
                "password": password,
                "groups_id": [(6, 0, groups)],
            }
        ],
    )
    stack.user_ids.append(user_id)
    return user_id, login, password


def test_compose_email_from_a_users_outbox_row_is_sent_once_and_linked(mail_stack):
    stack = mail_stack
    anna, anna_address = contact(stack, "Anna Lidman")
    account = connect(stack)
    user_id, login, password = odoo_user(stack)
    stack.admin.execute_kw("m365.account", "write", [[account.id], {"user_id": user_id}])
    user = XmlRpcTransport(os.environ["ODOO_URL"], os.environ["ODOO_DB"], login, password)
    subject = f"Our offer {token()}"
    content = b"%PDF-1.7 offer " + secrets.token_bytes(64)
    try:
        attachment = user.execute_kw(
            "ir.attachment",
            "create",
            [
                {
                    "name": "offer.pdf",
                    "datas": base64.b64encode(content).decode("ascii"),
                    "mimetype": "application/pdf",
                }
            ],
        )
        mail_id = user.execute_kw(
            "m365.outbox",
            "create",
            [
                {
                    "account_id": account.id,
                    "partner_id": anna,
                    "email_to": f"Anna Lidman <{anna_address}>",
                    "subject": subject,
                    "body_html": "<p>Please find our offer.</p>",
                    "attachment_ids": [(6, 0, [attachment])],
                }
            ],
        )
    finally:
        user.close()

    sync(stack, account.id)
    sent = [m for m in stack.mailbox.sent() if m["subject"] == subject]
    assert len(sent) == 1 and sent[0]["kind"] == "sendMail"
    (attached,) = sent[0]["attachments"]
    assert (attached["name"], attached["contentType"]) == ("offer.pdf", "application/pdf")
    assert attached["size"] == len(content)  # the bytes crossed Odoo -> daemon -> Graph whole
    fields = ["state", "error", "graph_id", "internet_message_id", "sent_message_id", "attempts"]
    (row,) = stack.read("m365.outbox", [("id", "=", mail_id)], fields)
    assert row["state"] == "sent" and not row["error"] and row["attempts"] == 1
    assert row["graph_id"] and row["internet_message_id"]
    links = stack.read(
        "m365.mail.message.link",
        [("account_id", "=", account.id), ("graph_id", "=", row["graph_id"])],
        ["message_id"],
    )
    assert len(links) == 1, "the Sent Items copy is stored once"
    assert row["sent_message_id"] and row["sent_message_id"][0] == links[0]["message_id"][0]

    sync(stack, account.id)
    assert len([m for m in stack.mailbox.sent() if m["subject"] == subject]) == 1
    (again,) = stack.read("m365.outbox", [("id", "=", mail_id)], fields)
    assert again == row


# --- Schedule Meeting's free/busy ---------------------------------------------------------------


def test_schedule_meetings_free_busy_question_is_answered_from_outlook(mail_stack):
    from m365sync.service.free_busy import answer_free_busy

    stack = mail_stack
    account = connect(stack)
    own = stack.mailbox.user["mail"].lower()
    stranger = f"nobody.{token()}@elsewhere.example"
    day = (NOW + timedelta(days=2)).date()
    user_id, login, password = odoo_user(stack)
    stack.admin.execute_kw("m365.account", "write", [[account.id], {"user_id": user_id}])
    user = XmlRpcTransport(os.environ["ODOO_URL"], os.environ["ODOO_DB"], login, password)
    try:  # what the scheduling form records when its user picks a day
        request_id = user.execute_kw(
            "m365.free.busy.request",
            "create",
            [
                {
                    "account_id": account.id,
                    "day": day.isoformat(),
                    "time_zone": "Europe/Paris",
                    "addresses": "\n".join(sorted([own, stranger])),
                }
            ],
        )
    finally:
        user.close()
    mine = stack.gateway.pending_free_busy
    stack.gateway.pending_free_busy = lambda: [r for r in mine() if r.id == request_id]
    try:
        assert answer_free_busy(stack.runtime) == 1
    finally:
        del stack.gateway.pending_free_busy
    asked = [r for r in stack.emulator.requests if r.path.endswith("/calendar/getSchedule")]
    assert len(asked) == 1
    (request,) = stack.read("m365.free.busy.request", [("id", "=", request_id)], ["state", "error"])
    assert request["state"] == "done" and not request["error"]
    rows = stack.read(
        "m365.free.busy", [("request_id", "=", request_id)], ["address", "status", "error"]
    )
    by_address: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_address.setdefault(row["address"], []).append(row)
    assert set(by_address) == {own, stranger}
    assert not any(row["error"] for row in by_address[own])
    assert all(row["error"] for row in by_address[stranger])  # unknown, never free
