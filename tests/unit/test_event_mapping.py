"""The Odoo event <-> Outlook event mapping (`sync.event_mapping`): pure rules, both ways."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m365sync.domain import (
    CalendarEvent,
    EventType,
    Sensitivity,
    ShowAs,
    StoredEvent,
)
from m365sync.sync.event_mapping import (
    KEPT_DETAILS,
    OdooEvent,
    PushShape,
    SeriesOperation,
    event_zone,
    odoo_all_day,
    odoo_kept_values,
    odoo_privacy,
    odoo_show_as,
    odoo_subject,
    odoo_times,
    odoo_values,
    outlook_all_day,
    outlook_event_type,
    outlook_fields,
    outlook_sensitivity,
    outlook_show_as,
    push_shape,
    series_operation,
)

START = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
TODAY = date(2026, 12, 6)
ODOO_PRIVACY = st.sampled_from([None, "public", "private", "confidential"])
STORED_SENSITIVITY = st.sampled_from([None, *[s.value for s in Sensitivity], "bogus"])
STORED_SHOW_AS = st.sampled_from([None, *[s.value for s in ShowAs], "bogus"])
DAYS = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1))


def item(**changes) -> CalendarEvent:
    values = {
        "graph_id": "g1",
        "ical_uid": "uid-1",
        "event_type": EventType.SINGLE,
        "subject": "Quarterly review",
        "start": START,
        "end": START + timedelta(hours=1),
        "time_zone": "Europe/Paris",
        "body_html": "<p>Agenda</p>",
        "location": "Room 4",
        "online_meeting_url": "https://teams.example/join/1",
        "is_online_meeting": True,
    }
    return CalendarEvent(**(values | changes))


# --- privacy <-> sensitivity -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("privacy", "stored", "expected"),
    [
        ("public", None, Sensitivity.NORMAL),
        ("private", None, Sensitivity.PRIVATE),
        # Odoo's "Only internal users" keeps the meeting from outsiders: Outlook's private.
        ("confidential", None, Sensitivity.PRIVATE),
        ("confidential", "confidential", Sensitivity.CONFIDENTIAL),  # Outlook's own stays
        ("private", "personal", Sensitivity.PERSONAL),
        ("public", "private", Sensitivity.NORMAL),  # made public in Odoo
        ("public", "personal", Sensitivity.PERSONAL),
        ("public", "bogus", Sensitivity.NORMAL),
    ],
)
def test_odoo_privacy_goes_to_outlook_as_its_sensitivity(privacy, stored, expected) -> None:
    assert outlook_sensitivity(privacy, stored) is expected


def test_an_event_without_privacy_takes_its_organizers_default() -> None:
    assert outlook_sensitivity(None, None, "private") is Sensitivity.PRIVATE
    assert outlook_sensitivity(None, None, "public") is Sensitivity.NORMAL
    assert outlook_sensitivity("public", None, "private") is Sensitivity.NORMAL


@given(ODOO_PRIVACY, STORED_SENSITIVITY, ODOO_PRIVACY)
def test_private_in_odoo_is_never_readable_by_all_in_outlook(privacy, stored, default) -> None:
    sensitivity = outlook_sensitivity(privacy, stored, default)
    is_private = (privacy or default) in ("private", "confidential")
    assert (sensitivity is not Sensitivity.NORMAL) or not is_private
    if not is_private:
        assert sensitivity in (Sensitivity.NORMAL, Sensitivity.PERSONAL)


@given(STORED_SENSITIVITY)
def test_a_round_trip_keeps_private_private(sensitivity) -> None:
    """Outlook -> Odoo -> Outlook: a private or confidential event comes back private (or as
    it was), a normal one normal."""
    privacy = odoo_privacy(sensitivity)
    back = outlook_sensitivity(privacy, sensitivity)
    if sensitivity in ("private", "confidential"):
        assert back.value == sensitivity
    else:
        assert back in (Sensitivity.NORMAL, Sensitivity.PERSONAL)


def test_outlook_private_and_confidential_are_odoos_private() -> None:
    assert [odoo_privacy(s) for s in ("private", "confidential", "personal", "normal", None)] == [
        "private",
        "private",
        "public",
        "public",
        "public",
    ]
    # ...and Odoo's "Only internal users" stays when Outlook says private (Outlook shows it so).
    assert odoo_kept_values({"privacy": "private"}) == {"privacy": ["confidential"]}
    assert odoo_kept_values({"privacy": "public"}) == {}
    assert odoo_kept_values({}) == {}


# --- show-as ---------------------------------------------------------------------------------


@given(st.sampled_from([None, "free", "busy"]), STORED_SHOW_AS)
def test_show_as_goes_to_outlook(show_as, stored) -> None:
    mapped = outlook_show_as(show_as, stored)
    assert (mapped is ShowAs.FREE) == (show_as == "free")
    if show_as != "free" and stored in ("tentative", "oof", "workingElsewhere", "unknown"):
        assert mapped.value == stored  # a busy Odoo event keeps Outlook's finer state
    # And back: Odoo knows free and busy only.
    assert odoo_show_as(mapped) == ("free" if show_as == "free" else "busy")


# --- all-day ---------------------------------------------------------------------------------


@given(DAYS, st.integers(min_value=-3, max_value=30))
def test_all_day_days_round_trip(first, length) -> None:
    """Odoo's last day is inclusive, Outlook's end date exclusive; a stop before the start is
    the start's day; the mapping both ways is the identity on valid spans."""
    last = first + timedelta(days=length)
    start, end = outlook_all_day(first, last)
    assert start == first
    assert end == max(last, first) + timedelta(days=1)
    assert odoo_all_day(start, end, None, today=TODAY) == (first, max(last, first))


