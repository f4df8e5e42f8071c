"""The calendar reader and writer over real HTTPS against the emulator's calendar endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from m365sync.domain import CalendarEvent, EventType, Sensitivity
from m365sync.graph.calendar import CalendarReader, CalendarWriter
from m365sync.service.connect import connect_account


@pytest.fixture
def account(stack):
    return connect_account(stack.runtime, browser="follow")


def window() -> tuple[datetime, datetime]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=60), today + timedelta(days=60)


def full_round(reader: CalendarReader, resume: str | None = None):
    start, end = window()
    events: dict[str, CalendarEvent] = {}
    removed: list[str] = []
    delta_link = None
    for page in reader.pages(window_start=start, window_end=end, resume_link=resume):
        assert page.rejected == []
        events.update({e.graph_id: e for e in page.events})
        removed.extend(page.removed_ids)
        delta_link = page.delta_link
    assert delta_link is not None
    return events, removed, delta_link


def by_subject(events: dict[str, CalendarEvent], subject: str) -> list[CalendarEvent]:
    return [e for e in events.values() if e.subject == subject]


def test_seeded_calendar_reads_with_zones_all_day_series_and_privacy(stack, account):
    graph = stack.runtime.graph_for(account)
    reader = CalendarReader(graph, page_size=7)
    stack.emulator.request_log.clear()
    events, _removed, _link = full_round(reader)

    (berlin,) = by_subject(events, "Call with Bäckerei Müller")
    assert berlin.time_zone == "Europe/Berlin" and berlin.start.tzinfo is not None
    (show,) = by_subject(events, "Trade show - Contoso booth")
    assert show.is_all_day and show.start is None
    assert show.end_date - show.start_date == timedelta(days=2)
    (doctor,) = by_subject(events, "Doctor appointment")
    assert doctor.sensitivity is Sensitivity.PRIVATE
    standups = by_subject(events, "Weekly marketing standup")
    assert standups and all(e.event_type is EventType.OCCURRENCE for e in standups)

    master_id = standups[0].series_master_id
    masters = reader.masters([master_id, master_id])
    assert masters[master_id].recurrence.pattern_type == "weekly"
    assert set(masters[master_id].recurrence.days_of_week) == {"monday", "wednesday"}

    calendar_requests = [r for r in stack.emulator.requests if r.path != "/v1.0/$batch"]
    assert calendar_requests
    assert all('IdType="ImmutableId"' in (r.prefer or "") for r in calendar_requests)
    assert all('outlook.timezone="UTC"' in (r.prefer or "") for r in calendar_requests)
    delta_requests = [r for r in calendar_requests if r.path.endswith("/calendarView/delta")]
    assert len(delta_requests) > 1  # paged at 7
    assert "startDateTime" in delta_requests[0].query
    assert all("startDateTime" not in r.query for r in delta_requests[1:])


def test_create_retried_after_503_makes_one_event_and_changes_come_back(stack, account):
    graph = stack.runtime.graph_for(account)
    reader = CalendarReader(graph, page_size=50)
    writer = CalendarWriter(graph, reader=reader)
    _events, _removed, link = full_round(reader)

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    draft = CalendarEvent(
        graph_id="",
        ical_uid=None,
        event_type=EventType.SINGLE,
        subject="Demo with Fabrikam",
        start=start,
        end=start + timedelta(minutes=45),
        time_zone="Pacific/Auckland",
    )
    stack.emulator.faults.unavailable("/me/events", times=1, retry_after="0.1", method="POST")
    created = writer.create(draft, transaction_id="crm-event-17")
    assert created.start == start and created.time_zone == "Pacific/Auckland"
    assert created.transaction_id == "crm-event-17"
    posts = [
        r for r in stack.emulator.requests if r.method == "POST" and r.path == "/v1.0/me/events"
    ]
    assert [r.status for r in posts] == [503, 201]

    events, _removed, link = full_round(reader, link)
    assert [e.graph_id for e in by_subject(events, "Demo with Fabrikam")] == [created.graph_id]

    moved = writer.update(created.graph_id, {"subject": "Demo with Fabrikam (moved)"})
    assert moved.change_key and moved.change_key != created.change_key

    assert writer.delete(created.graph_id) is True
    assert writer.delete(created.graph_id) is False  # already gone
    _events, removed, _link = full_round(reader, link)
    assert created.graph_id in removed


def test_occurrence_cancel_and_edit(stack, account):
    graph = stack.runtime.graph_for(account)
    reader = CalendarReader(graph, page_size=50)
    writer = CalendarWriter(graph, reader=reader)
    events, _removed, link = full_round(reader)
    today = datetime.now(UTC).date()
    upcoming = sorted(
        (
            e
            for e in by_subject(events, "Weekly marketing standup")
            if e.original_start and e.original_start.date() > today + timedelta(days=2)
        ),
        key=lambda e: e.original_start,
    )
    cancel, edit = upcoming[0], upcoming[1]

    assert writer.cancel_occurrence(cancel.series_master_id, cancel.original_start) is True
    assert writer.cancel_occurrence(cancel.series_master_id, cancel.original_start) is False
    assert writer.delete(cancel.graph_id) is False  # deleting a cancelled occurrence: gone
    changed = writer.update_occurrence(
        edit.series_master_id, edit.original_start, {"subject": "Standup (agenda: launch)"}
    )
    assert changed.event_type is EventType.EXCEPTION
    assert changed.original_start == edit.original_start

    events, removed, _link = full_round(reader, link)
    assert cancel.graph_id in removed
    assert [e.subject for e in events.values() if e.graph_id == changed.graph_id] == [
        "Standup (agenda: launch)"
    ]
