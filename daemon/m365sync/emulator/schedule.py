"""``POST /me/calendar/getSchedule``: free/busy of the mailbox owner and of other people.

Docs `api/calendar-getschedule.md` @ 0062dd88 and the resources it returns
(`resources/scheduleinformation.md`, `scheduleitem.md`, `freebusyerror.md`):

* Body: ``schedules`` (SMTP addresses), ``startTime`` / ``endTime`` (dateTimeTimeZone),
  ``availabilityViewInterval`` (minutes; "The default is 30 minutes, minimum is 5, maximum is
  1440"). Answer: 200 ``{"value": [scheduleInformation]}``, one per address, in order.
* ``Prefer: outlook.timezone`` sets the zone of the items' start/end ("If not specified, those
  time values are returned in UTC"); applied zones are echoed in ``Preference-Applied``.
* scheduleItem: status (free, tentative, busy, oof, workingElsewhere, unknown), start, end,
  and the optional isPrivate, subject, location. availabilityView: one digit per slot, "0 =
  free, 1 = tentative, 2 = busy, 3 = out of office, 4 = working elsewhere"; a slot shows the
  strongest status of the items overlapping it.
* The mailbox owner's items come from its calendar (``Calendar.view``; cancelled and free
  events are left out). Other addresses come from ``Mailbox.free_busy[address]`` -- a list
  of ``{"status", "start", "end"}`` (plus optional subject, location, isPrivate) where start
  and end are dateTimeTimeZone objects, datetimes (naive = UTC) or ISO strings -- which a
  test sets. workingHours is ``Mailbox.working_hours`` for both.
* Any other address gets an item with an error and nothing else, as Graph answers for an
  address it cannot resolve: ``{"scheduleId", "error": {"message": "Unable to resolve e-mail
  address ... to an Active Directory object.", "responseCode": "5009"}}``
  (microsoftgraph/microsoft-graph-docs#11225).
* Permissions: Calendars.ReadBasic, Calendars.Read or Calendars.ReadWrite
  (docs `includes/permissions/calendar-getschedule-permissions.md` @ 58e5ce0f); personal
  Microsoft accounts are "Not supported" (the emulator does not model account kinds).
"""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from m365sync.emulator import calendar as cal
from m365sync.emulator.wire import json_response

if TYPE_CHECKING:
    from m365sync.emulator.graph_api import Call

SCHEDULE_READ = frozenset(["calendars.readbasic", "calendars.read", "calendars.readwrite"])
DIGITS = {"free": "0", "tentative": "1", "busy": "2", "oof": "3", "workingelsewhere": "4"}
STRENGTH = {"free": 0, "unknown": 0, "tentative": 1, "workingelsewhere": 2, "busy": 3, "oof": 4}
CANONICAL = {
    "free": "free",
    "tentative": "tentative",
    "busy": "busy",
    "oof": "oof",
    "workingelsewhere": "workingElsewhere",
    "unknown": "unknown",
}


def _graph() -> Any:
    from m365sync.emulator import graph_api

    return graph_api


def _bad(message: str) -> Exception:
    # The codes of getSchedule's validation failures are not documented.
    return _graph().GraphError(400, "ErrorInvalidParameter", message)


