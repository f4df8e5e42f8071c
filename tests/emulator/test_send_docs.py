"""Composing, sending and getSchedule answer in the shape of Microsoft's documented examples.

Same comparison as test_docs_shapes.py: every documented field is in the emulator's answer with
the same JSON type; fields the emulator adds beyond a (shortened) example are listed per test.
Each request replays the documented one (``_request`` in the example file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Request

from m365sync.emulator import graph_api
from m365sync.emulator.mailbox import Mailbox
from tests.emulator.test_docs_shapes import EXAMPLES, differences, example, extras

SCOPES = frozenset(["User.Read", "Mail.ReadWrite", "Mail.Send", "Calendars.ReadWrite"])
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}
PST = "Pacific Standard Time"


def request_of(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))["_request"]


def status_of(name: str) -> int:
    return int(json.loads(Path(EXAMPLES / name).read_text(encoding="utf-8"))["_status"])


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def client(mailbox: Mailbox) -> Client:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        response = graph_api.handle(
            Request(environ), mailbox, scopes=SCOPES, public_base="https://graph.test/v1.0"
        )
        return response(environ, start_response)

    return Client(app)


def test_create_draft(client: Client) -> None:
    doc, known = example("message_create_draft.json")
    answer = client.post(
        "/v1.0/me/messages", json=request_of("message_create_draft.json"), headers=IMMUTABLE
    )
    assert answer.status_code == 201
    assert answer.headers["Preference-Applied"] == 'IdType="ImmutableId"'
    got = answer.json
    assert differences(doc, got, known=frozenset(known)) == []
    assert extras(doc, got) == {"flag"}  # example 2 of the same page shows it
    assert got["body"] == doc["body"]  # the same HTML frame around the given content
    assert got["importance"] == "low" and got["isDraft"] is True and got["isRead"] is True
    assert "from" not in got and "sender" not in got  # filled when it is sent


def test_create_draft_with_custom_headers(client: Client) -> None:
    doc, known = example("message_create_draft_headers.json")
    got = client.post(
        "/v1.0/me/messages", json=request_of("message_create_draft_headers.json")
    ).json
    assert differences(doc, got, known=frozenset(known)) == []
    assert extras(doc, got) == {"conversationIndex"}
    assert "internetMessageHeaders" not in got  # "not returned by default in a POST response"
    selected = client.get(f"/v1.0/me/messages/{got['id']}?$select=internetMessageHeaders").json
    assert (
        selected["internetMessageHeaders"]
        == request_of("message_create_draft_headers.json")["internetMessageHeaders"]
    )


def test_add_file_attachment(client: Client) -> None:
    doc, known = example("message_add_file_attachment.json")
    draft = client.post("/v1.0/me/messages", json={"subject": "smile"}).json
    answer = client.post(
        f"/v1.0/me/messages/{draft['id']}/attachments",
        json=request_of("message_add_file_attachment.json"),
    )
    assert answer.status_code == 201
    got = answer.json
    assert differences(doc, got, known=frozenset(known)) == []
    assert extras(doc, got) == {"@odata.context", "@odata.type", "@odata.mediaContentType"}
    assert got["contentType"] == "image/gif"  # as documented: sniffed from the GIF bytes
    listed = client.get(f"/v1.0/me/messages/{draft['id']}/attachments?$select=name,size").json
    assert [(a["id"], a["name"]) for a in listed["value"]] == [(got["id"], "smile")]


def test_send_answers_202_without_a_body(client: Client, mailbox: Mailbox) -> None:
    example("message_send.json")
    draft = client.post(
        "/v1.0/me/messages",
        json=request_of("message_create_draft.json"),
        headers=IMMUTABLE,
    ).json
    answer = client.post(f"/v1.0/me/messages/{draft['id']}/send", headers=IMMUTABLE)
    assert answer.status_code == status_of("message_send.json")
    assert answer.get_data() == b""
    assert mailbox.message_ids_in("sentitems") == [draft["id"]]


def test_sendmail_answers_202_without_a_body(client: Client, mailbox: Mailbox) -> None:
    example("user_sendmail.json")
    answer = client.post("/v1.0/me/sendMail", json=request_of("user_sendmail.json"))
    assert answer.status_code == status_of("user_sendmail.json")
    assert answer.get_data() == b""
    assert mailbox.message_ids_in("sentitems") == []  # saveToSentItems "false"
    (sent,) = mailbox.sent()
    assert sent["recipients"] == ["frannis@contoso.com", "danas@contoso.com"]
    assert sent["id"] is None and sent["savedToSentItems"] is False


def test_create_reply(client: Client, mailbox: Mailbox) -> None:
    doc, known = example("message_create_reply.json")
    alex = {"emailAddress": {"name": "Alex Wilber", "address": "AlexW@contoso.com"}}
    original = mailbox.add_message(
        "inbox",
        {
            "subject": "Internal Resume Submission: Sales Associate",
            "from": alex,
            "toRecipients": [mailbox.owner_recipient()],
            "body": {"contentType": "text", "content": "Hi, Megan. Regards, Alex"},
        },
    )
    answer = client.post(f"/v1.0/me/messages/{original['id']}/createReply", headers=IMMUTABLE)
    assert answer.status_code == 201  # the page's Response section; example 1 says 200
    got = answer.json
    assert differences(doc, got, known=frozenset(known)) == [
        "$.sender: missing",
        "$.from: missing",
    ]  # the documented draft came from MIME with a From header; JSON drafts get them on send
    assert known == {"$.isDeliveryReceiptRequested"}
    assert extras(doc, got) == set()
    assert got["subject"] == "RE: Internal Resume Submission: Sales Associate"
    assert got["conversationId"] == original["conversationId"]
    assert got["toRecipients"] == [alex]


def test_get_schedule(client: Client, mailbox: Mailbox) -> None:
    doc, known = example("calendar_getschedule.json")
    requested = request_of("calendar_getschedule.json")
    adele, megan = requested["schedules"]
    mailbox.user["mail"] = megan  # the second schedule is the mailbox owner's own calendar
    pst_hours = {**mailbox.working_hours, "timeZone": {"name": PST}}
    mailbox.working_hours = pst_hours
    mailbox.free_busy[adele] = [
        {
            "isPrivate": False,
            "status": "busy",
            "subject": "Let's go for lunch",
            "location": "Harry's Bar",
            "start": {"dateTime": "2019-03-15T12:00:00", "timeZone": PST},
            "end": {"dateTime": "2019-03-15T14:00:00", "timeZone": PST},
        }
    ]
    for start, end, show_as in [
        ("08:30", "09:30", "busy"),
        ("12:00", "14:00", "busy"),
        ("12:00", "13:00", "tentative"),
        ("13:00", "14:00", "busy"),
        ("16:00", "17:00", "tentative"),
        ("17:00", "18:00", "free"),  # free time is no schedule item
    ]:
        mailbox.calendar.create(
            {
                "subject": "Busy",
                "showAs": show_as,
                "start": {"dateTime": f"2019-03-15T{start}:00", "timeZone": PST},
                "end": {"dateTime": f"2019-03-15T{end}:00", "timeZone": PST},
            }
        )
    answer = client.post(
        "/v1.0/me/calendar/getSchedule",
        json=requested,
        headers={"Prefer": f'outlook.timezone="{PST}"'},
    )
    assert answer.status_code == 200
    assert answer.headers["Preference-Applied"] == f'outlook.timezone="{PST}"'
    got = answer.json
    # Each item is compared with the documented one it resembles most: Megan's documented
    # working hours are in a custom zone, hers here are named like Adele's.
    assert differences(doc, got, known=frozenset(known)) == []
    assert [s["availabilityView"] for s in got["value"]] == ["000220000", "200220010"]

    def spans(schedule: dict[str, Any]) -> list[tuple[str, str, str]]:
        items = schedule["scheduleItems"]
        return sorted((i["status"], i["start"]["dateTime"], i["end"]["dateTime"]) for i in items)

    assert spans(got["value"][1]) == spans(doc["value"][1])
    assert got["value"][0]["scheduleItems"] == doc["value"][0]["scheduleItems"]
    assert extras(doc["value"][1]["scheduleItems"][0], got["value"][1]["scheduleItems"][0]) == {
        "isPrivate",
        "subject",
        "location",
    }


def test_get_schedule_of_an_unknown_address(client: Client) -> None:
    doc, known = example("getschedule_unresolved.json")
    start = {"dateTime": "2019-03-15T09:00:00", "timeZone": "UTC"}
    end = {"dateTime": "2019-03-15T18:00:00", "timeZone": "UTC"}
    got = client.post(
        "/v1.0/me/calendar/getSchedule",
        json={"schedules": ["user@example.com"], "startTime": start, "endTime": end},
    ).json
    assert differences(doc, got, known=frozenset(known)) == []
    assert got["value"] == doc["value"]
