"""How an Odoo ``calendar.event`` maps to an Outlook event and back: the one copy of each rule.

Pure functions over plain data. The addon stores and returns Odoo's fields as they are
(`OdooEvent` outbound; it writes `odoo_values` inbound); the Odoo adapter (`crm.odoo`) calls
these functions at the wire and decides nothing itself. The embedded store keeps its events in
Outlook's terms and needs no mapping (its events go through `sync.calendar` only).

Rules held here:

- **Privacy -> sensitivity** (`outlook_sensitivity`): Odoo's private and "Only internal users"
  (confidential) both go to Outlook as private (Outlook's own privacy; an Outlook
  confidential or personal one stays as Outlook has it); a public Odoo event is never private
  in Outlook. An event without its own privacy takes its organizer's default.
- **Sensitivity -> privacy** (`odoo_privacy`): Outlook's private and confidential are Odoo's
  private; Odoo's confidential, which Outlook shows as private, stays confidential
  (`ODOO_KEPT_VALUES`); anything else is public.
- **Show-as** both ways (`outlook_show_as`, `odoo_show_as`): Odoo knows free and busy only; a
  busy Odoo event keeps Outlook's finer state (tentative, out of office...).
- **All-day end** (`outlook_all_day`, `odoo_all_day`): Odoo's last day is inclusive, Outlook's
  end date exclusive; an end before the start is the start's day.
- **Time zone** (`event_zone`): the first zone that names a real zone of the event's own, its
  recurrence's, its organizer's; else UTC (an Odoo zone Outlook cannot name must not stop the
  push).
- **Event type** (`outlook_event_type`) and **which Odoo events are pushed** (`push_shape`):
  Odoo expands its recurrences into events of their own; only the base event of a series not
  yet in Outlook is pushed (as the series), its other occurrences are Outlook's to make (they
  are bound when Outlook's copies come back, by their slot).
- **Private copies from Outlook** (`odoo_subject`, `KEPT_DETAILS`, `odoo_values`): a private
  event not yet in Odoo arrives as busy time named "Busy" (the addon translates the label: the
  one UI decision it keeps); one landing on an Odoo event (``keep_details``) leaves that event's
  name, description, location, online meeting, attendees and organizing user as Odoo has them.

Series edits ("this", "this and following", "all"): the addon records a user's edit as state on
the series' hidden master (its version, ``reshapes_series``, a tombstone, or a new base event
with no binding); `sync.calendar.plan_outbound` turns that state into Outlook operations:
a PATCH of the master (details only, or with pattern and times), a DELETE of the master, or a
create of a new series (see `series_operation`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from m365sync.domain import EventType, Sensitivity, ShowAs, StoredEvent
from m365sync.sync.timezones import UTC_NAME, UnknownTimeZone, to_iana

PRIVATE = frozenset({Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL})
# Odoo's privacy values that go to Outlook as private.
ODOO_PRIVATE = frozenset({"private", "confidential"})
# What an all-day Odoo event's start and stop hold (Odoo's own convention for all-day events).
ALL_DAY_START = time(8, 0)
ALL_DAY_STOP = time(18, 0)
# A timed Outlook event without an end lasts an hour in Odoo.
DEFAULT_DURATION = timedelta(hours=1)

# The Odoo fields a private Outlook copy landing on an Odoo event leaves as they are
# (``keep_details``): it comes as busy time only, and must not wipe what Odoo pushed. The
# people (attendees, companies, Outlook-only attendees, the organizing user) are kept too: the
# addon leaves them when ``keep_details`` is set.
KEPT_DETAILS = frozenset(
    {"name", "description", "location", "m365_online_meeting_url", "m365_is_online_meeting"}
)
# Stored values an inbound write of a value leaves in place (field -> value written -> stored
# values kept): Odoo's "Only internal users" is finer than Outlook's private, which is how
# Outlook shows it, so an Outlook private keeps it.
ODOO_KEPT_VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    "privacy": {"private": ("confidential",)}
}


class SubjectPlaceholder(enum.StrEnum):
    """The name an Outlook event without a subject gets in Odoo (the addon translates it)."""

    BUSY = "busy"
    NO_SUBJECT = "no_subject"


class PushShape(enum.StrEnum):
    """How an Odoo event goes to Outlook (`push_shape`)."""

    AS_STORED = "as_stored"  # a single event, a series master, or a copy Outlook holds
    SERIES = "series"  # the base event of a series made in Odoo: pushed as the series
    SKIP = "skip"  # an occurrence Odoo expanded: Outlook makes its own


class SeriesOperation(enum.StrEnum):
    """What a change of a series master becomes in Outlook (`series_operation`)."""

    PATCH_DETAILS = "patch details"  # pattern, start and end left out: exceptions stay
    PATCH_RESHAPED = "patch with pattern and times"  # Outlook rebuilds the occurrences
    DELETE = "delete the series"
    CREATE = "create the series"


@dataclass(frozen=True, slots=True)
class OdooEvent:
    """The stored fields of one Odoo ``calendar.event`` the outbound mapping reads, as the
    addon returns them (``event_changes_to_push``'s ``odoo_event``); no decision made.

    ``privacy`` is the event's own (None: the organizer's ``default_privacy`` applies);
    ``outlook_sensitivity``/``outlook_show_as`` what Outlook last said (``m365_sensitivity``,
    ``m365_show_as``); ``start_date``/``stop_date`` Odoo's all-day days (stop inclusive);
    ``start``/``stop`` aware UTC datetimes. ``in_series``: the event belongs to a series (an
    Odoo recurrence or an Outlook master); ``series_has_master``: that series has a hidden
    master (Outlook holds it); ``is_series_base``: it is its recurrence's base event."""

    privacy: str | None = None
    default_privacy: str | None = None
    show_as: str | None = None
    outlook_sensitivity: str | None = None
    outlook_show_as: str | None = None
    all_day: bool = False
    start: datetime | None = None
    stop: datetime | None = None
    start_date: date | None = None
    stop_date: date | None = None
    time_zone: str | None = None
    recurrence_zone: str | None = None
    organizer_zone: str | None = None
    is_series_master: bool = False
    outlook_type: str | None = None
    bound: bool = False
    in_series: bool = False
    series_has_master: bool = False
    is_series_base: bool = False


