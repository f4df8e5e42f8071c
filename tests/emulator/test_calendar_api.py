"""Calendar endpoints of the Graph emulator: events, series, occurrences, calendarView delta.

Most tests go through werkzeug's test Client straight into `graph_api.handle`; the last ones
go over real HTTPS through the `emulator` fixture.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.test import Client, TestResponse
from werkzeug.wrappers import Request

from m365sync.emulator import graph_api
from m365sync.emulator.mailbox import Mailbox
from m365sync.emulator.server import Emulator, EmulatorSession

WINDOW = "startDateTime=2027-01-01T00:00:00Z&endDateTime=2027-12-31T00:00:00Z"
DELTA = "/v1.0/me/calendarView/delta?" + WINDOW
PST = "Pacific Standard Time"


def client_for(mailbox: Mailbox, *scopes: str) -> Client:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        response = graph_api.handle(
            Request(environ),
            mailbox,
            scopes=frozenset(scopes),
            public_base="https://graph.test/v1.0",
        )
        return response(environ, start_response)

    return Client(app)


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def client(mailbox: Mailbox) -> Client:
    return client_for(mailbox, "Calendars.ReadWrite")


def event(subject: str, start: str, minutes: int = 30, zone: str = "UTC", **extra: Any) -> dict:
    begin = datetime.fromisoformat(start)
    return {
        "subject": subject,
        "start": {"dateTime": start, "timeZone": zone},
        "end": {"dateTime": (begin + timedelta(minutes=minutes)).isoformat(), "timeZone": zone},
        **extra,
    }


def weekly(start: str, days: list[str], count: int, zone: str = PST) -> dict:
    return event(
        "Weekly sync",
        start,
        zone=zone,
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": days},
            "range": {"type": "numbered", "startDate": start[:10], "numberOfOccurrences": count},
        },
        attendees=[{"emailAddress": {"address": "kevin.cook@fabrikam.com"}}],
    )


def post(client: Client, body: dict, **headers: str) -> TestResponse:
    return client.post("/v1.0/me/events", json=body, headers=headers)


def drain(client: Client, url: str, prefer: str = "odata.maxpagesize=3") -> tuple[list, str]:
    """Follow a delta round to its end: (every item, the delta link path)."""
    items: list[dict] = []
    while True:
        answer = client.get(url, headers={"Prefer": prefer})
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        items += body["value"]
        if "@odata.deltaLink" in body:
            return items, _relative(body["@odata.deltaLink"])
        url = _relative(body["@odata.nextLink"])


def _relative(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + "?" + parts.query


# --------------------------------------------------------------------------- events


def test_create_get_update_delete_single_event(client: Client, mailbox: Mailbox) -> None:
    created = post(
        client,
        event(
            "Lunch",
            "2027-04-15T12:00:00",
            120,
            PST,
            location={"displayName": "Harry's Bar"},
            attendees=[{"emailAddress": {"address": "samanthab@contoso.com"}, "type": "Required"}],
        ),
        Prefer='outlook.timezone="Pacific Standard Time"',
    )
    assert created.status_code == 201
    assert created.headers["Preference-Applied"] == 'outlook.timezone="Pacific Standard Time"'
    body = created.get_json()
    assert body["@odata.context"].endswith("/events/$entity")
    assert body["type"] == "singleInstance" and body["seriesMasterId"] is None
    assert body["start"] == {"dateTime": "2027-04-15T12:00:00.0000000", "timeZone": PST}
    assert body["originalStartTimeZone"] == PST
    assert body["@odata.etag"] == f'W/"{body["changeKey"]}"'
    assert body["attendees"] == [
        {
            "type": "required",
            "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
            "emailAddress": {"name": "samanthab@contoso.com", "address": "samanthab@contoso.com"},
        }
    ]
    assert body["responseStatus"] == {"response": "organizer", "time": "0001-01-01T00:00:00Z"}
    assert body["organizer"]["emailAddress"]["address"] == mailbox.user["mail"]
    assert body["location"]["displayName"] == "Harry's Bar"
    assert "originalStart" not in body
    eid = body["id"]

    got = client.get(f"/v1.0/me/events/{eid}").get_json()
    assert got["start"] == {"dateTime": "2027-04-15T19:00:00.0000000", "timeZone": "UTC"}

    patched = client.patch(f"/v1.0/me/calendar/events/{eid}", json={"subject": "Brunch"})
    assert patched.status_code == 200
    assert patched.get_json()["subject"] == "Brunch"
    assert patched.get_json()["changeKey"] != body["changeKey"]

    assert client.delete(f"/v1.0/me/events/{eid}").status_code == 204
    again = client.delete(f"/v1.0/me/events/{eid}")
    assert again.status_code == 404 and again.get_json()["error"]["code"] == "ErrorItemNotFound"
    assert client.get(f"/v1.0/me/events/{eid}").status_code == 404
    written = mailbox.calendar.written()
    assert [(w["method"], w["status"]) for w in written] == [
        ("POST", 201),
        ("PATCH", 200),
        ("DELETE", 204),
        ("DELETE", 404),
    ]
    assert written[1]["body"] == {"subject": "Brunch"} and written[1]["id"] == eid


def test_every_windows_zone_the_daemon_writes_is_one_the_emulator_knows(client: Client) -> None:
    from m365sync.emulator.calendar import zone
    from m365sync.sync.timezones import TZ_WIN, to_windows

    written = {to_windows(name) for name in ("America/Edmonton", "America/Lima", "Asia/Kolkata")}
    unknown = sorted(name for name in set(TZ_WIN.values()) | written if zone(name) is None)
    assert unknown == []
    lima = post(client, event("Call", "2027-01-15T10:00:00", zone=to_windows("America/Lima")))
    assert lima.status_code == 201, lima.get_json()
    assert lima.get_json()["originalStartTimeZone"] == "SA Pacific Standard Time"


def test_transaction_id_makes_create_idempotent(client: Client, mailbox: Mailbox) -> None:
    body = event("Retry me", "2027-04-15T12:00:00", transactionId="7E163156-7762-4BEB")
    first = post(client, body)
    second = post(client, body)
    assert first.status_code == second.status_code == 201
    assert first.get_json()["id"] == second.get_json()["id"]
    assert first.get_json()["transactionId"] == "7E163156-7762-4BEB"
    assert len(mailbox.calendar.events()) == 1
    changed = client.patch(
        f"/v1.0/me/events/{first.get_json()['id']}", json={"transactionId": "other"}
    )
    assert changed.status_code == 400
    assert post(client, event("Another", "2027-04-16T12:00:00")).status_code == 201
    assert len(mailbox.calendar.events()) == 2


def test_list_events_pages_with_skip(client: Client) -> None:
    for n in range(12):
        post(client, event(f"E{n}", f"2027-05-{n + 1:02d}T09:00:00"))
    first = client.get("/v1.0/me/events").get_json()
    assert len(first["value"]) == 10
    assert first["@odata.nextLink"].endswith("/me/events?$skip=10")
    rest = client.get(_relative(first["@odata.nextLink"])).get_json()
    assert [e["subject"] for e in rest["value"]] == ["E10", "E11"]
    assert "@odata.nextLink" not in rest
    chosen = client.get("/v1.0/me/events?$select=subject&$top=2").get_json()
    assert set(chosen["value"][0]) == {"@odata.etag", "id", "subject"}


def test_all_day_events_must_be_midnight_in_one_zone(client: Client) -> None:
    ok = post(
        client,
        {
            "subject": "Holiday",
            "isAllDay": True,
            "start": {"dateTime": "2027-02-06T00:00:00", "timeZone": "New Zealand Standard Time"},
            "end": {"dateTime": "2027-02-07T00:00:00", "timeZone": "New Zealand Standard Time"},
        },
    )
    assert ok.status_code == 201
    # An all-day event stays on its day, whatever zone the client asks for.
    assert ok.get_json()["start"] == {"dateTime": "2027-02-06T00:00:00.0000000", "timeZone": "UTC"}
    for start, end in (
        (("2027-02-06T09:00:00", "UTC"), ("2027-02-07T00:00:00", "UTC")),
        (("2027-02-06T00:00:00", "UTC"), ("2027-02-07T00:00:00", PST)),
    ):
        bad = post(
            client,
            {
                "subject": "Bad",
                "isAllDay": True,
                "start": {"dateTime": start[0], "timeZone": start[1]},
                "end": {"dateTime": end[0], "timeZone": end[1]},
            },
        )
        assert bad.status_code == 400


def test_invalid_requests(client: Client) -> None:
    assert post(client, event("Zone", "2027-01-01T09:00:00", zone="Mars")).status_code == 400
    assert client.get("/v1.0/me/events/not an id").status_code == 400
    assert client.get("/v1.0/me/events/AAMkAGI1AAAt9AHjAAAxyz=").status_code == 404
    refused = client.post("/v1.0/me/events", data="not json")
    assert refused.get_json()["error"]["code"] == "UnableToDeserializePostBody"


# --------------------------------------------------------------------------- series


def test_recurring_event_read_back_and_start_date_rule(client: Client) -> None:
    # The documented example "create_event_recurring" (docs `api/user-post-events.md`).
    body = event(
        "Let's go for lunch",
        "2017-09-04T12:00:00",
        120,
        PST,
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["Monday"]},
            "range": {"type": "endDate", "startDate": "2017-09-04", "endDate": "2017-12-31"},
        },
    )
    created = post(client, body)
    assert created.status_code == 201
    master = created.get_json()
    assert master["type"] == "seriesMaster"
    assert master["recurrence"]["pattern"] == {
        "type": "weekly",
        "interval": 1,
        "month": 0,
        "dayOfMonth": 0,
        "daysOfWeek": ["monday"],
        "firstDayOfWeek": "sunday",
        "index": "first",
    }
    assert master["recurrence"]["range"] == {
        "type": "endDate",
        "startDate": "2017-09-04",
        "endDate": "2017-12-31",
        "recurrenceTimeZone": PST,
        "numberOfOccurrences": 0,
    }
    body["recurrence"]["range"]["startDate"] = "2017-09-05"
    assert post(client, body).status_code == 400


def test_instances_occurrences_exceptions_and_cancellations(client: Client) -> None:
    master = post(client, weekly("2027-01-04T09:00:00", ["monday", "wednesday"], 6)).get_json()
    url = f"/v1.0/me/events/{master['id']}/instances?{WINDOW}"
    found = client.get(url).get_json()["value"]
    assert len(found) == 6
    assert {i["type"] for i in found} == {"occurrence"}
    assert {i["seriesMasterId"] for i in found} == {master["id"]}
    assert all(i["recurrence"] is None and i["originalStart"].endswith("Z") for i in found)
    assert len({i["iCalUId"] for i in found}) == 6 and master["iCalUId"] not in {
        i["iCalUId"] for i in found
    }
    by_start = sorted(found, key=lambda i: i["originalStart"])
    moved, cancelled, deleted = by_start[2], by_start[3], by_start[4]

    patched = client.patch(
        f"/v1.0/me/events/{moved['id']}",
        json={
            "subject": "Moved",
            "start": {"dateTime": "2027-01-11T11:00:00", "timeZone": PST},
            "end": {"dateTime": "2027-01-11T11:30:00", "timeZone": PST},
        },
    )
    assert patched.status_code == 200
    exception = patched.get_json()
    assert exception["type"] == "exception" and exception["id"] == moved["id"]
    assert exception["originalStart"] == moved["originalStart"] == "2027-01-11T17:00:00Z"
    assert exception["start"] == {"dateTime": "2027-01-11T19:00:00.0000000", "timeZone": "UTC"}
    crossing = client.patch(
        f"/v1.0/me/events/{moved['id']}",
        json={
            "start": {"dateTime": "2027-01-13T11:00:00", "timeZone": PST},
            "end": {"dateTime": "2027-01-13T11:30:00", "timeZone": PST},
        },
    )
    assert crossing.get_json()["error"]["code"] == "ErrorOccurrenceCrossingBoundary"

    assert client.post(f"/v1.0/me/events/{cancelled['id']}/cancel", json={}).status_code == 202
    assert client.delete(f"/v1.0/me/events/{deleted['id']}").status_code == 204
    assert client.delete(f"/v1.0/me/events/{deleted['id']}").status_code == 404

    after = client.get(url).get_json()["value"]
    assert len(after) == 4
    assert {i["id"] for i in after} == {i["id"] for i in found} - {cancelled["id"], deleted["id"]}
    assert [i["subject"] for i in after if i["type"] == "exception"] == ["Moved"]
    assert client.get(f"/v1.0/me/events/{cancelled['id']}").status_code == 404
    # The master's subject reaches occurrences, not the exception's own subject.
    client.patch(f"/v1.0/me/events/{master['id']}", json={"subject": "Renamed"})
    subjects = sorted(i["subject"] for i in client.get(url).get_json()["value"])
    assert subjects == ["Moved", "Renamed", "Renamed", "Renamed"]

    # Changing the recurrence regenerates the series: exceptions and cancellations go.
    changed = client.patch(
        f"/v1.0/me/events/{master['id']}",
        json={
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                "range": {"type": "numbered", "startDate": "2027-01-04", "numberOfOccurrences": 3},
            }
        },
    )
    assert changed.status_code == 200
    regenerated = client.get(url).get_json()["value"]
    assert sorted(i["originalStart"] for i in regenerated) == [
        "2027-01-04T17:00:00Z",
        "2027-01-11T17:00:00Z",
        "2027-01-18T17:00:00Z",
    ]
    assert {i["type"] for i in regenerated} == {"occurrence"}

    assert client.delete(f"/v1.0/me/events/{master['id']}").status_code == 204
    assert client.get(url).status_code == 404
    assert client.get(f"/v1.0/me/events/{regenerated[0]['id']}").status_code == 404


def test_calendar_view_lists_instances_not_masters(client: Client) -> None:
    master = post(client, weekly("2027-01-04T09:00:00", ["monday"], 3)).get_json()
    post(client, event("Single", "2027-01-05T10:00:00"))
    view = client.get(f"/v1.0/me/calendarView?{WINDOW}").get_json()["value"]
    assert [v["type"] for v in view] == ["occurrence", "singleInstance", "occurrence", "occurrence"]
    assert master["id"] not in {v["id"] for v in view}


# --------------------------------------------------------------------------- delta


def test_delta_rounds_report_each_change_once(client: Client, mailbox: Mailbox) -> None:
    keep = post(client, event("Keep", "2027-02-01T09:00:00")).get_json()
    edit = post(client, event("Edit", "2027-02-02T09:00:00")).get_json()
    gone = post(client, event("Gone", "2027-02-03T09:00:00")).get_json()
    master = post(client, weekly("2027-02-01T09:00:00", ["monday"], 4)).get_json()
    post(client, event("Far away", "2030-01-01T09:00:00"))

    items, delta_link = drain(client, DELTA)
    assert len(items) == 3 + 4
    assert all(i["@odata.type"] == "#microsoft.graph.event" for i in items)
    assert "seriesMaster" not in {i["type"] for i in items}
    assert keep["id"] in {i["id"] for i in items}

    # Nothing changed: an empty round.
    nothing, delta_link = drain(client, delta_link)
    assert nothing == []

    instances = client.get(f"/v1.0/me/events/{master['id']}/instances?{WINDOW}").get_json()
    occurrence = sorted(instances["value"], key=lambda i: i["originalStart"])[1]
    new = post(client, event("New", "2027-02-04T09:00:00")).get_json()
    client.patch(f"/v1.0/me/events/{edit['id']}", json={"subject": "Edited"})
    client.delete(f"/v1.0/me/events/{gone['id']}")
    client.post(f"/v1.0/me/events/{occurrence['id']}/cancel", json={"Comment": "no"})
    outside = post(client, event("Outside", "2031-01-01T09:00:00")).get_json()

    changes, delta_link = drain(client, delta_link)
    ids = [c["id"] for c in changes]
    assert len(ids) == len(set(ids)), "each change exactly once"
    removed = {c["id"] for c in changes if "@removed" in c}
    assert {gone["id"], occurrence["id"]} <= removed
    assert all(c["@removed"] == {"reason": "deleted"} for c in changes if "@removed" in c)
    updated = {c["id"]: c for c in changes if "@removed" not in c}
    assert updated[edit["id"]]["subject"] == "Edited"
    assert new["id"] in updated
    assert keep["id"] not in ids
    # An event created outside the window comes as @removed (docs `api/event-delta.md`).
    assert outside["id"] in removed
    # A cancellation changes the master, so its other occurrences come again as updates.
    assert {i["id"] for i in instances["value"]} - {occurrence["id"]} <= set(updated)

    final, _ = drain(client, delta_link)
    assert final == []


def test_delta_paging_time_zone_and_immutable_ids(client: Client) -> None:
    for n in range(5):
        post(client, event(f"E{n}", f"2027-03-0{n + 1}T09:00:00", zone="W. Europe Standard Time"))
    answer = client.get(
        DELTA,
        headers={
            "Prefer": 'odata.maxpagesize=2, outlook.timezone="Pacific Standard Time", '
            'IdType="ImmutableId"'
        },
    )
    body = answer.get_json()
    applied = answer.headers["Preference-Applied"]
    assert 'outlook.timezone="Pacific Standard Time"' in applied
    assert "odata.maxpagesize=2" in applied and 'IdType="ImmutableId"' in applied
    assert len(body["value"]) == 2
    assert "/me/calendarView/delta?$skiptoken=" in body["@odata.nextLink"]
    assert body["value"][0]["start"] == {
        "dateTime": "2027-03-01T00:00:00.0000000",
        "timeZone": PST,
    }
    items, link = drain(client, _relative(body["@odata.nextLink"]), "odata.maxpagesize=2")
    assert len(items) == 3 and "$deltatoken=" in link
    via_calendar, _ = drain(client, "/v1.0/me/calendar/calendarView/delta?" + WINDOW)
    assert len(via_calendar) == 5


def test_delta_refuses_query_options_and_bad_windows(client: Client) -> None:
    for option in ("$select=subject", "$filter=subject eq 'x'", "$orderby=start", "$expand=x"):
        answer = client.get(f"{DELTA}&{option}")
        assert answer.status_code == 400, option
    missing = client.get("/v1.0/me/calendarView/delta")
    assert missing.status_code == 400
    assert missing.get_json()["error"]["code"] == "ErrorInvalidParameter"
    too_long = client.get(
        "/v1.0/me/calendarView/delta?startDateTime=2020-01-01T00:00:00Z"
        "&endDateTime=2025-01-02T00:00:00Z"
    )
    assert too_long.status_code == 400
    assert "Maximum number of days: 1825" in too_long.get_json()["error"]["message"]
    five_years = client.get(
        "/v1.0/me/calendarView/delta?startDateTime=2020-01-01T00:00:00Z"
        "&endDateTime=2024-12-30T00:00:00Z"
    )
    assert five_years.status_code == 200


def test_dropped_sync_state_answers_410(client: Client, mailbox: Mailbox) -> None:
    post(client, event("A", "2027-02-01T09:00:00"))
    post(client, event("B", "2027-02-02T09:00:00"))
    first = client.get(DELTA, headers={"Prefer": "odata.maxpagesize=1"}).get_json()
    _, delta_link = drain(client, DELTA)
    mailbox.drop_sync_states()
    for link in (_relative(first["@odata.nextLink"]), delta_link):
        gone = client.get(link)
        assert gone.status_code == 410
        assert gone.get_json()["error"]["code"] == "SyncStateNotFound"
    assert client.get(DELTA).status_code == 200


# --------------------------------------------------------------------------- scopes


@pytest.mark.parametrize(
    "scopes, read, write",
    [
        (("Calendars.Read",), 200, 403),
        (("Calendars.ReadWrite",), 200, 201),
        (("Mail.Read", "User.Read"), 403, 403),
    ],
)
def test_scopes(mailbox: Mailbox, scopes: tuple[str, ...], read: int, write: int) -> None:
    client = client_for(mailbox, *scopes)
    assert client.get("/v1.0/me/events").status_code == read
    assert client.get(DELTA).status_code == read
    answer = post(client, event("X", "2027-01-01T09:00:00"))
    assert answer.status_code == write
    if write == 403:
        assert answer.get_json()["error"]["code"] == "ErrorAccessDenied"


# --------------------------------------------------------------------------- seed and Python API


def test_seeded_calendar_is_live() -> None:
    mailbox = Mailbox.seeded(20)
    client = client_for(mailbox, "Calendars.Read")
    now = datetime.now(UTC)
    window = (
        f"startDateTime={(now - timedelta(days=60)):%Y-%m-%dT%H:%M:%SZ}"
        f"&endDateTime={(now + timedelta(days=60)):%Y-%m-%dT%H:%M:%SZ}"
    )
    items, _ = drain(client, f"/v1.0/me/calendarView/delta?{window}", "odata.maxpagesize=100")
    upcoming = [i for i in items if i["start"]["dateTime"] > now.strftime("%Y-%m-%dT%H:%M:%S")]
    assert upcoming, "upcoming meetings exist"
    types = {i["type"] for i in items}
    assert {"singleInstance", "occurrence", "exception"} <= types
    standup = [i for i in items if i["subject"].startswith("Weekly marketing standup")]
    master_id = standup[0]["seriesMasterId"]
    assert mailbox.calendar.cancelled_occurrences(master_id)
    # The standup keeps 09:00 Pacific; its UTC hour changes with DST over the year.
    series = mailbox.calendar.instances(
        master_id, now - timedelta(days=60), now + timedelta(days=330)
    )
    hours = {i["originalStart"][11:13] for i in series}
    assert hours == {"16", "17"}
    assert any(i["sensitivity"] == "private" for i in items)
    attendees = {a["emailAddress"]["address"] for i in items for a in i["attendees"]}
    assert "kevin.cook@fabrikam.com" in attendees


def test_python_api_changes_show_in_delta(client: Client, mailbox: Mailbox) -> None:
    _, link = drain(client, DELTA)
    calendar = mailbox.calendar
    created, _ = calendar.create(event("From Outlook", "2027-06-01T09:00:00"))
    changes, link = drain(client, link)
    assert [c["id"] for c in changes] == [created["id"]]
    calendar.update(created["id"], {"subject": "Moved in Outlook"})
    changes, link = drain(client, link)
    assert changes[0]["subject"] == "Moved in Outlook"
    calendar.delete(created["id"])
    changes, link = drain(client, link)
    assert changes == [
        {
            "@odata.type": "#microsoft.graph.event",
            "id": created["id"],
            "@removed": {"reason": "deleted"},
        }
    ]
    assert calendar.written() == []


def test_json_round_trip_keeps_exceptions_and_cancellations(tmp_path: Any) -> None:
    mailbox = Mailbox.seeded(10)
    path = tmp_path / "box.json"
    mailbox.to_json(path)
    loaded = Mailbox.from_json(path)
    assert loaded.events() == mailbox.events()
    now = datetime.now(UTC)
    assert loaded.calendar.view(now, now + timedelta(days=60)) == mailbox.calendar.view(
        now, now + timedelta(days=60)
    )


# --------------------------------------------------------------------------- over HTTPS


def test_calendar_over_https(emulator: Emulator, graph: EmulatorSession) -> None:
    created = graph.post(
        "/me/events",
        json=event("Over TLS", "2027-01-05T10:00:00", transactionId="tls-1"),
        headers={"Prefer": 'outlook.timezone="W. Europe Standard Time"'},
    )
    assert created.status_code == 201
    assert created.json()["start"]["timeZone"] == "W. Europe Standard Time"
    assert (
        graph.post(
            "/me/events", json=event("Over TLS", "2027-01-05T10:00:00", transactionId="tls-1")
        ).json()["id"]
        == created.json()["id"]
    )
    url = f"/me/calendarView/delta?{WINDOW}"
    seen: list[dict] = []
    while url:
        answer = graph.get(url, headers={"Prefer": "odata.maxpagesize=5"})
        assert answer.status_code == 200
        seen += answer.json()["value"]
        url = answer.json().get("@odata.nextLink", "")
    assert created.json()["id"] in {s["id"] for s in seen}
    assert emulator.mailbox.calendar.written()[0]["body"]["subject"] == "Over TLS"


def test_control_api_events(emulator: Emulator, http: EmulatorSession) -> None:
    calendar_url = "/_emulator/calendar/events"
    made = http.post(calendar_url, json=event("Via control", "2027-01-06T10:00:00"))
    assert made.status_code == 201
    eid = made.json()["id"]
    assert (
        http.patch(f"{calendar_url}/{eid}", json={"subject": "Renamed"}).json()["subject"]
        == "Renamed"
    )
    listed = http.get(calendar_url).json()["value"]
    assert eid in {e["id"] for e in listed}
    view = http.get(
        "/_emulator/calendar/view?startDateTime=2027-01-06T00:00:00Z&endDateTime=2027-01-07T00:00:00Z"
    ).json()["value"]
    assert "Renamed" in [v["subject"] for v in view]
    series = http.post(calendar_url, json=weekly("2027-01-04T09:00:00", ["monday"], 3)).json()
    exception = http.post(
        calendar_url,
        json={
            "seriesMasterId": series["id"],
            "originalStart": "2027-01-11T17:00:00Z",
            "subject": "Changed in Outlook",
        },
    )
    assert exception.status_code == 201 and exception.json()["type"] == "exception"
    cancelled = http.post(f"{calendar_url}/{exception.json()['id']}/cancel")
    assert cancelled.status_code == 202
    instances = http.get(
        f"{calendar_url}/{series['id']}/instances?startDateTime=2027-01-01T00:00:00Z"
        "&endDateTime=2027-02-01T00:00:00Z"
    ).json()["value"]
    assert len(instances) == 2
    assert http.delete(f"{calendar_url}/{eid}").status_code == 204
    assert http.delete(f"{calendar_url}/{eid}").status_code == 404
    assert http.get("/_emulator/calendar/written").json()["value"] == []
