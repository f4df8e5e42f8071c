"""The calendar endpoints answer in the shape of Microsoft's documented examples.

Same comparison as test_docs_shapes.py: every documented field is in the emulator's answer with
the same JSON type; fields the emulator adds beyond a (shortened) example are listed per test.
The requests replay the documented ones (same bodies, same headers).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Request

from m365sync.emulator import graph_api
from m365sync.emulator.mailbox import Mailbox
from tests.emulator.test_docs_shapes import differences, example, extras

PST = "Pacific Standard Time"
# What every emulator event carries beyond the shortened delta examples (docs `resources/
# event.md` lists all of them; the delta page says "most event properties are returned").
EVENT_EXTRAS = {
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "transactionId",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "iCalUId",
    "reminderMinutesBeforeStart",
    "isReminderOn",
    "hasAttachments",
    "bodyPreview",
    "importance",
    "sensitivity",
    "isAllDay",
    "isCancelled",
    "isOrganizer",
    "responseRequested",
    "seriesMasterId",
    "showAs",
    "type",
    "webLink",
    "onlineMeetingUrl",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "allowNewTimeProposals",
    "isDraft",
    "hideAttendees",
    "responseStatus",
    "location",
    "locations",
    "recurrence",
    "onlineMeeting",
}


@pytest.fixture
def client() -> Client:
    mailbox = Mailbox()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        response = graph_api.handle(
            Request(environ),
            mailbox,
            scopes=frozenset(["Calendars.ReadWrite"]),
            public_base="https://graph.test/v1.0",
        )
        return response(environ, start_response)

    return Client(app)


def relative(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + "?" + parts.query


def lunch(**extra: Any) -> dict[str, Any]:
    body = {
        "subject": "Let's go for lunch",
        "body": {"contentType": "HTML", "content": "Does noon work for you?"},
        "start": {"dateTime": "2017-04-15T12:00:00", "timeZone": PST},
        "end": {"dateTime": "2017-04-15T14:00:00", "timeZone": PST},
        "location": {"displayName": "Harry's Bar"},
        "attendees": [
            {
                "emailAddress": {
                    "address": "samanthab@contoso.onmicrosoft.com",
                    "name": "Samantha Booth",
                },
                "type": "required",
            }
        ],
    }
    body.update(extra)
    return body


def test_create_event_with_transaction_id(client: Client) -> None:
    doc, known = example("event_create_transaction_id.json")
    answer = client.post(
        "/v1.0/me/events",
        json=lunch(
            allowNewTimeProposals=True, transactionId="7E163156-7762-4BEB-A1C6-729EA81755A7"
        ),
        headers={"Prefer": f'outlook.timezone="{PST}"'},
    )
    assert answer.status_code == 201
    got = answer.get_json()
    assert differences(doc, got, known=frozenset(known)) == []
    assert extras(doc, got) == set()
    assert got["transactionId"] == doc["transactionId"]
    assert got["start"]["timeZone"] == PST


def test_create_recurring_event(client: Client) -> None:
    doc, known = example("event_create_recurring.json")
    body = lunch(
        start={"dateTime": "2017-09-04T12:00:00", "timeZone": PST},
        end={"dateTime": "2017-09-04T14:00:00", "timeZone": PST},
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["Monday"]},
            "range": {"type": "endDate", "startDate": "2017-09-04", "endDate": "2017-12-31"},
        },
    )
    answer = client.post("/v1.0/me/events", json=body)
    assert answer.status_code == 201
    got = answer.get_json()
    assert "$.OnlineMeeting" in known and got["onlineMeeting"] is None
    doc.pop("OnlineMeeting")
    assert differences(doc, got, known=frozenset(known)) == []
    assert extras(doc, got) == {
        "transactionId",
        "isOnlineMeeting",
        "onlineMeetingProvider",
        "allowNewTimeProposals",
        "isDraft",
        "hideAttendees",
        "onlineMeeting",
    }
    assert got["recurrence"] == doc["recurrence"]


def test_list_instances(client: Client) -> None:
    doc, known = example("event_list_instances.json")
    master = client.post(
        "/v1.0/me/events",
        json={
            "subject": "Review strategy for Q3",
            "start": {"dateTime": "2019-04-08T20:30:00", "timeZone": "UTC"},
            "end": {"dateTime": "2019-04-08T21:00:00", "timeZone": "UTC"},
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                "range": {"type": "noEnd", "startDate": "2019-04-08"},
            },
        },
    ).get_json()
    select = "$select=subject,bodyPreview,seriesMasterId,type,recurrence,start,end"
    url = (
        f"/v1.0/me/events/{master['id']}/instances?startDateTime=2019-04-08T09:00:00.0000000"
        f"&endDateTime=2019-04-30T09:00:00.0000000&{select}"
    )
    second = client.get(url).get_json()["value"][1]
    client.patch(
        f"/v1.0/me/events/{second['id']}",
        json={
            "body": {"contentType": "text", "content": "Changing meeting from 4/15 to 4/16."},
            "start": {"dateTime": "2019-04-16T20:30:00", "timeZone": "UTC"},
            "end": {"dateTime": "2019-04-16T21:00:00", "timeZone": "UTC"},
        },
    )
    got = client.get(url).get_json()
    assert got["@odata.context"].endswith(
        "/instances(subject,bodyPreview,seriesMasterId,type,recurrence,start,end)"
    )
    assert differences(doc, got, known=frozenset(known)) == []
    assert sorted(i["type"] for i in got["value"]) == sorted(i["type"] for i in doc["value"])
    assert {i["start"]["dateTime"] for i in got["value"]} == {
        i["start"]["dateTime"] for i in doc["value"]
    }
    assert [set(i) for i in got["value"]] == [set(i) for i in doc["value"]]


def test_calendar_view_delta_pages_and_next_round(client: Client) -> None:
    first_doc, first_known = example("calendarview_delta_first_page.json")
    next_doc, next_known = example("calendarview_delta_next_round.json")
    for subject, start, end in (
        ("Plan shopping list", "2016-12-09T20:30:00", "2016-12-09T22:00:00"),
        ("Pick up car", "2016-12-10T01:00:00", "2016-12-10T02:00:00"),
        ("Get food", "2016-12-10T19:30:00", "2016-12-10T21:30:00"),
        ("Prepare food", "2016-12-10T22:00:00", "2016-12-11T00:00:00"),
        ("Rest!", "2016-12-12T02:00:00", "2016-12-12T07:30:00"),
    ):
        client.post(
            "/v1.0/me/events",
            json={
                "subject": subject,
                "start": {"dateTime": start, "timeZone": "UTC"},
                "end": {"dateTime": end, "timeZone": "UTC"},
            },
        )
    prefer = {"Prefer": "odata.maxpagesize=2"}
    url = (
        "/v1.0/me/calendarView/delta?startdatetime=2016-12-01T00:00:00Z"
        "&enddatetime=2016-12-30T00:00:00Z"
    )
    first = client.get(url, headers=prefer).get_json()
    assert differences(first_doc, first, known=frozenset(first_known)) == []
    assert extras(first_doc, first) == set()
    assert extras(first_doc["value"][0], first["value"][0]) == EVENT_EXTRAS
    assert [e["subject"] for e in first["value"]] == ["Plan shopping list", "Pick up car"]
    pages = [first]
    while "@odata.nextLink" in pages[-1]:
        pages.append(client.get(relative(pages[-1]["@odata.nextLink"]), headers=prefer).get_json())
    assert [len(p["value"]) for p in pages] == [2, 2, 1]
    gone = pages[1]["value"][0]["id"]
    client.delete(f"/v1.0/me/events/{gone}")
    client.post(
        "/v1.0/me/events",
        json={
            "subject": "Attend service",
            "start": {"dateTime": "2016-12-25T06:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2016-12-25T07:30:00", "timeZone": "UTC"},
            "location": {
                "displayName": "Chapel of Saint Ignatius",
                "address": {
                    "street": "900 Broadway",
                    "city": "Seattle",
                    "state": "WA",
                    "countryOrRegion": "United States",
                    "postalCode": "",
                },
                "coordinates": {"latitude": 47.6105, "longitude": -122.321},
            },
        },
    )
    following = client.get(relative(pages[-1]["@odata.deltaLink"]), headers=prefer).get_json()
    assert differences(next_doc, following, known=frozenset(next_known)) == []
    assert extras(next_doc, following) == set()
    assert following["value"][0] == {
        "@odata.type": "#microsoft.graph.event",
        "id": gone,
        "@removed": {"reason": "deleted"},
    }
    assert following["value"][1]["subject"] == "Attend service"