def test_an_all_day_event_without_dates_falls_back_to_its_start_then_today() -> None:
    assert odoo_all_day(None, None, START, today=TODAY) == (START.date(), START.date())
    assert odoo_all_day(None, None, None, today=TODAY) == (TODAY, TODAY)
    day = date(2026, 12, 8)
    assert odoo_all_day(day, day, None, today=TODAY) == (day, day)  # an empty span: one day


def test_a_timed_event_without_end_lasts_an_hour_and_never_ends_before_it_starts() -> None:
    assert odoo_times(START, None) == (START, START + timedelta(hours=1))
    assert odoo_times(START, START - timedelta(hours=2)) == (START, START)
    assert odoo_times(None, None) == (None, None)


# --- time zones ------------------------------------------------------------------------------


def test_the_first_known_zone_wins_else_utc() -> None:
    assert event_zone("Europe/Paris", "America/New_York") == "Europe/Paris"
    assert event_zone(None, "", "Mars/Olympus_Mons", "America/New_York") == "America/New_York"
    assert event_zone("W. Europe Standard Time") == "Europe/Berlin"  # a Windows name
    assert event_zone("Mars/Olympus_Mons", None) == "UTC"
    assert event_zone() == "UTC"


@given(st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=4))
def test_any_zone_names_give_a_zone(names) -> None:
    assert event_zone(*names)  # never raises, never empty


# --- what is pushed, and as what ------------------------------------------------------------


@pytest.mark.parametrize(
    ("odoo", "shape", "kind"),
    [
        (OdooEvent(), PushShape.AS_STORED, EventType.SINGLE),
        (OdooEvent(is_series_master=True), PushShape.AS_STORED, EventType.SERIES_MASTER),
        # The base event of a series made in Odoo is pushed as the whole series...
        (OdooEvent(in_series=True, is_series_base=True), PushShape.SERIES, EventType.SERIES_MASTER),
        # ...its other occurrences are Outlook's to make...
        (OdooEvent(in_series=True), PushShape.SKIP, EventType.SINGLE),
        # ...and once Outlook holds the series (a master), none is pushed on its own.
        (
            OdooEvent(in_series=True, is_series_base=True, series_has_master=True),
            PushShape.SKIP,
            EventType.SINGLE,
        ),
        # A bound occurrence (Outlook's copy) is pushed as what Outlook said it is.
        (
            OdooEvent(in_series=True, series_has_master=True, bound=True, outlook_type="exception"),
            PushShape.AS_STORED,
            EventType.EXCEPTION,
        ),
        (OdooEvent(bound=True, outlook_type="seriesMaster"), PushShape.AS_STORED, EventType.SINGLE),
    ],
)
def test_which_odoo_events_are_pushed_and_as_what(odoo, shape, kind) -> None:
    assert push_shape(odoo) is shape
    assert outlook_event_type(odoo) is kind


def test_outlook_fields_of_a_timed_event() -> None:
    odoo = OdooEvent(
        privacy="confidential",
        show_as="busy",
        outlook_show_as="tentative",
        start=START,
        stop=START + timedelta(hours=1),
        time_zone=None,
        recurrence_zone="Not/AZone",
        organizer_zone="Europe/Vienna",
    )
    assert outlook_fields(odoo) == {
        "event_type": EventType.SINGLE,
        "time_zone": "Europe/Vienna",
        "is_all_day": False,
        "sensitivity": Sensitivity.PRIVATE,
        "show_as": ShowAs.TENTATIVE,
        "start": START,
        "end": START + timedelta(hours=1),
        "start_date": None,
        "end_date": None,
    }


def test_outlook_fields_of_an_all_day_event() -> None:
    odoo = OdooEvent(
        all_day=True,
        start=datetime(2026, 12, 8, 8, tzinfo=UTC),
        stop=datetime(2026, 12, 9, 18, tzinfo=UTC),
        start_date=date(2026, 12, 8),
        stop_date=date(2026, 12, 9),
        show_as="free",
    )
    fields = outlook_fields(odoo)
    assert (fields["start"], fields["end"]) == (None, None)
    assert (fields["start_date"], fields["end_date"]) == (date(2026, 12, 8), date(2026, 12, 10))
    assert (fields["show_as"], fields["time_zone"]) == (ShowAs.FREE, "UTC")
    # Without Odoo's dates, the start and stop's days.
    fields = outlook_fields(OdooEvent(all_day=True, start=odoo.start, stop=odoo.stop))
    assert (fields["start_date"], fields["end_date"]) == (date(2026, 12, 8), date(2026, 12, 10))