# --- Odoo -> Outlook ---------------------------------------------------------------------------


def outlook_sensitivity(
    privacy: str | None, outlook: str | None, default_privacy: str | None = None
) -> Sensitivity:
    """Odoo's privacy (else the organizer's default) -> Outlook's sensitivity, keeping what
    Outlook said where it still agrees (an Outlook confidential or personal event)."""
    stored = _sensitivity(outlook)
    if (privacy or default_privacy) in ODOO_PRIVATE:
        return stored if stored in (*PRIVATE, Sensitivity.PERSONAL) else Sensitivity.PRIVATE
    return Sensitivity.NORMAL if stored in PRIVATE else stored


def outlook_show_as(show_as: str | None, outlook: str | None) -> ShowAs:
    """Odoo's free/busy -> Outlook's show-as; a busy Odoo event keeps Outlook's finer state."""
    if show_as == "free":
        return ShowAs.FREE
    stored = _show_as(outlook)
    return ShowAs.BUSY if stored is ShowAs.FREE else stored


def outlook_all_day(first: date, last: date) -> tuple[date, date]:
    """Odoo's all-day days (last inclusive) -> Outlook's start and end date (end exclusive)."""
    return first, max(last, first) + timedelta(days=1)


def event_zone(*candidates: str | None) -> str:
    """The first candidate naming a zone we know (IANA or Windows), as IANA; else UTC."""
    for name in candidates:
        if not name:
            continue
        try:
            return to_iana(name)
        except UnknownTimeZone:
            continue
    return UTC_NAME


