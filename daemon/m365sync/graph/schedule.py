"""Free/busy through ``POST /me/calendar/getSchedule`` (docs `api/calendar-getschedule.md`).

Used by Schedule Meeting to show when the attendees are busy on the chosen day. Addresses
Graph cannot resolve (outside the tenant) come back with an error item instead of a schedule:
they are reported as unknown, not as free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from m365sync.graph.client import GraphClient
from m365sync.sync.timezones import UnknownTimeZone, zone


@dataclass(frozen=True, slots=True)
class BusySlot:
    start: datetime  # aware, UTC
    end: datetime
    status: str  # busy, tentative, oof, workingElsewhere


@dataclass(frozen=True, slots=True)
class Availability:
    address: str
    slots: tuple[BusySlot, ...]
    error: str | None = None  # why Graph has no schedule for this address


def _instant(value: dict) -> datetime:
    moment = datetime.fromisoformat(str(value["dateTime"])[:26])
    try:
        tz = zone(value.get("timeZone") or "UTC")
    except UnknownTimeZone:
        tz = UTC
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).astimezone(UTC)


def free_busy(
    client: GraphClient, addresses: list[str], start: datetime, end: datetime
) -> list[Availability]:
    """The busy slots of each address between ``start`` and ``end`` (aware datetimes)."""
    body = {
        "schedules": addresses,
        "startTime": {
            "dateTime": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "timeZone": "UTC",
        },
        "endTime": {
            "dateTime": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "timeZone": "UTC",
        },
        "availabilityViewInterval": 30,
    }
    # A read: safe to resend, so it may be retried like a GET.
    answer = client.post_json("/me/calendar/getSchedule", body, idempotent=True)
    found = []
    for item in answer.get("value", []):
        address = str(item.get("scheduleId", ""))
        if isinstance(item.get("error"), dict):
            found.append(Availability(address, (), str(item["error"].get("message", "unknown"))))
            continue
        slots = tuple(
            BusySlot(_instant(s["start"]), _instant(s["end"]), str(s.get("status", "busy")))
            for s in item.get("scheduleItems", [])
            if str(s.get("status", "busy")).lower() != "free"
        )
        found.append(Availability(address, slots))
    return found