@pytest.mark.parametrize(
    ("deleted", "in_outlook", "reshapes", "operation"),
    [
        (True, True, False, SeriesOperation.DELETE),  # "all events" deleted or archived
        (False, False, True, SeriesOperation.CREATE),  # "this and following": the new series
        (False, True, True, SeriesOperation.PATCH_RESHAPED),  # times or pattern, or trimmed
        (False, True, False, SeriesOperation.PATCH_DETAILS),  # details: exceptions stay
    ],
)
def test_a_series_change_becomes_one_outlook_operation(
    deleted, in_outlook, reshapes, operation
) -> None:
    assert (
        series_operation(deleted=deleted, in_outlook=in_outlook, reshapes_series=reshapes)
        is operation
    )


# --- Outlook -> Odoo -------------------------------------------------------------------------


def test_subject_or_its_placeholder() -> None:
    assert odoo_subject("Review", "private") == ("Review", None)
    assert odoo_subject(None, "private")[1].value == "busy"
    assert odoo_subject("", "confidential")[1].value == "busy"
    assert odoo_subject(None, "normal")[1].value == "no_subject"


def test_odoo_values_of_a_timed_event() -> None:
    values = odoo_values(StoredEvent(item(), []), today=TODAY)
    assert values["name"] == "Quarterly review" and values["subject_placeholder"] is None
    assert (values["privacy"], values["show_as"]) == ("public", "busy")
    assert (values["allday"], values["start"], values["stop"]) == (
        False,
        START,
        START + timedelta(hours=1),
    )
    assert (values["m365_time_zone"], values["m365_sensitivity"]) == ("Europe/Paris", "normal")
    assert (values["active"], values["m365_is_series_master"]) == (True, False)
    assert values["m365_online_meeting_url"] == "https://teams.example/join/1"


def test_odoo_values_of_an_all_day_cancelled_master() -> None:
    master = item(
        event_type=EventType.SERIES_MASTER,
        is_all_day=True,
        start=None,
        end=None,
        start_date=date(2026, 12, 8),
        end_date=date(2026, 12, 9),
        is_cancelled=True,
        show_as=ShowAs.FREE,
    )
    values = odoo_values(StoredEvent(master, []), today=TODAY)
    assert values["allday"] is True
    assert values["start"] == datetime(2026, 12, 8, 8, tzinfo=UTC)
    assert values["stop"] == datetime(2026, 12, 8, 18, tzinfo=UTC)  # Odoo: the last day
    assert (values["active"], values["m365_is_series_master"], values["show_as"]) == (
        False,
        True,
        "free",
    )


def test_a_private_copy_of_an_odoo_event_keeps_its_details() -> None:
    """Busy time landing on an Odoo event (``keep_details``): its times, privacy and show-as
    are written, never its name, description, location or online meeting."""
    private = item(subject=None, body_html=None, location=None, sensitivity=Sensitivity.PRIVATE)
    values = odoo_values(StoredEvent(private, [], keep_details=True, crm_event_id=7), today=TODAY)
    assert not (KEPT_DETAILS | {"subject_placeholder"}) & set(values)
    assert (values["privacy"], values["start"]) == ("private", START)
    # Whatever the flag says, an event not in Odoo has nothing to keep: busy time, named.
    values = odoo_values(StoredEvent(private, [], keep_details=True), today=TODAY)
    assert (values["name"], values["subject_placeholder"]) == (None, "busy")
    # Not yet in Odoo: busy time named "Busy".
    values = odoo_values(StoredEvent(private, []), today=TODAY)
    assert (values["name"], values["subject_placeholder"]) == (None, "busy")
    assert values["description"] is None and values["location"] is None


@given(
    st.sampled_from(list(Sensitivity)),
    st.sampled_from(list(ShowAs)),
    st.booleans(),
    st.booleans(),
)
def test_odoo_values_never_carry_details_they_must_keep(sensitivity, show_as, keep, all_day):
    event = item(
        sensitivity=sensitivity,
        show_as=show_as,
        is_all_day=all_day,
        start_date=date(2026, 12, 8) if all_day else None,
        end_date=date(2026, 12, 9) if all_day else None,
    )
    stored = StoredEvent(event, [], keep_details=keep, crm_event_id=7 if keep else None)
    values = odoo_values(stored, today=TODAY)
    assert bool(KEPT_DETAILS & set(values)) is not keep
    private = sensitivity in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL)
    assert values["privacy"] == ("private" if private else "public")
    assert values["stop"] >= values["start"]
