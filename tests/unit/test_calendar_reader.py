"""CalendarReader and CalendarWriter over `responses`: headers, links, batching, retries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from responses import matchers

from m365sync.errors import InsufficientPermissions, NotFound, Transient
from m365sync.graph.calendar import (
    MAX_WINDOW,
    CalendarReader,
    CalendarWriter,
    check_window,
)
from m365sync.graph.client import GraphClient
from m365sync.graph.transport import make_session

BASE = "https://graph.example.test/v1.0"
READ_PREFER = 'outlook.timezone="UTC", odata.maxpagesize=50, IdType="ImmutableId"'
WRITE_PREFER = 'outlook.timezone="UTC", IdType="ImmutableId"'
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 1, tzinfo=UTC)


class Tokens:
    def access_token(self, force_refresh: bool = False) -> str:
        return "token"


class Sleeper:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(sleeper: Sleeper | None = None) -> GraphClient:
    return GraphClient(
        make_session(None, user_agent="m365sync-test"),
        BASE,
        Tokens(),
        sleep=sleeper or Sleeper(),
        clock=lambda: 1_750_000_000.0,
        jitter=lambda: 0.5,
    )


def event_json(event_id, start="2024-06-03T09:00:00.0000000", minutes=30, **extra):
    begin = datetime.fromisoformat(start)
    item = {
        "id": event_id,
        "type": "singleInstance",
        "subject": f"Event {event_id}",
        "changeKey": f"ck-{event_id}",
        "originalStartTimeZone": "W. Europe Standard Time",
        "start": {"dateTime": start, "timeZone": "UTC"},
        "end": {
            "dateTime": (begin + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
            "timeZone": "UTC",
        },
    }
    item.update(extra)
    return item


def prefer_of(call) -> str:
    return call.request.headers["Prefer"]


# --- window -------------------------------------------------------------------------------


def test_window_limits():
    check_window(START, START + MAX_WINDOW)  # exactly 1825 days is allowed
    with pytest.raises(ValueError, match="1825 days"):
        check_window(START, START + MAX_WINDOW + timedelta(seconds=1))
    with pytest.raises(ValueError, match="1825 days"):
        # five calendar years with a leap day: 1827 days (docs-contrib#6321)
        check_window(datetime(2019, 11, 12, tzinfo=UTC), datetime(2024, 11, 12, tzinfo=UTC))
    with pytest.raises(ValueError, match="end after"):
        check_window(START, START)
    with pytest.raises(ValueError, match="aware"):
        check_window(datetime(2024, 1, 1), END)


@responses.activate
def test_an_oversized_window_sends_nothing():
    reader = CalendarReader(client())
    with pytest.raises(ValueError, match="refuses"):
        list(reader.pages(window_start=START, window_end=START + timedelta(days=2000)))
    assert len(responses.calls) == 0


def test_page_size_must_be_positive():
    with pytest.raises(ValueError):
        CalendarReader(client(), page_size=0)


# --- delta pages --------------------------------------------------------------------------


@responses.activate
def test_delta_round_query_only_first_prefer_on_every_request():
    second = f"{BASE}/me/calendarView/delta?$skiptoken=R0usmcCM996atia_s"
    third = f"{BASE}/me/calendarView/delta?$skiptoken=R0usmci39OQxqJrxK4"
    final = f"{BASE}/me/calendarView/delta?$deltatoken=R0usmcMDNGg0J1E"
    responses.get(
        f"{BASE}/me/calendarView/delta",
        json={"value": [event_json("A"), event_json("B")], "@odata.nextLink": second},
        match=[
            matchers.query_param_matcher(
                {"startDateTime": "2024-01-01T00:00:00Z", "endDateTime": "2026-01-01T00:00:00Z"}
            )
        ],
    )
    responses.get(second, json={"value": [], "@odata.nextLink": third})
    responses.get(
        third,
        json={
            "value": [{"id": "A", "@removed": {"reason": "deleted"}}, event_json("C")],
            "@odata.deltaLink": final,
        },
    )
    pages = list(CalendarReader(client(), page_size=50).pages(window_start=START, window_end=END))
    assert [[e.graph_id for e in p.events] for p in pages] == [["A", "B"], [], ["C"]]
    assert pages[2].removed_ids == ["A"] and pages[2].delta_link == final
    assert pages[0].next_link == second and pages[0].delta_link is None
    assert [prefer_of(c) for c in responses.calls] == [READ_PREFER] * 3
    first_query = parse_qs(urlsplit(responses.calls[0].request.url).query)
    assert first_query == {
        "startDateTime": ["2024-01-01T00:00:00Z"],
        "endDateTime": ["2026-01-01T00:00:00Z"],
    }
    assert responses.calls[1].request.url == second  # verbatim, no window added
    assert responses.calls[2].request.url == third
    assert all("startDateTime" not in c.request.url for c in responses.calls[1:])


@responses.activate
def test_resume_link_is_followed_verbatim():
    link = f"{BASE}/me/calendarView/delta?$deltatoken=abc%2Bdef"
    responses.get(link, json={"value": [event_json("Z")], "@odata.deltaLink": link})
    reader = CalendarReader(client(), page_size=50)
    pages = list(reader.pages(window_start=START, window_end=END, resume_link=link))
    assert pages[0].events[0].graph_id == "Z"
    assert responses.calls[0].request.url == link
    assert prefer_of(responses.calls[0]) == READ_PREFER


@responses.activate
def test_a_bad_item_is_rejected_and_the_round_goes_on():
    bad = event_json("BAD")
    bad["start"]["timeZone"] = "Mars Standard Time"
    responses.get(
        f"{BASE}/me/calendarView/delta",
        json={"value": [bad, event_json("OK")], "@odata.deltaLink": f"{BASE}/d"},
    )
    (page,) = CalendarReader(client()).pages(window_start=START, window_end=END)
    assert [e.graph_id for e in page.events] == ["OK"]
    assert [r.graph_id for r in page.rejected] == ["BAD"]


# --- masters and instances ----------------------------------------------------------------


@responses.activate
def test_masters_through_batch_with_404_left_out():
    master = event_json(
        "M/1+",
        type="seriesMaster",
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
            "range": {"type": "noEnd", "startDate": "2024-06-03"},
        },
    )

    def answer(request):
        sent = json.loads(request.body)["requests"]
        out = []
        for sub in sent:
            if sub["url"] == "/me/events/M%2F1%2B":
                out.append({"id": sub["id"], "status": 200, "body": master})
            else:
                out.append(
                    {
                        "id": sub["id"],
                        "status": 404,
                        "body": {"error": {"code": "ErrorItemNotFound", "message": "gone"}},
                    }
                )
        return 200, {}, json.dumps({"responses": out})

    responses.add_callback(responses.POST, f"{BASE}/$batch", callback=answer)
    found = CalendarReader(client()).masters(["M/1+", "GONE", "M/1+"])
    assert list(found) == ["M/1+"]
    assert found["M/1+"].recurrence.days_of_week == ("monday",)
    sent = json.loads(responses.calls[0].request.body)["requests"]
    assert len(sent) == 2  # duplicates fetched once
    assert all(sub["headers"] == {"Prefer": WRITE_PREFER} for sub in sent)


@responses.activate
def test_masters_other_failures_raise():
    def answer(request):
        sent = json.loads(request.body)["requests"]
        body = {"error": {"code": "ErrorAccessDenied", "message": "no"}}
        return (
            200,
            {},
            json.dumps({"responses": [{"id": sent[0]["id"], "status": 403, "body": body}]}),
        )

    responses.add_callback(responses.POST, f"{BASE}/$batch", callback=answer)
    with pytest.raises(InsufficientPermissions):
        CalendarReader(client()).masters(["M"])
    assert CalendarReader(client()).masters([]) == {}


@responses.activate
def test_instances_query_prefer_and_paging():
    nxt = f"{BASE}/me/events/M/instances?$skiptoken=2"
    responses.get(
        f"{BASE}/me/events/M/instances",
        json={
            "value": [event_json("I1", type="occurrence", seriesMasterId="M")],
            "@odata.nextLink": nxt,
        },
        match=[
            matchers.query_param_matcher(
                {"startDateTime": "2024-06-02T09:00:00Z", "endDateTime": "2024-06-04T09:00:00Z"}
            )
        ],
    )
    responses.get(nxt, json={"value": [event_json("I2", type="exception"), {"id": "broken"}]})
    found = CalendarReader(client(), page_size=50).instances(
        "M", datetime(2024, 6, 2, 9, tzinfo=UTC), datetime(2024, 6, 4, 9, tzinfo=UTC)
    )
    assert [e.graph_id for e in found] == ["I1", "I2"]
    assert [prefer_of(c) for c in responses.calls] == [READ_PREFER] * 2


# --- writer -------------------------------------------------------------------------------


def sample_event():
    from m365sync.graph.calendar import parse_event

    return parse_event(event_json("local", start="2024-06-03T09:00:00"))


@responses.activate
def test_create_is_retried_after_503_with_the_same_transaction_id():
    sleeper = Sleeper()
    created = event_json("NEW", transactionId="tx-42")
    responses.post(
        f"{BASE}/me/events",
        status=503,
        headers={"Retry-After": "0.5"},
        json={"error": {"code": "UnknownError", "message": ""}},
    )
    responses.post(f"{BASE}/me/events", status=201, json=created)
    result = CalendarWriter(client(sleeper)).create(sample_event(), transaction_id="tx-42")
    assert result.graph_id == "NEW" and result.transaction_id == "tx-42"
    assert len(responses.calls) == 2
    bodies = [json.loads(c.request.body) for c in responses.calls]
    assert [b["transactionId"] for b in bodies] == ["tx-42", "tx-42"]
    assert bodies[0] == bodies[1]
    assert sleeper.waits == [0.5]
    assert all(prefer_of(c) == WRITE_PREFER for c in responses.calls)


def test_create_needs_a_transaction_id():
    with pytest.raises(ValueError, match="transaction id"):
        CalendarWriter(client()).create(sample_event(), transaction_id="")


@responses.activate
def test_update_returns_the_new_change_key_and_is_not_retried():
    responses.patch(
        f"{BASE}/me/events/E1",
        json=event_json("E1", changeKey="ck-2"),
        match=[matchers.json_params_matcher({"subject": "Moved"})],
    )
    writer = CalendarWriter(client())
    assert writer.update("E1", {"subject": "Moved"}).change_key == "ck-2"
    assert prefer_of(responses.calls[0]) == WRITE_PREFER

    responses.patch(f"{BASE}/me/events/E2", status=503, json={"error": {"code": "x"}})
    with pytest.raises(Transient):
        writer.update("E2", {"subject": "x"})
    assert len([c for c in responses.calls if c.request.url.endswith("/E2")]) == 1


@responses.activate
@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [(204, None, True), (404, "ErrorItemNotFound", False), (410, "Gone", False)],
)
def test_delete_treats_already_gone_as_success(status, code, expected):
    body = {"error": {"code": code, "message": ""}} if code else None
    responses.delete(f"{BASE}/me/events/E1", status=status, json=body)
    assert CalendarWriter(client()).delete("E1") is expected
    assert prefer_of(responses.calls[0]) == WRITE_PREFER


@responses.activate
def test_delete_403_is_not_taken_for_gone():
    responses.delete(
        f"{BASE}/me/events/E1",
        status=403,
        json={"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}},
    )
    with pytest.raises(InsufficientPermissions):
        CalendarWriter(client()).delete("E1")


SLOT = datetime(2024, 6, 10, 9, 0, tzinfo=UTC)


def instances_answer(*items):
    responses.get(
        f"{BASE}/me/events/M/instances",
        json={"value": list(items)},
        match=[
            matchers.query_param_matcher(
                {"startDateTime": "2024-06-09T09:00:00Z", "endDateTime": "2024-06-11T09:00:00Z"}
            )
        ],
    )


@responses.activate
def test_cancel_occurrence_deletes_the_instance_filling_the_slot():
    instances_answer(
        event_json(
            "other",
            "2024-06-10T15:00:00",
            type="exception",
            seriesMasterId="M",
            originalStart="2024-06-09T09:00:00Z",
        ),
        event_json(
            "mine",
            "2024-06-10T09:00:00",
            type="occurrence",
            seriesMasterId="M",
            originalStart="2024-06-10T09:00:00Z",
        ),
    )
    responses.delete(f"{BASE}/me/events/mine", status=204)
    assert CalendarWriter(client()).cancel_occurrence("M", SLOT) is True
    assert [c.request.method for c in responses.calls] == ["GET", "DELETE"]


@responses.activate
def test_cancel_occurrence_that_is_no_longer_listed_is_done():
    instances_answer()
    assert CalendarWriter(client()).cancel_occurrence("M", SLOT) is False
    assert [c.request.method for c in responses.calls] == ["GET"]


@responses.activate
def test_update_occurrence_patches_the_instance_into_an_exception():
    # an occurrence without originalStart is matched on its start
    instances_answer(
        event_json("occ", "2024-06-10T09:00:00", type="occurrence", seriesMasterId="M")
    )
    responses.patch(
        f"{BASE}/me/events/occ",
        json=event_json(
            "occ", "2024-06-10T10:00:00", type="exception", seriesMasterId="M", changeKey="ck-9"
        ),
    )
    result = CalendarWriter(client()).update_occurrence("M", SLOT, {"subject": "Later"})
    assert result.event_type.value == "exception" and result.change_key == "ck-9"


@responses.activate
def test_update_occurrence_not_found():
    instances_answer()
    with pytest.raises(NotFound, match="no occurrence"):
        CalendarWriter(client()).update_occurrence("M", SLOT, {"subject": "x"})
