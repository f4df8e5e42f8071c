"""The embedded store's calendar: CRM events, series, attendees, and their Outlook bindings.

Kept apart from `sqlite.py` (mail, accounts, partners) because it is its own model: one CRM
event (Odoo ``calendar.event``) may be bound to several accounts' Outlook copies, and the
CRM side edits events too. `CalendarStore` is a mixin of `SqliteGateway`; it relies on the
gateway's ``_write``/``_read`` transactions and its cursor table.

Versions: every CRM-side edit (``crm_create_event``, ``crm_update_event``,
``crm_delete_event``, what a salesperson does in Odoo) bumps ``version``; inbound writes from
Outlook set ``pushed_version = version`` so they are never pushed back (no echo).

Where an Outlook item goes (its bound event, the same meeting, a new event), whether it is an
echo, and whether it keeps the CRM's details are the plan's (`m365sync.sync.calendar`); this
store writes the verdict under its preconditions (`StalePlan`). Privacy: a private item placed
on a CRM event (``StoredEvent.keep_details``) is busy time; its times, show-as, sensitivity and
recurrence are stored, the CRM's subject, body, location, online meeting and attendees are
kept (`_DETAIL_COLUMNS`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from m365sync.crm.sqlite_time import dt_text as _text
from m365sync.crm.sqlite_time import dt_value as _when
from m365sync.crm.wire import from_wire, to_wire
from m365sync.domain import (
    CalendarEvent,
    CrmEventChange,
    EmailAddress,
    EventBinding,
    EventLink,
    EventPageWrite,
    EventSummary,
    EventType,
    Lease,
    MeetingCandidate,
    OccurrenceRemoval,
    PageResult,
    PageWrite,
    Recurrence,
    ResponseStatus,
    Sensitivity,
    ShowAs,
    StoredEvent,
    UnconfirmedOccurrences,
)
from m365sync.errors import StalePlan
from m365sync.sync.attendees import Person, push_organizer, push_people
from m365sync.sync.meetings import is_upcoming

V2_CALENDAR = """
DROP TABLE IF EXISTS m365_calendar_attendee;
DROP TABLE IF EXISTS m365_calendar_event;

CREATE TABLE crm_calendar_series (
    id INTEGER PRIMARY KEY,
    recurrence TEXT NOT NULL,
    time_zone TEXT NOT NULL DEFAULT 'UTC'
);

