"""Time-zone names as Outlook sends them, turned into IANA zones (and back).

Graph names zones the Windows way (``"Pacific Standard Time"``, ``"W. Europe Standard Time"``)
in ``originalStartTimeZone``, ``recurrenceTimeZone`` and in ``dateTimeTimeZone`` values,
unless a client created the event with an IANA name, which Graph then keeps. Python and Odoo
speak IANA. The mapping is not ours to maintain: it is CLDR's ``windowsZones.xml`` (the
"001" territory, one IANA zone per Windows zone) as icalendar ships it, regenerated with each
icalendar release. A name we cannot map raises `UnknownTimeZone`, so the caller chooses the
fallback (UTC, or the account's zone) and logs it, instead of this module guessing silently.

Pure: no I/O beyond reading the tz database through `zoneinfo`.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:  # icalendar 6 and 7
    from icalendar.timezone.tzid import get_equivalent_tzids
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON
except ImportError:  # pragma: no cover - icalendar 5 kept the table at the top level
    from icalendar.windows_to_olson import WINDOWS_TO_OLSON  # type: ignore[no-redef]

    def get_equivalent_tzids(tzid: str) -> tuple[str, ...]:  # type: ignore[misc]
        return (tzid,)


__all__ = ["UTC_NAME", "UnknownTimeZone", "to_iana", "to_windows", "zone"]

UTC_NAME = "UTC"

# Names Graph uses for UTC besides the Windows "UTC" entry (which CLDR maps to "Etc/UTC").
# Returning plain "UTC" keeps comparisons with `CalendarEvent.time_zone`'s default simple.
_UTC_ALIASES = frozenset({"utc", "tzone://microsoft/utc", "etc/utc", "z"})

# "A value of tzone://Microsoft/Custom indicates that a legacy custom time zone was set in
# desktop Outlook" (Graph event.md); getSchedule names its custom zones like this. Neither
# has a name we can map: the rules travel separately (bias/standardOffset/daylightOffset).
_CUSTOM = frozenset({"tzone://microsoft/custom", "customized time zone"})


class UnknownTimeZone(ValueError):
    """A zone name we cannot map to IANA; ``name`` is what we were given."""

    def __init__(self, name: str | None, reason: str = "") -> None:
        self.name = name
        detail = f": {reason}" if reason else ""
        super().__init__(f"unknown time zone {name!r}{detail}")


def to_iana(name: str | None) -> str:
    """The IANA name for a Windows or IANA zone name, as Graph or Outlook gives it.

    Windows names are looked up case-insensitively in CLDR's table; IANA names are passed
    through once `zoneinfo` can load them. UTC in any of its spellings becomes ``"UTC"``.
    Raises `UnknownTimeZone` for empty, custom and unknown names.
    """
    cleaned = (name or "").strip()
    if not cleaned:
        raise UnknownTimeZone(name, "no zone given")
    folded = cleaned.casefold()
    if folded in _UTC_ALIASES:
        return UTC_NAME
    if folded in _CUSTOM:
        raise UnknownTimeZone(name, "a custom Outlook zone has no name to map")
    mapped = _windows_index().get(folded)
    if mapped is not None:
        return mapped
    if _loadable(cleaned):
        return cleaned
    raise UnknownTimeZone(name, "neither a Windows zone CLDR knows nor an IANA zone")


def zone(name: str | None) -> ZoneInfo:
    """The `ZoneInfo` for a Windows or IANA name (see `to_iana`)."""
    return ZoneInfo(to_iana(name))


def to_windows(name: str) -> str:
    """The Windows name to send Graph for an IANA zone (Windows names pass through).

    CLDR's "001" table names one IANA zone per Windows zone, so most IANA zones are not in
    it. In order: the table itself; zones icalendar knows to be equivalent (aliases such as
    ``Asia/Kolkata`` for ``Asia/Calcutta``, and zones with identical history since 1970);
    then a Windows zone whose offsets agree for this year and the next two, preferring one
    in the same IANA area (``Europe/...``). Raises `UnknownTimeZone` when nothing agrees.
    """
    iana = to_iana(name)
    if iana == UTC_NAME:
        return "UTC"
    found = _reverse_index().get(iana) or _by_equivalence(iana) or _by_offsets(iana)
    if found is None:
        raise UnknownTimeZone(name, "no Windows zone has the same offsets")
    return found


# --- lookups ------------------------------------------------------------------------------


@functools.cache
def _windows_index() -> dict[str, str]:
    """Casefolded Windows name -> IANA name."""
    return {windows.casefold(): iana for windows, iana in WINDOWS_TO_OLSON.items()}


@functools.cache
def _reverse_index() -> dict[str, str]:
    """IANA name -> Windows name. CLDR's 001 table is one-to-one; if a later release maps
    two Windows names to one zone, the alphabetically first wins, so the choice is stable."""
    reverse: dict[str, str] = {}
    for windows in sorted(WINDOWS_TO_OLSON):
        reverse.setdefault(WINDOWS_TO_OLSON[windows], windows)
    return reverse


def _by_equivalence(iana: str) -> str | None:
    candidates = sorted(
        _reverse_index()[other] for other in get_equivalent_tzids(iana) if other in _reverse_index()
    )
    return candidates[0] if candidates else None


def _by_offsets(iana: str) -> str | None:
    year = datetime.now(UTC).year
    wanted = _offsets(iana, year)
    matches = [
        windows
        for windows, other in sorted(WINDOWS_TO_OLSON.items())
        if _loadable(other) and _offsets(other, year) == wanted
    ]
    area = iana.split("/", 1)[0]
    same_area = [w for w in matches if WINDOWS_TO_OLSON[w].split("/", 1)[0] == area]
    return (same_area or matches or [None])[0]


@functools.cache
def _offsets(iana: str, year: int) -> tuple[timedelta | None, ...]:
    """UTC offsets every six hours over three years: enough to tell DST rules apart."""
    tz = ZoneInfo(iana)
    start = datetime(year, 1, 1, tzinfo=UTC)
    return tuple((start + timedelta(hours=6 * i)).astimezone(tz).utcoffset() for i in range(4384))


@functools.cache
def _loadable(iana: str) -> bool:
    try:
        ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True
