"""The embedded store's stand-in for Odoo's own expansion of a series made in the CRM.

The embedded store makes no occurrences of its own (Outlook's come back bound). The calendar
contract's occurrence rules (`CrmGateway.unconfirmed_occurrences`, `remove_cancelled_occurrences`)
are about occurrences a CRM made itself, as Odoo does when a series is made: written here into
the store's tables as Odoo makes them, one event a day, so the store's queries run on the same
contract as Odoo's.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path


def expand_series(path: Path, event_id: int, count: int) -> None:
    """``count`` daily occurrences of the series whose master is ``event_id``, owned by no
    account (as Odoo's own occurrences, they are never pushed on their own)."""
    with sqlite3.connect(path) as raw:
        master = raw.execute(
            "SELECT series_id, subject, start_at, end_at, created_at "
            "FROM crm_calendar_event WHERE id = ?",
            (event_id,),
        ).fetchone()
        series_id, subject, start_at, end_at, created = master
        for n in range(count):
            shift = timedelta(days=n)
            raw.execute(
                "INSERT INTO crm_calendar_event (series_id, subject, "
                "start_at, end_at, created_at, modified_at) VALUES (?, ?, ?, ?, ?, ?)",
                (series_id, subject,
                 (datetime.fromisoformat(start_at) + shift).isoformat(),
                 (datetime.fromisoformat(end_at) + shift).isoformat(), created, created),
            )  # fmt: skip


def series_occurrences(path: Path, event_id: int) -> list[int]:
    """The ids of the occurrences of the series whose master is ``event_id``."""
    with sqlite3.connect(path) as raw:
        rows = raw.execute(
            "SELECT o.id FROM crm_calendar_event o JOIN crm_calendar_event e "
            "ON e.series_id = o.series_id WHERE e.id = ? AND o.is_series_master = 0 "
            "ORDER BY o.id",
            (event_id,),
        ).fetchall()
    return [row[0] for row in rows]