CREATE TABLE crm_calendar_event (
    id INTEGER PRIMARY KEY,
    owner_account_id INTEGER REFERENCES m365_account (id) ON DELETE SET NULL,
    ical_uid TEXT,
    series_id INTEGER REFERENCES crm_calendar_series (id) ON DELETE SET NULL,
    is_series_master INTEGER NOT NULL DEFAULT 0,
    original_start TEXT,
    subject TEXT,
    body_html TEXT,
    location TEXT,
    online_meeting_url TEXT,
    start_at TEXT,
    end_at TEXT,
    start_date TEXT,
    end_date TEXT,
    is_all_day INTEGER NOT NULL DEFAULT 0,
    time_zone TEXT NOT NULL DEFAULT 'UTC',
    sensitivity TEXT NOT NULL DEFAULT 'normal',
    show_as TEXT NOT NULL DEFAULT 'busy',
    is_cancelled INTEGER NOT NULL DEFAULT 0,
    organizer_address TEXT,
    organizer_name TEXT,
    version INTEGER NOT NULL DEFAULT 1,
    deleted INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
CREATE INDEX crm_calendar_event_uid ON crm_calendar_event (ical_uid);
CREATE INDEX crm_calendar_event_start ON crm_calendar_event (start_at);

CREATE TABLE crm_calendar_attendee (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES crm_calendar_event (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    address TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    response TEXT NOT NULL DEFAULT 'none',
    partner_id INTEGER REFERENCES res_partner (id) ON DELETE SET NULL,
    company_id INTEGER REFERENCES res_partner (id) ON DELETE SET NULL
);
CREATE INDEX crm_calendar_attendee_event ON crm_calendar_attendee (event_id);
CREATE INDEX crm_calendar_attendee_partner ON crm_calendar_attendee (partner_id);

CREATE TABLE m365_event_binding (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES m365_account (id) ON DELETE CASCADE,
    graph_id TEXT NOT NULL,
    crm_event_id INTEGER NOT NULL REFERENCES crm_calendar_event (id) ON DELETE CASCADE,
    change_key TEXT,
    pushed_version INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, graph_id),
    UNIQUE (account_id, crm_event_id)
);

ALTER TABLE m365_account ADD COLUMN connected_at TEXT;
"""


V4_ONLINE_MEETINGS = """
ALTER TABLE crm_calendar_event ADD COLUMN is_online_meeting INTEGER NOT NULL DEFAULT 0;
ALTER TABLE m365_outbox ADD COLUMN requested_by TEXT;
"""

# A series master whose pattern, start or end changed in the CRM since its last push (a push of
# its other details leaves them out, so Outlook keeps the series' exceptions).
V6_SERIES_RESHAPED = """
ALTER TABLE crm_calendar_event ADD COLUMN series_reshaped INTEGER NOT NULL DEFAULT 0;
"""

_SHAPE_FIELDS = frozenset({"start", "end", "start_date", "end_date", "is_all_day", "time_zone"})
# What an edit of a whole series writes on each of its occurrences too (their columns have the
# fields' names), as Odoo's "all events" edit does.
_SERIES_DETAILS = ("subject", "body_html", "location", "sensitivity", "show_as")

# What a private Outlook event bound to a CRM event leaves as the CRM has it (``keep_details``):
# it comes as busy time, and must not wipe what the CRM pushed. Its attendees are kept too.
_DETAIL_COLUMNS = frozenset(
    {"subject", "body_html", "location", "online_meeting_url", "is_online_meeting"}
)


def _kept(values: dict[str, Any], keep_details: bool) -> dict[str, Any]:
    """The columns to write: without the CRM's details when they are kept."""
    if not keep_details:
        return values
    return {k: v for k, v in values.items() if k not in _DETAIL_COLUMNS}


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def upcoming_meeting(
    series_master: int,
    deleted: int,
    cancelled: int,
    end_at: str | None,
    end_date: str | None,
    since: str,
) -> int:
    """`sync.meetings.is_upcoming` over an event row's columns: the store's SQL calls it as
    ``m365_upcoming_meeting`` (registered on each connection), so the rule is not written
    again in SQL."""
    when = _when(since)
    if when is None:  # no cut-off: nothing is upcoming
        return 0
    return int(
        is_upcoming(
            series_master=bool(series_master),
            deleted=bool(deleted),
            cancelled=bool(cancelled),
            end=_when(end_at),
            end_date=_day(end_date),
            since=when,
        )
    )


def _columns(event: CalendarEvent) -> dict[str, Any]:
    """The CRM columns of an Outlook event (what both sides share)."""
    return {
        "ical_uid": event.ical_uid,
        "is_series_master": int(event.event_type is EventType.SERIES_MASTER),
        "original_start": _text(event.original_start),
        "subject": event.subject,
        "body_html": event.body_html,
        "location": event.location,
        "online_meeting_url": event.online_meeting_url,
        "start_at": _text(event.start),
        "end_at": _text(event.end),
        "start_date": event.start_date.isoformat() if event.start_date else None,
        "end_date": event.end_date.isoformat() if event.end_date else None,
        "is_all_day": int(event.is_all_day),
        "time_zone": event.time_zone,
        "sensitivity": Sensitivity(event.sensitivity).value,
        "show_as": ShowAs(event.show_as).value,
        "is_cancelled": int(event.is_cancelled),
        "organizer_address": event.organizer.address if event.organizer else None,
        "organizer_name": event.organizer.name if event.organizer else None,
        "is_online_meeting": int(event.is_online_meeting),
    }


class CalendarStore:
    """The calendar half of `SqliteGateway` (see the module docstring)."""

    # Provided by SqliteGateway.
    _write: Any
    _read: Any
    _check_lease: Any
    _require_account: Any
    _store_cursor: Any

    # --- inbound: Outlook -> CRM -----------------------------------------------------------

    def store_event_page(self, page: EventPageWrite, *, lease: Lease | None = None) -> PageResult:
        created = updated = linked = removed = 0
        with self._write() as conn:
            if lease is not None:
                self._check_lease(conn, lease, page.account_id)
            else:
                self._require_account(conn, page.account_id)
            for graph_id in page.removed_ids:
                removed += self._unbind(conn, page.account_id, graph_id)
            for stored in page.upserts:
                outcome = self._upsert_event(conn, page.account_id, stored)
                created += outcome == "created"
                updated += outcome == "updated"
                linked += outcome == "linked"
            cursor_page = PageWrite(
                page.account_id, page.calendar_id, [], [], page.cursor, page.skipped
            )
            self._store_cursor(conn, cursor_page)
        return PageResult(created, updated, linked, removed)

    def _upsert_event(self, conn: sqlite3.Connection, account_id: int, stored: StoredEvent) -> str:
        """Write one item where the plan placed it (`sync.calendar.place`), under its
        preconditions: the item's binding is the plan's, the target's version the plan's."""
        event = stored.event
        binding = conn.execute(
            "SELECT crm_event_id FROM m365_event_binding WHERE account_id = ? AND graph_id = ?",
            (account_id, event.graph_id),
        ).fetchone()
        target = stored.crm_event_id
        if binding is not None and binding["crm_event_id"] != target:
            raise StalePlan(f"Outlook event {event.graph_id} is bound since the plan was made")
        values = _columns(event)
        values["series_id"] = self._series_for(conn, account_id, event)
        now = _text(datetime.now(UTC))
        if target is None:
            event_id = self._insert_event_row(conn, values, now)
            conn.execute(
                "INSERT INTO m365_event_binding (account_id, graph_id, crm_event_id) "
                "VALUES (?, ?, ?)",
                (account_id, event.graph_id, event_id),
            )
            outcome = "created"
        else:
            row = conn.execute(
                "SELECT version, deleted FROM crm_calendar_event WHERE id = ?", (target,)
            ).fetchone()
            if (
                row is None
                or row["version"] != stored.expected_version
                or (binding is None and row["deleted"])
            ):
                raise StalePlan(f"CRM event {target} changed since the plan was made")
            event_id = target
            self._update_event_row(conn, event_id, _kept(values, stored.keep_details), now)
            if row["deleted"]:
                # A CRM deletion not yet pushed, and Outlook changed the event later: the plan
                # let Outlook's version win (last writer), so the event lives on in the CRM.
                # Kept deleted, it was gone from the CRM while Outlook held it (the soak).
                conn.execute("UPDATE crm_calendar_event SET deleted = 0 WHERE id = ?", (event_id,))
            outcome = "updated"
            if binding is None:
                outcome = "linked"
                # This account's binding follows the item (Outlook recreated it under a new
                # id), or is made.
                moved = conn.execute(
                    "UPDATE m365_event_binding SET graph_id = ? "
                    "WHERE account_id = ? AND crm_event_id = ?",
                    (event.graph_id, account_id, event_id),
                ).rowcount
                if not moved:
                    conn.execute(
                        "INSERT INTO m365_event_binding (account_id, graph_id, crm_event_id) "
                        "VALUES (?, ?, ?)",
                        (account_id, event.graph_id, event_id),
                    )
        conn.execute(
            "UPDATE m365_event_binding SET change_key = ?, pushed_version = "
            "(SELECT version FROM crm_calendar_event WHERE id = ?) "
            "WHERE account_id = ? AND graph_id = ?",
            (event.change_key, event_id, account_id, event.graph_id),
        )
        if not stored.keep_details:
            self._replace_attendees(conn, event_id, stored.attendees)
        return outcome

    def meeting_candidates(
        self,
        account_id: int,
        ical_uids: Iterable[str],
        series_master_ids: Iterable[str],
        crm_event_ids: Iterable[int] = (),
    ) -> list[MeetingCandidate]:
        uids = sorted(set(ical_uids))
        graph_ids = sorted(set(series_master_ids))
        select = (
            "SELECT e.id, e.version, e.ical_uid, e.is_series_master, e.deleted, e.series_id, "
            "e.is_all_day, e.start_at, e.start_date, b.graph_id AS bound FROM crm_calendar_event e "
            "LEFT JOIN m365_event_binding b ON b.crm_event_id = e.id AND b.account_id = ? "
        )
        rows: dict[int, sqlite3.Row] = {}
        with self._read() as conn:
            for start in range(0, len(uids), 500):
                chunk = uids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(
                    f"{select} WHERE e.ical_uid IN ({marks})",
                    (account_id, *chunk),
                ):
                    rows[row["id"]] = row
            for event_id in sorted(set(crm_event_ids)):
                row = conn.execute(
                    f"{select} WHERE e.id = ?",
                    (account_id, event_id),
                ).fetchone()
                if row is not None:
                    rows[row["id"]] = row
            masters = {row["id"] for row in rows.values() if row["is_series_master"]}
            for start in range(0, len(graph_ids), 500):
                chunk = graph_ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = (
                    "SELECT crm_event_id FROM m365_event_binding "  # noqa: S608
                    f"WHERE account_id = ? AND graph_id IN ({marks})"
                )
                masters.update(r["crm_event_id"] for r in conn.execute(query, (account_id, *chunk)))
            master_of_series: dict[int, int] = {}
            for master_id in sorted(masters):
                row = conn.execute(f"{select} WHERE e.id = ?", (account_id, master_id)).fetchone()
                if row is None or not row["is_series_master"] or row["series_id"] is None:
                    continue
                rows[row["id"]] = row
                master_of_series.setdefault(row["series_id"], row["id"])
                for member in conn.execute(
                    f"{select} WHERE e.series_id = ? AND e.is_series_master = 0",
                    (account_id, row["series_id"]),
                ):
                    rows[member["id"]] = member
        return [
            MeetingCandidate(
                crm_event_id=row["id"],
                version=row["version"],
                ical_uid=row["ical_uid"],
                is_series_master=bool(row["is_series_master"]),
                deleted=bool(row["deleted"]),
                series_master_id=None
                if row["is_series_master"]
                else master_of_series.get(row["series_id"]),
                bound_graph_id=row["bound"],
                is_all_day=bool(row["is_all_day"]),
                start=_when(row["start_at"]),
                start_date=_day(row["start_date"]),
            )
            for row in sorted(rows.values(), key=lambda r: r["id"])
        ]

    @staticmethod
    def _series_for(conn: sqlite3.Connection, account_id: int, event: CalendarEvent) -> int | None:
        """A master carries the series (its recurrence); occurrences point at their master's."""
        if event.event_type is EventType.SERIES_MASTER and event.recurrence is not None:
            row = conn.execute(
                "SELECT e.series_id FROM m365_event_binding b JOIN crm_calendar_event e "
                "ON e.id = b.crm_event_id WHERE b.account_id = ? AND b.graph_id = ?",
                (account_id, event.graph_id),
            ).fetchone()
            recurrence = json.dumps(to_wire(event.recurrence), sort_keys=True)
            if row and row["series_id"]:
                conn.execute(
                    "UPDATE crm_calendar_series SET recurrence = ?, time_zone = ? WHERE id = ?",
                    (recurrence, event.time_zone, row["series_id"]),
                )
                return row["series_id"]
            return conn.execute(
                "INSERT INTO crm_calendar_series (recurrence, time_zone) VALUES (?, ?)",
                (recurrence, event.time_zone),
            ).lastrowid
        if event.series_master_id:
            row = conn.execute(
                "SELECT e.series_id FROM m365_event_binding b JOIN crm_calendar_event e "
                "ON e.id = b.crm_event_id WHERE b.account_id = ? AND b.graph_id = ?",
                (account_id, event.series_master_id),
            ).fetchone()
            return row["series_id"] if row else None
        return None

    @staticmethod
    def _insert_event_row(conn: sqlite3.Connection, values: dict[str, Any], now: str | None) -> int:
        row = {**values, "created_at": now, "modified_at": now}
        columns = ", ".join(row)
        marks = ",".join("?" * len(row))
        return conn.execute(
            f"INSERT INTO crm_calendar_event ({columns}) VALUES ({marks})",  # noqa: S608
            tuple(row.values()),
        ).lastrowid

    @staticmethod
    def _update_event_row(
        conn: sqlite3.Connection, event_id: int, values: dict[str, Any], now: str | None
    ) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        conn.execute(
            f"UPDATE crm_calendar_event SET {assignments}, modified_at = ? WHERE id = ?",  # noqa: S608
            (*values.values(), now, event_id),
        )

    @staticmethod
    def _replace_attendees(
        conn: sqlite3.Connection, event_id: int, attendees: Iterable[EventLink]
    ) -> None:
        conn.execute("DELETE FROM crm_calendar_attendee WHERE event_id = ?", (event_id,))
        conn.executemany(
            "INSERT INTO crm_calendar_attendee (event_id, role, address, name, response, "
            "partner_id, company_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    event_id,
                    a.role,
                    a.address,
                    a.name,
                    ResponseStatus(a.response).value,
                    a.partner_id,
                    a.company_id,
                )
                for a in attendees
            ],
        )

    @staticmethod
    def _unbind(conn: sqlite3.Connection, account_id: int, graph_id: str) -> int:
        row = conn.execute(
            "SELECT id, crm_event_id FROM m365_event_binding WHERE account_id = ? AND graph_id = ?",
            (account_id, graph_id),
        ).fetchone()
        if row is None:
            return 0
        conn.execute("DELETE FROM m365_event_binding WHERE id = ?", (row["id"],))
        if not conn.execute(
            "SELECT 1 FROM m365_event_binding WHERE crm_event_id = ? LIMIT 1",
            (row["crm_event_id"],),
        ).fetchone():
            conn.execute("DELETE FROM crm_calendar_event WHERE id = ?", (row["crm_event_id"],))
        return 1

    # --- state for the sync's decisions ------------------------------------------------------

    def bound_event_ids(self, account_id: int) -> list[str]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT graph_id FROM m365_event_binding WHERE account_id = ? ORDER BY graph_id",
                (account_id,),
            ).fetchall()
        return [row["graph_id"] for row in rows]

    def unconfirmed_series_ids(self, account_id: int) -> list[str]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT b.graph_id FROM m365_event_binding b "
                "JOIN crm_calendar_event e ON e.id = b.crm_event_id "
                "WHERE b.account_id = ? AND e.is_series_master = 1 AND NOT EXISTS ("
                "  SELECT 1 FROM crm_calendar_event o JOIN m365_event_binding ob "
                "  ON ob.crm_event_id = o.id AND ob.account_id = b.account_id "
                "  WHERE o.series_id = e.series_id AND o.is_series_master = 0) "
                "ORDER BY b.graph_id",
                (account_id,),
            ).fetchall()
        return [row["graph_id"] for row in rows]

    def unconfirmed_occurrences(
        self, account_id: int, start: datetime, end: datetime, *, limit: int
    ) -> list[UnconfirmedOccurrences]:
        found: list[UnconfirmedOccurrences] = []
        with self._read() as conn:
            masters = conn.execute(
                "SELECT e.id, e.version, e.series_id, b.graph_id FROM m365_event_binding b "
                "JOIN crm_calendar_event e ON e.id = b.crm_event_id "
                "WHERE b.account_id = ? AND e.is_series_master = 1 AND e.deleted = 0 "
                "AND e.series_id IS NOT NULL AND e.version = b.pushed_version "
                "ORDER BY e.id DESC",
                (account_id,),
            ).fetchall()
            for master in masters:
                if len(found) >= limit:
                    break
                rows = conn.execute(
                    "SELECT e.* FROM crm_calendar_event e WHERE e.series_id = ? "
                    "AND e.is_series_master = 0 AND e.deleted = 0 AND e.is_cancelled = 0 "
                    "AND NOT EXISTS (SELECT 1 FROM m365_event_binding ob "
                    "WHERE ob.crm_event_id = e.id) "
                    "ORDER BY COALESCE(e.start_at, e.start_date), e.id",
                    (master["series_id"],),
                ).fetchall()
                occurrences = tuple(
                    _candidate(row, master["id"]) for row in rows if _slot_within(row, start, end)
                )
                if occurrences:
                    found.append(
                        UnconfirmedOccurrences(
                            master["graph_id"], master["id"], master["version"], occurrences
                        )
                    )
        return found

    def remove_cancelled_occurrences(
        self, account_id: int, removals: Sequence[OccurrenceRemoval], *, lease: Lease | None = None
    ) -> int:
        removed = 0
        with self._write() as conn:
            if lease is not None:
                self._check_lease(conn, lease, account_id)
            else:
                self._require_account(conn, account_id)
            for removal in removals:
                master = conn.execute(
                    "SELECT e.series_id FROM crm_calendar_event e JOIN m365_event_binding b "
                    "ON b.crm_event_id = e.id AND b.account_id = ? WHERE e.id = ? "
                    "AND e.is_series_master = 1 AND e.deleted = 0 AND e.version = ? "
                    "AND b.pushed_version = e.version",
                    (account_id, removal.master_crm_event_id, removal.master_version),
                ).fetchone()
                if master is None or master["series_id"] is None:
                    continue
                removed += conn.execute(
                    "DELETE FROM crm_calendar_event WHERE id = ? AND series_id = ? "
                    "AND is_series_master = 0 AND deleted = 0 AND version = ? "
                    "AND NOT EXISTS (SELECT 1 FROM m365_event_binding WHERE crm_event_id = ?)",
                    (
                        removal.crm_event_id,
                        master["series_id"],
                        removal.expected_version,
                        removal.crm_event_id,
                    ),
                ).rowcount
        return removed

    def last_event_id(self) -> int:
        """AUTOINCREMENT's high-water mark (since V11), which deleted rows never lower."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'crm_calendar_event'"
            ).fetchone()
        return int(row["seq"]) if row is not None else 0

    def event_bindings(self, account_id: int, graph_ids: Iterable[str]) -> dict[str, EventBinding]:
        wanted = list(dict.fromkeys(graph_ids))
        found: dict[str, EventBinding] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = (
                    "SELECT b.graph_id, b.crm_event_id, b.change_key, b.pushed_version, "  # noqa: S608
                    "e.version, e.modified_at FROM m365_event_binding b JOIN crm_calendar_event e "
                    "ON e.id = b.crm_event_id WHERE b.account_id = ? "
                    f"AND b.graph_id IN ({marks})"
                )
                rows = conn.execute(query, (account_id, *chunk)).fetchall()
                for row in rows:
                    found[row["graph_id"]] = EventBinding(
                        crm_event_id=row["crm_event_id"],
                        graph_id=row["graph_id"],
                        change_key=row["change_key"],
                        version=row["version"],
                        pushed_version=row["pushed_version"],
                        crm_modified_at=_when(row["modified_at"]),
                    )
        return found

    # --- outbound: CRM -> Outlook --------------------------------------------------------------

    def event_changes_to_push(self, account_id: int) -> list[CrmEventChange]:
        with self._read() as conn:
            account = conn.execute(
                "SELECT connected_at, address_normalized FROM m365_account WHERE id = ?",
                (account_id,),
            ).fetchone()
            if account is None:
                return []
            since = account["connected_at"] or ""
            # The account's events: those it owns (created in the CRM by its user) and those
            # bound to it; which it organizes is `sync.calendar.organizes`.
            rows = conn.execute(
                "SELECT e.*, b.graph_id, b.change_key, COALESCE(b.pushed_version, 0) AS pushed, "
                "COALESCE(e.owner_account_id = :account, 0) AS owned "
                "FROM crm_calendar_event e LEFT JOIN m365_event_binding b "
                "ON b.crm_event_id = e.id AND b.account_id = :account "
                "WHERE (e.owner_account_id = :account OR b.id IS NOT NULL) "
                "AND e.version > COALESCE(b.pushed_version, 0) "
                "AND e.modified_at >= :since AND NOT (e.deleted = 1 AND b.id IS NULL) "
                "ORDER BY e.id",
                {"account": account_id, "address": account["address_normalized"], "since": since},
            ).fetchall()
            changes = []
            for row in rows:
                attendees = conn.execute(
                    "SELECT role, address, name, response FROM crm_calendar_attendee "
                    "WHERE event_id = ? ORDER BY id",
                    (row["id"],),
                ).fetchall()
                changes.append(
                    self._change(conn, row, attendees, owner=account["address_normalized"])
                )
        return changes

    @staticmethod
    def _change(
        conn: sqlite3.Connection, row: sqlite3.Row, attendees: list[sqlite3.Row], *, owner: str
    ) -> CrmEventChange:
        recurrence = None
        if row["series_id"] is not None and row["is_series_master"]:
            series = conn.execute(
                "SELECT recurrence FROM crm_calendar_series WHERE id = ?", (row["series_id"],)
            ).fetchone()
            recurrence = from_wire(Recurrence, json.loads(series["recurrence"]))
        stored = _event_from_row(row)
        # Who is invited and the owner's own answer: the daemon's rule (`sync.attendees`).
        people = push_people(
            [Person(a["address"], a["name"] or "", a["role"], a["response"]) for a in attendees],
            organizer=push_organizer(stored.organizer, None),
            owner=owner,
        )
        event = replace(
            stored,
            graph_id=row["graph_id"] or "",
            event_type=EventType.SERIES_MASTER if recurrence else EventType.SINGLE,
            recurrence=recurrence,
            attendees=people.attendees,
            change_key=row["change_key"],
        )
        return CrmEventChange(
            crm_event_id=row["id"],
            event=event,
            version=row["version"],
            deleted=bool(row["deleted"]),
            attendee_addresses=people.addresses,
            owned_by_account=bool(row["owned"]),
            my_response=people.my_response,
            reshapes_series=not (recurrence and row["graph_id"]) or bool(row["series_reshaped"]),
        )

    def mark_event_pushed(
        self,
        account_id: int,
        crm_event_id: int,
        *,
        graph_id: str,
        change_key: str | None,
        version: int,
        ical_uid: str | None = None,
        online_meeting_url: str | None = None,
        unbind: bool = False,
        shape_pushed: bool = False,
    ) -> bool:
        with self._write() as conn:
            self._require_account(conn, account_id)
            row = conn.execute(
                "SELECT deleted, version FROM crm_calendar_event WHERE id = ?", (crm_event_id,)
            ).fetchone()
            if row is None:
                return False
            current = row["version"] == version
            if unbind or (row["deleted"] and current):
                # Outlook's copy is gone: this account's binding goes, and a tombstone with
                # its last binding. An event changed since (restored) stays, unbound.
                conn.execute(
                    "DELETE FROM m365_event_binding WHERE account_id = ? AND crm_event_id = ?",
                    (account_id, crm_event_id),
                )
                if (
                    row["deleted"]
                    and not conn.execute(
                        "SELECT 1 FROM m365_event_binding WHERE crm_event_id = ? LIMIT 1",
                        (crm_event_id,),
                    ).fetchone()
                ):
                    conn.execute("DELETE FROM crm_calendar_event WHERE id = ?", (crm_event_id,))
                return current
            if shape_pushed:
                # Only a push that carried the pattern and times ends a pending reshape; a
                # reshape made while it was in flight (a newer version) stays pending.
                conn.execute(
                    "UPDATE crm_calendar_event SET series_reshaped = 0 "
                    "WHERE id = ? AND version <= ?",
                    (crm_event_id, version),
                )
            conn.execute(
                "INSERT INTO m365_event_binding (account_id, graph_id, crm_event_id, change_key, "
                "pushed_version) VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, crm_event_id) "
                "DO UPDATE SET graph_id = excluded.graph_id, change_key = excluded.change_key, "
                "pushed_version = excluded.pushed_version",
                (account_id, graph_id, crm_event_id, change_key, version),
            )
            if ical_uid:
                conn.execute(
                    "UPDATE crm_calendar_event SET ical_uid = ? WHERE id = ? AND ical_uid IS NULL",
                    (ical_uid, crm_event_id),
                )
            if online_meeting_url:
                conn.execute(
                    "UPDATE crm_calendar_event SET online_meeting_url = ? WHERE id = ?",
                    (online_meeting_url, crm_event_id),
                )
        return current

    # --- reading back ------------------------------------------------------------------------

    def upcoming_events_for_partner(
        self, partner_id: int, *, since: datetime, limit: int = 20
    ) -> list[EventSummary]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT DISTINCT e.* FROM crm_calendar_event e JOIN crm_calendar_attendee a "
                "ON a.event_id = e.id WHERE (a.partner_id = :p OR a.company_id = :p OR "
                "a.partner_id IN (SELECT id FROM res_partner WHERE parent_id = :p)) "
                "AND m365_upcoming_meeting(e.is_series_master, e.deleted, e.is_cancelled, "
                "e.end_at, e.end_date, :since) "
                "ORDER BY COALESCE(e.start_at, e.start_date), e.id LIMIT :limit",
                {"p": partner_id, "since": _text(since), "limit": limit},
            ).fetchall()
            summaries = []
            for row in rows:
                people = conn.execute(
                    "SELECT address FROM crm_calendar_attendee WHERE event_id = ? ORDER BY id",
                    (row["id"],),
                ).fetchall()
                summaries.append(_summary(row, "", tuple(p["address"] for p in people)))
        return summaries

    def busy_times(self, account_id: int, start: datetime, end: datetime) -> list[EventSummary]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT DISTINCT e.* FROM crm_calendar_event e LEFT JOIN m365_event_binding b "
                "ON b.crm_event_id = e.id WHERE (b.account_id = :a OR e.owner_account_id = :a) "
                "AND e.deleted = 0 AND e.is_cancelled = 0 AND e.is_series_master = 0 "
                "AND e.show_as != 'free' AND ((e.start_at < :end AND e.end_at > :start) "
                "OR (e.start_date <= :day AND e.end_date > :day)) ORDER BY e.start_at",
                {
                    "a": account_id,
                    "start": _text(start),
                    "end": _text(end),
                    "day": start.astimezone(UTC).date().isoformat(),
                },
            ).fetchall()
        return [_summary(row, "(private)") for row in rows]

    # --- what a CRM user does (the embedded store's stand-in for Odoo's calendar UI) --------

    def crm_create_event(
        self,
        owner_account_id: int | None,
        event: CalendarEvent,
        attendees: Iterable[EventLink] = (),
    ) -> int:
        """A meeting created in the CRM (version 1, not yet in Outlook)."""
        now = _text(datetime.now(UTC))
        with self._write() as conn:
            values = _columns(replace(event, graph_id=""))
            values["owner_account_id"] = owner_account_id
            if event.recurrence is not None:
                values["series_id"] = conn.execute(
                    "INSERT INTO crm_calendar_series (recurrence, time_zone) VALUES (?, ?)",
                    (json.dumps(to_wire(event.recurrence), sort_keys=True), event.time_zone),
                ).lastrowid
                values["is_series_master"] = 1
            event_id = self._insert_event_row(conn, values, now)
            self._replace_attendees(conn, event_id, attendees)
        return event_id

    # The command line's Schedule Meeting (`m365sync meet`) is the CRM-side write itself.
    create_meeting = crm_create_event

    def crm_update_event(
        self, event_id: int, *, attendees: Iterable[EventLink] | None = None, **changes: Any
    ) -> None:
        """Edit CRM-side fields (``subject``, ``start``, ``end``, ``location``, a series'
        ``recurrence``...) and optionally replace the attendees (the organizer stays): the
        version goes up, so the change is pushed. Editing a series master is editing the whole
        series: its details (subject, body, location, privacy, show-as) are written on each of
        its occurrences too, as Odoo's "all events" does, without pushing them one by one; a
        change of its pattern or times is remembered until pushed (``series_reshaped``), the
        push of its other details leaves them out."""
        now = _text(datetime.now(UTC))
        recurrence = changes.pop("recurrence", None)
        with self._write() as conn:
            row = conn.execute(
                "SELECT * FROM crm_calendar_event WHERE id = ?", (event_id,)
            ).fetchone()
            if row is None:
                raise KeyError(event_id)
            values = _columns(replace(_event_from_row(row), **changes))
            values.pop("is_series_master")
            self._update_event_row(conn, event_id, values, now)
            shared = [name for name in _SERIES_DETAILS if name in changes]
            if shared and row["is_series_master"] and row["series_id"] is not None:
                # The occurrences show the series' new details at once, and an occurrence
                # edited before the next sync goes to Outlook with them, not with the old
                # ones (the master carries the change: the occurrences are not pushed).
                conn.execute(
                    f"UPDATE crm_calendar_event SET {', '.join(f'{n} = ?' for n in shared)} "  # noqa: S608
                    "WHERE series_id = ? AND is_series_master = 0 AND deleted = 0",
                    (*(values[n] for n in shared), row["series_id"]),
                )
            if recurrence is not None and row["series_id"] is not None:
                conn.execute(
                    "UPDATE crm_calendar_series SET recurrence = ? WHERE id = ?",
                    (json.dumps(to_wire(recurrence), sort_keys=True), row["series_id"]),
                )
            if attendees is not None:
                organizer = [
                    EventLink(
                        o["role"],
                        o["address"],
                        o["name"],
                        ResponseStatus(o["response"]),
                        o["partner_id"],
                        o["company_id"],
                    )
                    for o in conn.execute(
                        "SELECT * FROM crm_calendar_attendee WHERE event_id = ? "
                        "AND role = 'organizer'",
                        (event_id,),
                    )
                ]
                self._replace_attendees(conn, event_id, [*organizer, *attendees])
            reshaped = recurrence is not None or bool(_SHAPE_FIELDS & set(changes))
            conn.execute(
                "UPDATE crm_calendar_event SET version = version + 1, "
                "series_reshaped = MAX(series_reshaped, ?) WHERE id = ?",
                (int(reshaped and bool(row["is_series_master"])), event_id),
            )

    def crm_respond(self, event_id: int, address: str, response: ResponseStatus) -> None:
        """The CRM user answers an invitation (Odoo: the attendee's state): version+1."""
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE crm_calendar_attendee SET response = ? WHERE event_id = ? AND address = ?",
                (ResponseStatus(response).value, event_id, address),
            ).rowcount
            if not updated:
                conn.execute(
                    "INSERT INTO crm_calendar_attendee (event_id, role, address, response) "
                    "VALUES (?, 'required', ?, ?)",
                    (event_id, address, ResponseStatus(response).value),
                )
            conn.execute(
                "UPDATE crm_calendar_event SET version = version + 1, modified_at = ? WHERE id = ?",
                (_text(datetime.now(UTC)), event_id),
            )

    def crm_delete_event(self, event_id: int) -> None:
        """Delete in the CRM: a tombstone until Outlook has been told (then it goes)."""
        now = _text(datetime.now(UTC))
        with self._write() as conn:
            conn.execute(
                "UPDATE crm_calendar_event SET deleted = 1, version = version + 1, "
                "modified_at = ? WHERE id = ?",
                (now, event_id),
            )


