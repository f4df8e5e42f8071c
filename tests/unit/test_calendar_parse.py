"""Event parsing and event JSON on Graph's documented payloads, time zones and all-day events.

Payloads marked "docs" are copied from microsoftgraph/microsoft-graph-docs-contrib:
`api/user-post-events.md` @ b7c64905 (examples 1, 3, 4), `api/event-get.md` @ 02e0226b,
`concepts/delta-query-events.md` @ 0a028464, `api/event-list-instances.md` @ 007a9ba3.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime

import pytest

from m365sync.domain import (
    Attendee,
    CalendarEvent,
    EventType,
    Recurrence,
    ResponseStatus,
    Sensitivity,
    ShowAs,
)
from m365sync.errors import MalformedResponse
from m365sync.graph.calendar import (
    BadEvent,
    event_body,
    parse_event,
    parse_event_page,
    parse_recurrence,
    recurrence_json,
)

CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#Collection(event)"

# docs: user-post-events.md example 1 (response), trimmed of nothing we read.
CREATED = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('cd209b0b')/events/$entity",
    "@odata.etag": 'W/"ZlnW4RIAV06KYYwlrfNZvQAALfZeRQ=="',
    "id": "AAMkAGI1AAAt9AHjAAA=",
    "createdDateTime": "2017-04-15T03:00:50.7579581Z",
    "lastModifiedDateTime": "2017-04-15T03:00:51.245372Z",
    "changeKey": "ZlnW4RIAV06KYYwlrfNZvQAALfZeRQ==",
    "categories": [],
    "originalStartTimeZone": "Pacific Standard Time",
    "originalEndTimeZone": "Pacific Standard Time",
    "iCalUId": "040000008200E00074C5B7101A82E00800000000DA2B357D94B5D201000000000000000010000000"
    "EC4597557F0CB34EA4CC2887EA7B17C3",
    "reminderMinutesBeforeStart": 15,
    "isReminderOn": True,
    "hasAttachments": False,
    "hideAttendees": False,
    "subject": "Let's go brunch",
    "bodyPreview": "Does noon work for you?",
    "importance": "normal",
    "sensitivity": "normal",
    "isAllDay": False,
    "isCancelled": False,
    "isDraft": False,
    "isOrganizer": True,
    "responseRequested": True,
    "seriesMasterId": None,
    "transactionId": "7E163156-7762-4BEB-A1C6-729EA81755A7",
    "showAs": "busy",
    "type": "singleInstance",
    "webLink": "https://outlook.office365.com/owa/?itemid=AAMkAGI1AAAt9AHjAAA%3D",
    "onlineMeetingUrl": None,
    "isOnlineMeeting": False,
    "onlineMeetingProvider": "unknown",
    "onlineMeeting": None,
    "allowNewTimeProposals": True,
    "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
    "body": {
        "contentType": "html",
        "content": "<html><head></head><body>Does late morning work for you?</body></html>",
    },
    "start": {"dateTime": "2017-04-15T11:00:00.0000000", "timeZone": "Pacific Standard Time"},
    "end": {"dateTime": "2017-04-15T12:00:00.0000000", "timeZone": "Pacific Standard Time"},
    "location": {
        "displayName": "Harry's Bar",
        "locationType": "default",
        "uniqueId": "Harry's Bar",
        "uniqueIdType": "private",
    },
    "locations": [{"displayName": "Harry's Bar", "locationType": "default"}],
    "recurrence": None,
    "attendees": [
        {
            "type": "required",
            "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
            "emailAddress": {
                "name": "Samantha Booth",
                "address": "samanthab@contoso.onmicrosoft.com",
            },
        }
    ],
    "organizer": {
        "emailAddress": {"name": "Dana Swope", "address": "danas@contoso.onmicrosoft.com"}
    },
}

# docs: user-post-events.md example 3 (response): a weekly series master, read-back defaults.
MASTER = {
    "id": "AAMkADQwMD",
    "changeKey": "+T8RDneHMkKe2BGYEaQZ4wAA5a9Acw==",
    "originalStartTimeZone": "Pacific Standard Time",
    "originalEndTimeZone": "Pacific Standard Time",
    "iCalUId": "040000008200E00074C5B7101A82E0080000000028CEBE04293FD301",
    "subject": "Let's go for lunch",
    "sensitivity": "normal",
    "isAllDay": False,
    "isCancelled": False,
    "seriesMasterId": None,
    "showAs": "busy",
    "type": "seriesMaster",
    "start": {"dateTime": "2017-09-04T12:00:00.0000000", "timeZone": "Pacific Standard Time"},
    "end": {"dateTime": "2017-09-04T14:00:00.0000000", "timeZone": "Pacific Standard Time"},
    "recurrence": {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "month": 0,
            "dayOfMonth": 0,
            "daysOfWeek": ["monday"],
            "firstDayOfWeek": "sunday",
            "index": "first",
        },
        "range": {
            "type": "endDate",
            "startDate": "2017-09-04",
            "endDate": "2017-12-31",
            "recurrenceTimeZone": "Pacific Standard Time",
            "numberOfOccurrences": 0,
        },
    },
    "attendees": [
        {
            "type": "required",
            "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
            "emailAddress": {"name": "Adele Vance", "address": "AdeleV@contoso.onmicrosoft.com"},
        }
    ],
    "organizer": {
        "emailAddress": {"name": "Alex Wilber", "address": "AlexW@contoso.onmicrosoft.com"}
    },
}

# docs: event-get.md example 1: Prefer PST, Preference-Applied PST, and yet start is in UTC.
GOT_WITH_SELECT = {
    "@odata.etag": 'W/"IiLKjG2I7E+Xv0+ys6MD0wAEd5/kNQ=="',
    "id": "AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OABGAAAAAAAiQ8W967B7TKBjgx9rVEUR",
    "subject": "New Product Regulations Touchpoint",
    "hideAttendees": False,
    "body": {"contentType": "html", "content": "<html><body>Touchpoint</body></html>"},
    "start": {"dateTime": "2014-11-03T17:00:00.0000000", "timeZone": "UTC"},
    "end": {"dateTime": "2014-11-03T17:30:00.0000000", "timeZone": "UTC"},
    "location": {"displayName": "Conf Room Rainier", "locationType": "default"},
    "attendees": [
        {
            "type": "required",
            "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
            "emailAddress": {
                "name": "Engineering",
                "address": "engineering@M365x214355.onmicrosoft.com",
            },
        },
        {
            "type": "required",
            "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
            "emailAddress": {
                "name": "Irvin Sayers",
                "address": "IrvinS@M365x214355.onmicrosoft.com",
            },
        },
    ],
    "organizer": {
        "emailAddress": {
            "name": "Engineering",
            "address": "engineering@M365x214355.onmicrosoft.com",
        }
    },
    "calendar@odata.navigationLink": "https://graph.microsoft.com/v1.0/users('48d3')/calendars('A')",
}


def samantha_event(event_id, subject, start, end, **extra):
    """The shape of the delta-query-events.md samples (docs)."""
    item = {
        "@odata.type": "#microsoft.graph.event",
        "@odata.etag": 'W/"EZ9r3czxY0m2jz8c45czkwAAFXcvIQ=="',
        "subject": subject,
        "body": {"contentType": "html", "content": ""},
        "start": {"dateTime": start, "timeZone": "UTC"},
        "end": {"dateTime": end, "timeZone": "UTC"},
        "attendees": [],
        "organizer": {
            "emailAddress": {
                "name": "Samantha Booth",
                "address": "samanthab@contoso.onmicrosoft.com",
            }
        },
        "id": event_id,
    }
    item.update(extra)
    return item


def timed(start, end, zone, **extra):
    item = {
        "id": "AAMkTimed=",
        "type": "singleInstance",
        "subject": "Timed",
        "originalStartTimeZone": zone,
        "start": {"dateTime": start, "timeZone": zone},
        "end": {"dateTime": end, "timeZone": zone},
    }
    item.update(extra)
    return item


def utc(*args):
    return datetime(*args, tzinfo=UTC)


# --- documented payloads ------------------------------------------------------------------


def test_documented_created_event_parses_to_the_right_values():
    e = parse_event(CREATED)
    assert e.graph_id == "AAMkAGI1AAAt9AHjAAA="
    assert e.event_type is EventType.SINGLE
    assert e.subject == "Let's go brunch"
    # 11:00 Pacific in April is PDT (UTC-7)
    assert e.start == utc(2017, 4, 15, 18, 0)
    assert e.end == utc(2017, 4, 15, 19, 0)
    assert e.time_zone == "America/Los_Angeles"
    assert e.is_all_day is False and e.start_date is None
    assert e.transaction_id == "7E163156-7762-4BEB-A1C6-729EA81755A7"
    assert e.change_key == "ZlnW4RIAV06KYYwlrfNZvQAALfZeRQ=="
    assert e.last_modified == utc(2017, 4, 15, 3, 0, 51, 245372)
    assert e.ical_uid.startswith("040000008200E000")
    assert e.location == "Harry's Bar"
    assert e.body_html.startswith("<html>")
    assert e.sensitivity is Sensitivity.NORMAL and e.show_as is ShowAs.BUSY
    assert e.organizer.address == "danas@contoso.onmicrosoft.com"
    assert e.attendees == (
        Attendee(
            "samanthab@contoso.onmicrosoft.com", "Samantha Booth", "required", ResponseStatus.NONE
        ),
    )
    assert e.online_meeting_url is None and e.recurrence is None
    assert e.series_master_id is None and e.original_start is None


def test_documented_get_reads_the_zone_of_each_value_not_the_preference():
    e = parse_event(GOT_WITH_SELECT)  # no "type" under $select: a single instance
    assert e.start == utc(2014, 11, 3, 17, 0)
    assert e.end == utc(2014, 11, 3, 17, 30)
    assert e.event_type is EventType.SINGLE
    assert e.time_zone == "UTC"
    assert [a.name for a in e.attendees] == ["Engineering", "Irvin Sayers"]


def test_documented_series_master_keeps_graph_recurrence_values_raw():
    e = parse_event(MASTER)
    assert e.event_type is EventType.SERIES_MASTER
    assert e.start == utc(2017, 9, 4, 19, 0)  # 12:00 PDT
    assert e.recurrence == Recurrence(
        pattern_type="weekly",
        start_date=date(2017, 9, 4),
        interval=1,
        days_of_week=("monday",),
        day_of_month=0,
        month=0,
        first_day_of_week="sunday",
        index="first",
        range_type="endDate",
        end_date=date(2017, 12, 31),
        number_of_occurrences=0,
        time_zone="Pacific Standard Time",
    )


def test_documented_online_meeting_join_url_and_the_deprecated_fallback():
    joined = copy.deepcopy(CREATED)
    joined["isOnlineMeeting"] = True
    joined["onlineMeeting"] = {
        "joinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NzIy%40thread.v2/0",
        "conferenceId": "177513992",
        "tollNumber": "+1 425 555 0123",
    }
    assert parse_event(joined).online_meeting_url.startswith("https://teams.microsoft.com/")
    legacy = copy.deepcopy(CREATED)
    legacy["onlineMeetingUrl"] = "https://meet.lync.com/contoso/danas/ABC"
    assert parse_event(legacy).online_meeting_url == "https://meet.lync.com/contoso/danas/ABC"


def test_documented_delta_first_page_and_next_round_with_removed():
    first = parse_event_page(
        {
            "@odata.context": CONTEXT,
            "@odata.nextLink": "https://graph.microsoft.com/v1.0/me/calendarView/delta?$skiptoken=R0usmcCM996atia_s",
            "value": [
                samantha_event(
                    "AAMkADNVxRAAA=",
                    "Plan shopping list",
                    "2016-12-09T20:30:00.0000000",
                    "2016-12-09T22:00:00.0000000",
                ),
                samantha_event(
                    "AAMkADVxSAAA=",
                    "Pick up car",
                    "2016-12-10T01:00:00.0000000",
                    "2016-12-10T02:00:00.0000000",
                ),
            ],
        }
    )
    assert [e.subject for e in first.events] == ["Plan shopping list", "Pick up car"]
    assert first.events[0].start == utc(2016, 12, 9, 20, 30)
    assert first.events[1].organizer.name == "Samantha Booth"
    assert first.next_link.endswith("$skiptoken=R0usmcCM996atia_s")
    assert first.delta_link is None and first.removed_ids == [] and first.rejected == []

    service = samantha_event(
        "AAMkADj1HvAAA=",
        "Attend service",
        "2016-12-25T06:00:00.0000000",
        "2016-12-25T07:30:00.0000000",
        location={
            "displayName": "Chapel of Saint Ignatius",
            "address": {"street": "900 Broadway", "city": "Seattle"},
            "coordinates": {"latitude": 47.6105, "longitude": -122.321},
        },
    )
    next_round = parse_event_page(
        {
            "@odata.context": CONTEXT,
            "@odata.deltaLink": "https://graph.microsoft.com/v1.0/me/calendarView/delta?$deltatoken=R0usmcFuQtZdtpk4",
            "value": [
                {
                    "@odata.type": "#microsoft.graph.event",
                    "id": "AAMkADk0MGFkODE3LWE4MmYtNDRhOS04OGQLkRkXbBznTvAADb6ytyAAA=",
                    "@removed": {"reason": "deleted"},
                },
                service,
            ],
        }
    )
    assert next_round.removed_ids == ["AAMkADk0MGFkODE3LWE4MmYtNDRhOS04OGQLkRkXbBznTvAADb6ytyAAA="]
    assert [e.location for e in next_round.events] == ["Chapel of Saint Ignatius"]
    assert next_round.delta_link.endswith("$deltatoken=R0usmcFuQtZdtpk4")
    assert next_round.next_link is None


def test_documented_instances_occurrences_and_exception():
    master = "AAMkAGUzYRgWAAA="
    rows = [
        ("AAMkAGUzYAgI1sE1TatAAEYAAAAAlNFb2CNPe0ucP9you", "exception", "2019-04-16T20:30:00"),
        ("AAMkAGUzYAgI1ru1JMcAAEYAAAAAlNFb2CNPe0ucP9you", "occurrence", "2019-04-08T20:30:00"),
        ("AAMkAGUzYAgI1sa1do_AAEYAAAAAlNFb2CNPe0ucP9you", "occurrence", "2019-04-22T20:30:00"),
    ]
    for event_id, kind, start in rows:
        e = parse_event(
            {
                "@odata.etag": 'W/"x3IAvB5fbUWf4XNcBFLNUwAAKuA3yQ=="',
                "id": event_id,
                "subject": "Review strategy for Q3",
                "bodyPreview": "",
                "seriesMasterId": master,
                "type": kind,
                "recurrence": None,
                "start": {"dateTime": start + ".0000000", "timeZone": "UTC"},
                "end": {"dateTime": start[:11] + "21:00:00.0000000", "timeZone": "UTC"},
            }
        )
        assert e.event_type is EventType(kind)
        assert e.series_master_id == master
        assert e.recurrence is None
        assert e.start == datetime.fromisoformat(start).replace(tzinfo=UTC)


def test_original_start_of_an_occurrence_is_utc_with_seven_digits():
    item = timed(
        "2019-04-16T20:30:00.0000000",
        "2019-04-16T21:00:00.0000000",
        "UTC",
        type="exception",
        seriesMasterId="M",
        originalStart="2019-04-15T20:30:00.1234567Z",
    )
    assert parse_event(item).original_start == utc(2019, 4, 15, 20, 30, 0, 123456)


# --- time zones ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wall", "instant"),
    [
        ("2024-03-30T10:00:00.0000000", utc(2024, 3, 30, 9, 0)),  # CET, UTC+1
        ("2024-03-31T10:00:00.0000000", utc(2024, 3, 31, 8, 0)),  # CEST from 02:00 that day
        ("2024-10-26T10:00:00.0000000", utc(2024, 10, 26, 8, 0)),  # still CEST
        ("2024-10-27T10:00:00.0000000", utc(2024, 10, 27, 9, 0)),  # CET again
    ],
)
def test_windows_zone_converts_to_the_right_instant_across_dst(wall, instant):
    end = wall.replace("T10:", "T11:")
    e = parse_event(timed(wall, end, "W. Europe Standard Time"))
    assert e.start == instant
    assert (e.end - e.start).total_seconds() == 3600
    assert e.time_zone == "Europe/Berlin"


def test_iana_zone_names_are_read_too():
    e = parse_event(
        timed(
            "2024-07-01T09:00:00",
            "2024-07-01T10:00:00",
            "Asia/Tokyo",
            originalStartTimeZone="Tokyo Standard Time",
        )
    )
    assert e.start == utc(2024, 7, 1, 0, 0)
    assert e.time_zone == "Asia/Tokyo"


def test_explicit_offset_in_date_time_wins():
    item = timed("2024-07-01T09:00:00+02:00", "2024-07-01T10:00:00+02:00", "UTC")
    assert parse_event(item).start == utc(2024, 7, 1, 7, 0)


@pytest.mark.parametrize("original", ["tzone://Microsoft/Custom", "Atlantis Standard Time", None])
def test_unmappable_original_zone_falls_back_to_the_start_zone_and_is_reported(original):
    item = timed("2024-07-01T09:00:00", "2024-07-01T10:00:00", "Tokyo Standard Time")
    item["originalStartTimeZone"] = original
    assert parse_event(item).time_zone == "Asia/Tokyo"
    page = parse_event_page({"value": [item], "@odata.deltaLink": "https://g/delta?$deltatoken=1"})
    assert page.events[0].time_zone == "Asia/Tokyo"
    if original is None:
        assert page.zone_fallbacks == {}
    else:
        assert page.zone_fallbacks == {"AAMkTimed=": original}


def test_custom_zone_with_utc_start_falls_back_to_utc():
    item = timed("2024-07-01T09:00:00", "2024-07-01T10:00:00", "UTC")
    item["originalStartTimeZone"] = "tzone://Microsoft/Custom"
    e = parse_event(item)
    assert e.time_zone == "UTC" and e.start == utc(2024, 7, 1, 9, 0)


# --- all-day ------------------------------------------------------------------------------


def all_day(start, end, zone, original="New Zealand Standard Time"):
    return {
        "id": "AAMkAllDay=",
        "type": "singleInstance",
        "subject": "Waitangi Day",
        "isAllDay": True,
        "originalStartTimeZone": original,
        "start": {"dateTime": start, "timeZone": zone},
        "end": {"dateTime": end, "timeZone": zone},
    }


@pytest.mark.parametrize(
    ("start", "end", "zone"),
    [
        # converted to UTC by Prefer outlook.timezone="UTC": midnight NZDT is 11:00 the day before
        ("2024-02-05T11:00:00.0000000", "2024-02-06T11:00:00.0000000", "UTC"),
        # in the event's own zone (what all-day events are reported to do under any Prefer)
        ("2024-02-06T00:00:00.0000000", "2024-02-07T00:00:00.0000000", "New Zealand Standard Time"),
        ("2024-02-06T00:00:00.0000000", "2024-02-07T00:00:00.0000000", "Pacific/Auckland"),
        # floating midnight labelled UTC (msgraph-sdk-javascript#1158)
        ("2024-02-06T00:00:00.0000000", "2024-02-07T00:00:00.0000000", "UTC"),
    ],
)
def test_auckland_all_day_event_seen_from_utc_keeps_its_day(start, end, zone):
    e = parse_event(all_day(start, end, zone))
    assert e.is_all_day is True
    assert (e.start_date, e.end_date) == (date(2024, 2, 6), date(2024, 2, 7))
    assert e.start is None and e.end is None
    assert e.time_zone == "Pacific/Auckland"


def test_auckland_all_day_in_winter_uses_nzst():
    e = parse_event(all_day("2024-07-09T12:00:00.0000000", "2024-07-11T12:00:00.0000000", "UTC"))
    assert (e.start_date, e.end_date) == (date(2024, 7, 10), date(2024, 7, 12))


def test_all_day_boundaries_that_are_not_midnight_widen_to_whole_days():
    e = parse_event(
        all_day("2024-02-06T03:00:00", "2024-02-06T05:00:00", "New Zealand Standard Time")
    )
    assert (e.start_date, e.end_date) == (date(2024, 2, 6), date(2024, 2, 7))


# --- fields -------------------------------------------------------------------------------


def test_attendee_responses_kinds_and_missing_addresses():
    item = copy.deepcopy(CREATED)
    item["attendees"] = [
        {
            "type": "Required",
            "status": {"response": "accepted"},
            "emailAddress": {"address": "a@x.com"},
        },
        {
            "type": "optional",
            "status": {"response": "tentativelyAccepted"},
            "emailAddress": {"address": "b@x.com"},
        },
        {
            "type": "resource",
            "status": {"response": "declined"},
            "emailAddress": {"address": "room@x.com"},
        },
        {
            "type": "required",
            "status": {"response": "someday"},
            "emailAddress": {"address": "c@x.com"},
        },
        {"type": "required", "emailAddress": {"name": "No address"}},
    ]
    e = parse_event(item)
    assert [(a.address, a.kind, a.response) for a in e.attendees] == [
        ("a@x.com", "required", ResponseStatus.ACCEPTED),
        ("b@x.com", "optional", ResponseStatus.TENTATIVE),
        ("room@x.com", "resource", ResponseStatus.DECLINED),
        ("c@x.com", "required", ResponseStatus.NONE),
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("private", Sensitivity.PRIVATE),
        ("Confidential", Sensitivity.CONFIDENTIAL),
        ("personal", Sensitivity.PERSONAL),
        (None, Sensitivity.NORMAL),
        ("topSecret", Sensitivity.PRIVATE),  # unknown: err on the private side
    ],
)
def test_sensitivity(raw, expected):
    item = copy.deepcopy(CREATED)
    item["sensitivity"] = raw
    assert parse_event(item).sensitivity is expected


def test_show_as_cancelled_and_text_body():
    item = copy.deepcopy(CREATED)
    item.update(
        showAs="workingElsewhere",
        isCancelled=True,
        body={"contentType": "text", "content": "a < b"},
        location={"displayName": "  "},
    )
    e = parse_event(item)
    assert e.show_as is ShowAs.WORKING_ELSEWHERE
    assert e.is_cancelled is True
    assert e.body_html == "<pre>a &lt; b</pre>"
    assert e.location is None
    item["showAs"] = "somethingNew"
    assert parse_event(item).show_as is ShowAs.UNKNOWN


def test_type_is_inferred_when_absent():
    item = timed("2024-07-01T09:00:00", "2024-07-01T10:00:00", "UTC")
    del item["type"]
    assert parse_event({**item, "seriesMasterId": "M"}).event_type is EventType.OCCURRENCE
    assert (
        parse_event({**item, "recurrence": MASTER["recurrence"]}).event_type
        is EventType.SERIES_MASTER
    )


# --- malformed items ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"start": None}, "start is missing"),
        ({"end": "tomorrow"}, "end is not an object"),
        ({"start": {"dateTime": "not a date", "timeZone": "UTC"}}, "start.dateTime is not"),
        (
            {"start": {"dateTime": "2024-01-01T10:00:00", "timeZone": "Mars Standard Time"}},
            "not a known time zone",
        ),
        ({"type": "hologram"}, "not an event type"),
        ({"attendees": {"a": 1}}, "attendees is not a list"),
        ({"isAllDay": "yes"}, "isAllDay is a str"),
        ({"recurrence": {"pattern": {"type": "weekly"}}}, "recurrence lacks"),
        # recurrencePattern.interval and recurrenceRange.type are "Required" (Graph docs
        # resources/recurrencepattern.md, recurrencerange.md): never guessed as 1 or noEnd.
        (
            {"recurrence": {**MASTER["recurrence"],
                            "pattern": {**MASTER["recurrence"]["pattern"], "interval": 0}}},
            "recurrence interval must be a whole number of at least 1, not 0",
        ),
        (
            {"recurrence": {**MASTER["recurrence"],
                            "pattern": {"type": "daily", "daysOfWeek": []}}},
            "recurrence interval must be a whole number of at least 1, not None",
        ),
        (
            {"recurrence": {**MASTER["recurrence"],
                            "range": {"startDate": "2017-09-04", "endDate": "2017-12-31"}}},
            "recurrence range has no type",
        ),
        (
            {"end": {"dateTime": "2017-04-15T10:00:00", "timeZone": "Pacific Standard Time"}},
            "ends before",
        ),
    ],
)
def test_unusable_items_are_refused_with_a_reason(change, reason):
    item = copy.deepcopy(CREATED)
    item.update(change)
    with pytest.raises(BadEvent, match=reason) as info:
        parse_event(item)
    assert info.value.graph_id == CREATED["id"]


def test_a_master_with_a_malformed_recurrence_is_skipped_on_its_page_with_the_reason():
    zero = copy.deepcopy(MASTER)
    zero["recurrence"]["pattern"]["interval"] = 0
    untyped = copy.deepcopy(MASTER)
    untyped["id"] = "UNTYPED"
    del untyped["recurrence"]["range"]["type"]
    page = parse_event_page(
        {"value": [zero, untyped, CREATED], "@odata.deltaLink": "https://graph.microsoft.com/d"}
    )
    assert [e.graph_id for e in page.events] == [CREATED["id"]]
    reasons = {r.graph_id: r.reason for r in page.rejected}
    assert reasons == {
        MASTER["id"]: "recurrence interval must be a whole number of at least 1, not 0",
        "UNTYPED": "recurrence range has no type",
    }


def test_unknown_fields_are_ignored():
    item = copy.deepcopy(CREATED)
    item.update({"IsRoomRequested": False, "futureThing": {"nested": [1]}, "OccurrenceId": "x"})
    assert parse_event(item).subject == "Let's go brunch"


def test_one_bad_item_never_fails_its_page():
    good = samantha_event("G1", "Good", "2024-01-01T10:00:00", "2024-01-01T11:00:00")
    no_start = samantha_event("B1", "No start", "2024-01-01T10:00:00", "2024-01-01T11:00:00")
    del no_start["start"]
    bad_zone = samantha_event("B2", "Bad zone", "2024-01-01T10:00:00", "2024-01-01T11:00:00")
    bad_zone["start"]["timeZone"] = "Nowhere/Atlantis"
    page = parse_event_page(
        {
            "value": [
                good,
                no_start,
                bad_zone,
                {"subject": "no id"},
                "not an object",
                {"@removed": {}},
            ],
            "@odata.nextLink": "https://graph.microsoft.com/v1.0/me/calendarView/delta?$skiptoken=2",
        }
    )
    assert [e.graph_id for e in page.events] == ["G1"]
    reasons = {r.graph_id: r.reason for r in page.rejected}
    assert reasons["B1"] == "start is missing"
    assert "Nowhere/Atlantis" in reasons["B2"]
    assert reasons[None]  # the anonymous ones are counted too
    assert len(page.rejected) == 5


def test_replayed_ids_keep_the_last_usable_version():
    v1 = samantha_event("E", "v1", "2024-01-01T10:00:00", "2024-01-01T11:00:00")
    v2 = samantha_event("E", "v2", "2024-01-01T10:00:00", "2024-01-01T11:00:00")
    broken = {"id": "E", "subject": "broken"}
    page = parse_event_page({"value": [v1, broken, v2, broken], "@odata.deltaLink": "https://g/d"})
    assert [e.subject for e in page.events] == ["v2"] and page.rejected == []
    gone = parse_event_page(
        {
            "value": [v1, {"id": "E", "@removed": {"reason": "deleted"}}],
            "@odata.deltaLink": "https://g/d",
        }
    )
    assert gone.events == [] and gone.removed_ids == ["E"]


@pytest.mark.parametrize(
    "payload",
    [
        {"value": []},
        {"value": [], "@odata.nextLink": ""},
        {"value": None, "@odata.deltaLink": "https://g/d"},
    ],
)
def test_malformed_pages_raise(payload):
    with pytest.raises(MalformedResponse):
        parse_event_page(payload)


def test_next_link_wins_over_a_premature_delta_link():
    page = parse_event_page(
        {"value": [], "@odata.nextLink": "https://g/n", "@odata.deltaLink": "https://g/d"}
    )
    assert page.next_link == "https://g/n" and page.delta_link is None


# --- event_body ---------------------------------------------------------------------------


def make_event(**changes) -> CalendarEvent:
    fields = dict(
        graph_id="",
        ical_uid=None,
        event_type=EventType.SINGLE,
        subject="Quarterly review",
        start=utc(2024, 3, 31, 8, 0),
        end=utc(2024, 3, 31, 9, 30),
        time_zone="Europe/Berlin",
        body_html="<p>Agenda</p>",
        location="Room 1",
        attendees=(
            Attendee("anna@fabrikam.com", "Anna Lee"),
            Attendee("room@x.com", "", "resource"),
        ),
        sensitivity=Sensitivity.PRIVATE,
        show_as=ShowAs.TENTATIVE,
        transaction_id="tx-1",
    )
    fields.update(changes)
    return CalendarEvent(**fields)


def test_event_body_writes_wall_time_in_the_windows_zone():
    body = event_body(make_event())
    assert body["start"] == {
        "dateTime": "2024-03-31T10:00:00",
        "timeZone": "W. Europe Standard Time",
    }
    assert body["end"] == {"dateTime": "2024-03-31T11:30:00", "timeZone": "W. Europe Standard Time"}
    assert body["isAllDay"] is False
    assert body["subject"] == "Quarterly review"
    assert body["body"] == {"contentType": "HTML", "content": "<p>Agenda</p>"}
    assert body["location"] == {"displayName": "Room 1"}
    assert body["attendees"] == [
        {"emailAddress": {"address": "anna@fabrikam.com", "name": "Anna Lee"}, "type": "required"},
        {"emailAddress": {"address": "room@x.com"}, "type": "resource"},
    ]
    assert body["sensitivity"] == "private" and body["showAs"] == "tentative"
    assert "transactionId" not in body and "recurrence" not in body
    assert "isOnlineMeeting" not in body


def test_event_body_transaction_id_only_on_create_and_online_meeting_on_request():
    body = event_body(make_event(), create=True, online_meeting=True)
    assert body["transactionId"] == "tx-1"
    assert body["isOnlineMeeting"] is True


def test_event_body_round_trips_through_the_parser():
    event = make_event()
    echoed = {
        **event_body(event),
        "id": "X",
        "type": "singleInstance",
        "originalStartTimeZone": "W. Europe Standard Time",
    }
    back = parse_event(echoed)
    assert (back.start, back.end, back.time_zone) == (event.start, event.end, event.time_zone)
    assert back.attendees[0].address == "anna@fabrikam.com"


def test_a_past_event_in_a_zone_outside_cldrs_001_table_comes_back_at_its_instant():
    # Lima kept UTC-5 all along; the Windows zone chosen for it must have done so in 2014 too.
    event = make_event(
        start=datetime(2014, 1, 15, 15, 0, tzinfo=UTC),  # 10:00 in Lima
        end=datetime(2014, 1, 15, 16, 0, tzinfo=UTC),
        time_zone="America/Lima",
    )
    body = event_body(event)
    lima = {"dateTime": "2014-01-15T10:00:00", "timeZone": "SA Pacific Standard Time"}
    assert body["start"] == lima
    back = parse_event({**body, "id": "X", "originalStartTimeZone": body["start"]["timeZone"]})
    assert (back.start, back.end) == (event.start, event.end)


def test_an_event_ending_in_another_zone_writes_its_end_in_that_zone():
    # A flight planned as Paris departure, New York arrival: Outlook keeps both zones
    # (originalStartTimeZone, originalEndTimeZone) and so must a write of the event.
    flight = {
        **copy.deepcopy(CREATED),
        "start": {"dateTime": "2024-06-03T10:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2024-06-03T18:30:00.0000000", "timeZone": "UTC"},
        "originalStartTimeZone": "Romance Standard Time",
        "originalEndTimeZone": "Eastern Standard Time",
    }
    event = parse_event(flight)
    assert event.time_zone == "Europe/Paris"
    assert event.end_time_zone == "America/New_York"
    body = event_body(event)
    assert body["start"] == {"dateTime": "2024-06-03T12:00:00", "timeZone": "Romance Standard Time"}
    assert body["end"] == {"dateTime": "2024-06-03T14:30:00", "timeZone": "Eastern Standard Time"}
    echoed = parse_event({**body, "id": "X", "originalStartTimeZone": "Romance Standard Time",
                          "originalEndTimeZone": "Eastern Standard Time"})  # fmt: skip
    assert (echoed.start, echoed.end, echoed.end_time_zone) == (
        event.start, event.end, "America/New_York"
    )  # fmt: skip
    # The same zone at both ends (the usual case) is not repeated.
    assert parse_event(copy.deepcopy(MASTER)).end_time_zone == ""


def test_event_body_all_day_is_midnight_in_one_zone():
    event = make_event(
        is_all_day=True,
        start=None,
        end=None,
        start_date=date(2024, 2, 6),
        end_date=date(2024, 2, 7),
        time_zone="Pacific/Auckland",
    )
    body = event_body(event)
    assert body["isAllDay"] is True
    assert body["start"] == {
        "dateTime": "2024-02-06T00:00:00",
        "timeZone": "New Zealand Standard Time",
    }
    assert body["end"] == {
        "dateTime": "2024-02-07T00:00:00",
        "timeZone": "New Zealand Standard Time",
    }
    back = parse_event({**body, "id": "X", "originalStartTimeZone": "New Zealand Standard Time"})
    assert (back.start_date, back.end_date) == (date(2024, 2, 6), date(2024, 2, 7))


def test_event_body_zone_without_windows_name_is_sent_in_utc(monkeypatch):
    from m365sync.graph import calendar

    monkeypatch.setattr(calendar, "graph_zone_name", lambda name: None)
    body = event_body(make_event())
    assert body["start"] == {"dateTime": "2024-03-31T08:00:00", "timeZone": "UTC"}


def test_recurrence_json_sends_only_the_fields_each_pattern_uses():
    start = date(2024, 1, 2)
    weekly = Recurrence(
        "weekly", date(2024, 1, 1), 2, ("Monday", "tuesday"), 0, 0, "Sunday", "first"
    )
    assert recurrence_json(weekly, start) == {
        "pattern": {
            "type": "weekly",
            "interval": 2,
            "daysOfWeek": ["monday", "tuesday"],
            "firstDayOfWeek": "sunday",
        },
        "range": {"type": "noEnd", "startDate": "2024-01-02"},
    }
    yearly = Recurrence(
        "absoluteYearly",
        start,
        day_of_month=15,
        month=4,
        range_type="numbered",
        number_of_occurrences=5,
    )
    assert recurrence_json(yearly, start) == {
        "pattern": {"type": "absoluteYearly", "interval": 1, "dayOfMonth": 15, "month": 4},
        "range": {"type": "numbered", "startDate": "2024-01-02", "numberOfOccurrences": 5},
    }
    relative = Recurrence(
        "relativeMonthly",
        start,
        days_of_week=("thursday",),
        index="second",
        range_type="endDate",
        end_date=date(2024, 12, 31),
        time_zone="Europe/Berlin",
    )
    assert recurrence_json(relative, start) == {
        "pattern": {
            "type": "relativeMonthly",
            "interval": 1,
            "daysOfWeek": ["thursday"],
            "index": "second",
        },
        "range": {
            "type": "endDate",
            "startDate": "2024-01-02",
            "endDate": "2024-12-31",
            "recurrenceTimeZone": "W. Europe Standard Time",
        },
    }
    assert recurrence_json(Recurrence("daily", start, 3), start)["pattern"] == {
        "type": "daily",
        "interval": 3,
    }
    with pytest.raises(ValueError, match="unknown recurrence pattern"):
        recurrence_json(Recurrence("hourly", start), start)
    with pytest.raises(ValueError, match="needs an end date"):
        recurrence_json(Recurrence("daily", start, range_type="endDate"), start)


def test_event_body_recurrence_start_date_is_the_start_day_in_the_event_zone():
    # 23:30 UTC on 1 January is 12:30 on 2 January in Auckland: Graph wants 2024-01-02
    series = make_event(
        event_type=EventType.SERIES_MASTER,
        start=utc(2024, 1, 1, 23, 30),
        end=utc(2024, 1, 2, 0, 30),
        time_zone="Pacific/Auckland",
        recurrence=Recurrence("weekly", date(2024, 1, 1), days_of_week=("tuesday",)),
    )
    assert event_body(series)["recurrence"]["range"]["startDate"] == "2024-01-02"
    occurrence = make_event(event_type=EventType.OCCURRENCE, recurrence=series.recurrence)
    assert "recurrence" not in event_body(occurrence)


def test_documented_recurrence_round_trips_to_what_was_posted():
    """The docs' example 3 request body, from the read-back it produced."""
    recurrence = parse_recurrence(MASTER["recurrence"])
    assert recurrence_json(recurrence, date(2017, 9, 4)) == {
        "pattern": {
            "type": "weekly",
            "interval": 1,
            "daysOfWeek": ["monday"],
            "firstDayOfWeek": "sunday",
        },
        "range": {
            "type": "endDate",
            "startDate": "2017-09-04",
            "endDate": "2017-12-31",
            "recurrenceTimeZone": "Pacific Standard Time",
        },
    }
