"""A partner's meetings: which CRM events count as meetings, and which of those are upcoming.

The rule the partner form shows (its Meetings tab and count, Odoo's Meetings button) and the
daemon's "upcoming meetings" read (`CrmGateway.upcoming_events_for_partner`) follow, so a
contact's count and tab never disagree (issue #12's drift fix): an Outlook series master is
not a meeting (its occurrences are), nor is an event deleted or cancelled in Outlook; a
meeting is upcoming until it has ended, so one under way still counts. An all-day meeting
lasts through its last day (Outlook's exclusive end date is after the day of ``since``, in
UTC: both stores keep all-day days as UTC dates).

The embedded store applies this function in its SQL (`crm/sqlite.py` registers it as
``m365_upcoming_meeting``). The addon cannot import the daemon and holds the same rule as an
Odoo domain (`res.partner._m365_meeting_domain`); one table of cases,
``addon/crm_microsoft365/tests/meeting_cases.json``, is read by both test suites, so the two
cannot drift apart silently.
"""

from __future__ import annotations

from datetime import UTC, date, datetime


def is_meeting(*, series_master: bool, deleted: bool, cancelled: bool) -> bool:
    """Whether a CRM event is a meeting at all (counted, listed, opened by Meetings)."""
    return not (series_master or deleted or cancelled)


def not_ended(*, end: datetime | None, end_date: date | None, since: datetime) -> bool:
    """Whether a meeting has not ended by ``since``: a timed one until its end (inclusive),
    an all-day one through its last day (``end_date`` is exclusive, as Outlook's). A timed
    event without an end has no end to wait for and is not upcoming."""
    if end is not None:
        return _utc(end) >= _utc(since)
    if end_date is not None:
        return end_date > _utc(since).date()
    return False


def is_upcoming(
    *,
    series_master: bool,
    deleted: bool,
    cancelled: bool,
    end: datetime | None,
    end_date: date | None,
    since: datetime,
) -> bool:
    """A meeting (`is_meeting`) that has not ended by ``since`` (`not_ended`)."""
    return is_meeting(series_master=series_master, deleted=deleted, cancelled=cancelled) and (
        not_ended(end=end, end_date=end_date, since=since)
    )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