def _instant(value: Any, name: str) -> datetime:
    """A dateTimeTimeZone (or, for free_busy entries, a datetime or ISO string) as UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if not isinstance(value, dict) or not value.get("dateTime"):
        raise _bad(f"'{name}' must be a dateTimeTimeZone.")
    tz = cal.zone(value.get("timeZone") or "UTC")
    if tz is None:
        raise _graph().GraphError(
            400,
            "TimeZoneNotSupportedException",
            "A valid TimeZone value must be specified. The following TimeZone value is not "
            f"supported: '{value.get('timeZone')}'.",
        )
    try:
        return cal.to_utc(cal.parse_local(value["dateTime"]), tz)
    except (TypeError, ValueError):
        raise _bad(f"The value '{value['dateTime']}' of '{name}' is not a date and time.") from None


def get_schedule(call: Call) -> Response:
    """Answer ``POST /me/calendar/getSchedule``."""
    graph = _graph()
    graph._require(call, SCHEDULE_READ)
    payload = call.request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise graph.GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
    schedules = payload.get("schedules")
    if not isinstance(schedules, list) or not schedules:
        raise _bad("'schedules' must list at least one SMTP address.")
    if not all(isinstance(s, str) and s for s in schedules):
        raise _bad("'schedules' must list SMTP addresses.")
    low = _instant(payload.get("startTime"), "startTime")
    high = _instant(payload.get("endTime"), "endTime")
    if high <= low:
        raise _bad("'endTime' must be after 'startTime'.")
    interval = payload.get("availabilityViewInterval", 30)
    if isinstance(interval, bool) or not isinstance(interval, int) or not 5 <= interval <= 1440:
        raise _bad("'availabilityViewInterval' must be a whole number of minutes, 5 to 1440.")
    zone_name = "UTC"
    wanted = call.prefer.get("outlook.timezone")
    if wanted and cal.zone(wanted) is not None:
        zone_name = wanted
        call.applied.append(f'outlook.timezone="{wanted}"')
    value = [_information(call, address, low, high, interval, zone_name) for address in schedules]
    context = f"{call.base}/$metadata#Collection(microsoft.graph.scheduleInformation)"
    return json_response({"@odata.context": context, "value": value})


def _owner_items(call: Call, low: datetime, high: datetime) -> list[dict[str, Any]]:
    items = []
    for event in call.mailbox.calendar.view(low, high):
        status = str(event.get("showAs") or "busy")
        if event.get("isCancelled") or status.lower() == "free":
            continue
        location = event.get("location") or {}
        items.append(
            {
                "isPrivate": event.get("sensitivity") == "private",
                "status": status,
                "subject": event.get("subject") or "",
                "location": location.get("displayName") or "",
                "start": _instant(event.get("start"), "start"),
                "end": _instant(event.get("end"), "end"),
            }
        )
    return items


def _listed_items(entries: list[dict[str, Any]], low: datetime, high: datetime) -> list[dict]:
    items = []
    for entry in entries:
        start, end = _instant(entry.get("start"), "start"), _instant(entry.get("end"), "end")
        if start < high and end > low:
            item = {k: copy.deepcopy(v) for k, v in entry.items() if k not in ("start", "end")}
            item.setdefault("status", "busy")
            items.append({**item, "start": start, "end": end})
    return items


def _information(
    call: Call, address: str, low: datetime, high: datetime, interval: int, zone_name: str
) -> dict[str, Any]:
    mailbox = call.mailbox
    owner = {str(mailbox.user.get(k) or "").lower() for k in ("mail", "userPrincipalName")} - {""}
    listed = {k.lower(): v for k, v in mailbox.free_busy.items()}
    if address.lower() in owner:
        items = _owner_items(call, low, high)
    elif address.lower() in listed:
        items = _listed_items(listed[address.lower()], low, high)
    else:
        return {
            "scheduleId": address,
            "error": {
                "message": f"Unable to resolve e-mail address {address} to an Active Directory "
                "object.",
                "responseCode": "5009",
            },
        }
    items.sort(key=lambda i: (i["start"], i["end"]))
    return {
        "scheduleId": address,
        "availabilityView": availability_view(items, low, high, interval),
        "scheduleItems": [
            {
                **{k: v for k, v in item.items() if k not in ("start", "end", "status")},
                "status": CANONICAL.get(str(item["status"]).lower(), str(item["status"])),
                "start": cal.in_zone(item["start"], zone_name),
                "end": cal.in_zone(item["end"], zone_name),
            }
            for item in items
        ],
        "workingHours": copy.deepcopy(mailbox.working_hours),
    }


def availability_view(
    items: list[dict[str, Any]], low: datetime, high: datetime, interval: int
) -> str:
    """One digit per slot of `interval` minutes from `low` to `high`: the strongest status of
    the items (UTC start/end) overlapping the slot, 0 where none does."""
    step = timedelta(minutes=interval)
    slots = math.ceil((high - low) / step)
    digits = []
    for index in range(slots):
        start, end = low + index * step, low + (index + 1) * step
        best = "free"
        for item in items:
            status = str(item["status"]).lower()
            overlaps = item["start"] < end and item["end"] > start
            if overlaps and STRENGTH.get(status, 0) > STRENGTH.get(best, 0):
                best = status
        digits.append(DIGITS.get(best, "0"))
    return "".join(digits)
