"""The shared table of a partner's meetings (also read by the addon's Odoo tests, which check
its Odoo domain against it): the daemon's one copy of the rule (`m365sync.sync.meetings`),
directly and as the embedded store applies it (`upcoming_events_for_partner`)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from m365sync.crm.sqlite import SqliteGateway
from m365sync.domain import CalendarEvent, EventLink, EventType, Recurrence, ResponseStatus
from m365sync.sync.meetings import is_meeting, is_upcoming

TABLE = json.loads(
    (
        Path(__file__).resolve().parents[2] / "addon/crm_microsoft365/tests/meeting_cases.json"
    ).read_text(encoding="utf-8")
)
SINCE = datetime.fromisoformat(TABLE["since"])
CASES: list[dict[str, Any]] = TABLE["cases"]
LONG_AGO = SINCE - timedelta(days=3650)


def _event(case: dict[str, Any]) -> CalendarEvent:
    master = case.get("series_master", False)
    if "all_day" in case:
        first, last = (date.fromisoformat(day) for day in case["all_day"])
        start = end = None
        start_date, end_date = first, last + timedelta(days=1)  # Outlook's exclusive end
    else:
        start, end = datetime.fromisoformat(case["start"]), datetime.fromisoformat(case["end"])
        start_date = end_date = None
    return CalendarEvent(
        graph_id="",
        ical_uid=None,
        event_type=EventType.SERIES_MASTER if master else EventType.SINGLE,
        subject=case["name"],
        start=start,
        end=end,
        is_all_day="all_day" in case,
        start_date=start_date,
        end_date=end_date,
        is_cancelled=case.get("cancelled", False),
        recurrence=(
            Recurrence("weekly", SINCE.date(), days_of_week=("monday",), range_type="noEnd")
            if master
            else None
        ),
    )


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_the_shared_case_by_the_rule(case: dict[str, Any]) -> None:
    item = _event(case)
    flags = {
        "series_master": case.get("series_master", False),
        "deleted": case.get("deleted", False),
        "cancelled": case.get("cancelled", False),
    }
    attends = case["who"] != "stranger"  # who attends is the stores' join, tested below
    assert (is_meeting(**flags) and attends) == case["meeting"]
    upcoming = is_upcoming(**flags, end=item.end, end_date=item.end_date, since=SINCE)
    assert (upcoming and attends) == case["upcoming"]


def test_the_shared_cases_in_the_embedded_store(tmp_path: Path) -> None:
    store = SqliteGateway(tmp_path / "meetings.sqlite3")
    try:
        company = store.add_partner("Fabrikam", is_company=True)
        anna = store.add_partner("Anna", email="anna@fabrikam.example", parent_id=company.id)
        stranger = store.add_partner("Stranger", email="someone@elsewhere.example")
        for case in CASES:
            partner, matched = {
                "contact": (anna.id, None),
                "company": (company.id, None),
                "work_domain": (None, company.id),
                "stranger": (stranger.id, None),
            }[case["who"]]
            people = [
                EventLink(
                    "required", "x@fabrikam.example", "", ResponseStatus.NONE, partner, matched
                )
            ]
            event_id = store.crm_create_event(None, _event(case), people)
            if case.get("deleted"):
                store.crm_delete_event(event_id)

        def shown(since: datetime) -> list[str]:
            found = store.upcoming_events_for_partner(company.id, since=since, limit=100)
            return sorted(summary.subject for summary in found)

        assert shown(SINCE) == sorted(case["name"] for case in CASES if case["upcoming"])
        assert shown(LONG_AGO) == sorted(case["name"] for case in CASES if case["meeting"])
    finally:
        store.close()