def _candidate(row: sqlite3.Row, master_id: int) -> MeetingCandidate:
    """An unbound occurrence row of the series held by ``master_id``, with its slot."""
    return MeetingCandidate(
        crm_event_id=row["id"],
        version=row["version"],
        ical_uid=row["ical_uid"],
        is_series_master=False,
        deleted=False,
        series_master_id=master_id,
        bound_graph_id=None,
        is_all_day=bool(row["is_all_day"]),
        start=_when(row["start_at"]),
        start_date=_day(row["start_date"]),
    )


def _slot_within(row: sqlite3.Row, start: datetime, end: datetime) -> bool:
    """Whether the row's slot (its start, or its first day) lies in [start, end)."""
    if row["is_all_day"]:
        day = _day(row["start_date"])
        return day is not None and start.date() <= day < end.date()
    when = _when(row["start_at"])
    return when is not None and start <= when < end


def _summary(row: sqlite3.Row, no_subject: str, attendees: tuple[str, ...] = ()) -> EventSummary:
    """An event row as a list shows it (``no_subject`` stands in for an empty subject)."""
    return EventSummary(
        crm_event_id=row["id"],
        subject=row["subject"] or no_subject,
        start=_when(row["start_at"]),
        end=_when(row["end_at"]),
        is_all_day=bool(row["is_all_day"]),
        start_date=_day(row["start_date"]),
        recurring=row["series_id"] is not None,
        attendees=attendees,
    )


def _event_from_row(row: sqlite3.Row) -> CalendarEvent:
    """A CRM event row as the domain type (the one place that reads the columns back)."""
    return CalendarEvent(
        graph_id="",
        ical_uid=row["ical_uid"],
        event_type=EventType.SERIES_MASTER if row["is_series_master"] else EventType.SINGLE,
        subject=row["subject"],
        start=_when(row["start_at"]),
        end=_when(row["end_at"]),
        time_zone=row["time_zone"],
        is_all_day=bool(row["is_all_day"]),
        start_date=_day(row["start_date"]),
        end_date=_day(row["end_date"]),
        original_start=_when(row["original_start"]),
        body_html=row["body_html"],
        location=row["location"],
        online_meeting_url=row["online_meeting_url"],
        sensitivity=Sensitivity(row["sensitivity"]),
        show_as=ShowAs(row["show_as"]),
        is_cancelled=bool(row["is_cancelled"]),
        is_online_meeting=bool(row["is_online_meeting"]),
        organizer=EmailAddress(row["organizer_address"], row["organizer_name"] or "")
        if row["organizer_address"]
        else None,
    )