def push_shape(odoo: OdooEvent) -> PushShape:
    """Whether and how an Odoo event is pushed: Odoo's own occurrences of a series are not
    (Outlook expands the series itself); the base event of an Odoo series not yet in Outlook
    is pushed as the whole series; anything else as it is stored."""
    if odoo.bound or odoo.is_series_master or not odoo.in_series:
        return PushShape.AS_STORED
    if odoo.series_has_master or not odoo.is_series_base:
        return PushShape.SKIP
    return PushShape.SERIES


def outlook_event_type(odoo: OdooEvent) -> EventType:
    """A master or an Odoo series is a series master; a bound occurrence or exception stays
    one; anything else is a single event."""
    if odoo.is_series_master or push_shape(odoo) is PushShape.SERIES:
        return EventType.SERIES_MASTER
    if odoo.bound and odoo.outlook_type in (EventType.OCCURRENCE, EventType.EXCEPTION):
        return EventType(odoo.outlook_type)
    return EventType.SINGLE


def outlook_fields(odoo: OdooEvent) -> dict[str, Any]:
    """The `CalendarEvent` fields an Odoo event's stored fields decide: type, zone, times
    (all-day: dates, end exclusive), sensitivity and show-as."""
    fields: dict[str, Any] = {
        "event_type": outlook_event_type(odoo),
        "time_zone": event_zone(odoo.time_zone, odoo.recurrence_zone, odoo.organizer_zone),
        "is_all_day": odoo.all_day,
        "sensitivity": outlook_sensitivity(
            odoo.privacy, odoo.outlook_sensitivity, odoo.default_privacy
        ),
        "show_as": outlook_show_as(odoo.show_as, odoo.outlook_show_as),
        "start": None,
        "end": None,
        "start_date": None,
        "end_date": None,
    }
    if odoo.all_day:
        first = odoo.start_date or (odoo.start.date() if odoo.start else None)
        last = odoo.stop_date or (odoo.stop.date() if odoo.stop else None) or first
        if first is not None and last is not None:
            fields["start_date"], fields["end_date"] = outlook_all_day(first, last)
    else:
        fields["start"], fields["end"] = odoo.start, odoo.stop
    return fields


def series_operation(*, deleted: bool, in_outlook: bool, reshapes_series: bool) -> SeriesOperation:
    """What a pending change of a series master becomes in Outlook. The addon records a
    user's series edit on the master: "all events" (details: a PATCH without pattern and
    times, so Outlook keeps the exceptions; times or pattern: ``reshapes_series``), "this and
    following" (the old master's range ends: a reshaping PATCH; the edited event becomes a new
    series' base, unbound: a create), a deletion of all events (a tombstone: a DELETE)."""
    if deleted:
        return SeriesOperation.DELETE
    if not in_outlook:
        return SeriesOperation.CREATE
    return SeriesOperation.PATCH_RESHAPED if reshapes_series else SeriesOperation.PATCH_DETAILS


# --- Outlook -> Odoo ---------------------------------------------------------------------------


def odoo_privacy(sensitivity: Sensitivity | str | None) -> str:
    """Outlook's sensitivity -> the privacy written in Odoo (an Odoo confidential event
    keeps its own: `ODOO_KEPT_VALUES`)."""
    return "private" if _sensitivity(sensitivity) in PRIVATE else "public"


def odoo_show_as(show_as: ShowAs | str | None) -> str:
    """Outlook's show-as -> Odoo's: free stays free, every other state is busy."""
    return "free" if _show_as(show_as) is ShowAs.FREE else "busy"


def odoo_subject(
    subject: str | None, sensitivity: Sensitivity | str | None
) -> tuple[str | None, SubjectPlaceholder | None]:
    """The Odoo name of an Outlook event: its subject, else a placeholder ("Busy" for a
    private one, whose subject never reaches the CRM; "(No subject)" otherwise)."""
    if subject:
        return subject, None
    if _sensitivity(sensitivity) in PRIVATE:
        return None, SubjectPlaceholder.BUSY
    return None, SubjectPlaceholder.NO_SUBJECT


