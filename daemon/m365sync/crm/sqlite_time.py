"""How the embedded store writes times: fixed-width ISO-8601 text in UTC with microseconds,
so text order is time order (SQL comparisons and ORDER BY work on the text); naive datetimes
are taken as UTC. Shared by the store's modules (mail, calendar, outbox, push)."""

from __future__ import annotations

from datetime import UTC, datetime


def dt_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def dt_value(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