def odoo_all_day(
    start_date: date | None, end_date: date | None, start: datetime | None, *, today: date
) -> tuple[date, date]:
    """Outlook's all-day dates (end exclusive) -> Odoo's first and last day (inclusive);
    without dates the start's day (else today); never a last day before the first."""
    first = start_date or (start.date() if start else today)
    last = (end_date - timedelta(days=1)) if end_date else first
    return first, max(last, first)


def odoo_times(
    start: datetime | None, end: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """A timed Outlook event's start and stop in Odoo: an hour when it has no end, never an
    end before its start."""
    stop = end or (start + DEFAULT_DURATION if start else None)
    if start is not None and stop is not None:
        stop = max(stop, start)
    return start, stop


def odoo_values(stored: StoredEvent, *, today: date) -> dict[str, Any]:
    """The Odoo field values an Outlook item decides (``store_event_page``'s ``odoo_values``):
    what the addon writes as given. Datetimes are aware UTC. ``subject_placeholder`` is set
    when ``name`` is None (the addon writes its translated label). With ``keep_details`` on an
    event Odoo holds (``crm_event_id``) its details (`KEPT_DETAILS`) are left out. The people,
    the organizing user, the video call link, the series links and Graph's pattern (kept as
    JSON) are the addon's to store (they are its records)."""
    item = stored.event
    name, placeholder = odoo_subject(item.subject, item.sensitivity)
    cancelled = bool(item.is_cancelled)
    master = item.event_type is EventType.SERIES_MASTER
    values: dict[str, Any] = {
        "name": name,
        "subject_placeholder": placeholder.value if placeholder else None,
        "description": item.body_html or None,
        "location": item.location or None,
        "privacy": odoo_privacy(item.sensitivity),
        "show_as": odoo_show_as(item.show_as),
        "m365_event_type": EventType(item.event_type).value,
        "m365_is_series_master": master,
        "m365_original_start": item.original_start,
        "m365_time_zone": item.time_zone or UTC_NAME,
        "m365_sensitivity": _sensitivity(item.sensitivity).value,
        "m365_show_as": _show_as(item.show_as).value,
        "m365_is_cancelled": cancelled,
        "m365_online_meeting_url": item.online_meeting_url or None,
        "m365_is_online_meeting": bool(item.is_online_meeting),
        "m365_deleted": False,
        # Cancelled meetings and hidden masters are not shown in Odoo's calendar.
        "active": not (cancelled or master),
    }
    if item.is_all_day:
        first, last = odoo_all_day(item.start_date, item.end_date, item.start, today=today)
        values.update(
            allday=True,
            start=datetime.combine(first, ALL_DAY_START, tzinfo=UTC),
            stop=datetime.combine(last, ALL_DAY_STOP, tzinfo=UTC),
        )
    else:
        start, stop = odoo_times(item.start, item.end)
        values.update(allday=False, start=start, stop=stop)
    if stored.keep_details and stored.crm_event_id is not None:
        # Only an event Odoo holds has details to keep: a new one is busy time, named.
        for name_ in (*KEPT_DETAILS, "subject_placeholder"):
            values.pop(name_, None)
    return values


def odoo_kept_values(values: dict[str, Any]) -> dict[str, list[str]]:
    """For `odoo_values`: the fields whose stored value stays when it is one of these
    (``store_event_page``'s ``odoo_kept_values``; `ODOO_KEPT_VALUES`)."""
    kept: dict[str, list[str]] = {}
    for name, rules in ODOO_KEPT_VALUES.items():
        stays = rules.get(values.get(name))  # type: ignore[arg-type]
        if name in values and stays:
            kept[name] = list(stays)
    return kept


def _sensitivity(value: Sensitivity | str | None) -> Sensitivity:
    try:
        return Sensitivity(value or Sensitivity.NORMAL)
    except ValueError:
        return Sensitivity.NORMAL


def _show_as(value: ShowAs | str | None) -> ShowAs:
    try:
        return ShowAs(value or ShowAs.BUSY)
    except ValueError:
        return ShowAs.BUSY
