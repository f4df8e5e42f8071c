"""Time-zone names as Outlook sends them, turned into IANA zones (and back).

Graph names zones the Windows way (``"Pacific Standard Time"``, ``"W. Europe Standard Time"``)
in ``originalStartTimeZone``, ``recurrenceTimeZone`` and in ``dateTimeTimeZone`` values,
unless a client created the event with an IANA name, which Graph then keeps. Python and Odoo
speak IANA. The mapping is not ours to maintain: it is CLDR's ``windowsZones.xml`` as tzlocal
ships it (``tzlocal.windows_tz``, regenerated from CLDR with each tzlocal release): ``win_tz``
is the "001" territory, one IANA zone per Windows zone; ``tz_win`` is every IANA zone CLDR
lists under any territory, with its Windows zone (``America/Lima`` is Peru's entry under
"SA Pacific Standard Time"). A name we cannot map raises `UnknownTimeZone`, so the caller
chooses the fallback (UTC, or the account's zone) and logs it, instead of this module
guessing silently.

Pure: no I/O beyond reading the tz database through `zoneinfo`.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar.timezone.tzid import get_equivalent_tzids
from tzlocal.windows_tz import tz_win, win_tz

__all__ = ["UTC_NAME", "UnknownTimeZone", "to_iana", "to_windows", "zone"]

UTC_NAME = "UTC"

#: CLDR windowsZones: Windows name -> IANA name of its "001" territory (the zone to expand in).
WIN_TZ: dict[str, str] = win_tz
#: CLDR windowsZones: IANA name (any territory, aliases included) -> Windows name.
TZ_WIN: dict[str, str] = tz_win

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

    In order: CLDR's mapping of every zone it lists, whatever its territory, so a zone keeps
    a Windows zone with its own history (``America/Lima`` is "SA Pacific Standard Time", not
    a zone that merely agrees with it this year); the same for zones icalendar knows to be
    equivalent (aliases newer than the table, zones with identical history since 1970); then,
    for names CLDR does not list, a Windows zone whose offsets agree for this year and the
    next two, preferring one in the same IANA area (``Europe/...``). A CLDR entry that the tz
    database has overtaken (its Windows zone no longer has the zone's offsets now, as for
    ``America/Scoresbysund`` since 2024) is passed over the same way. Raises
    `UnknownTimeZone` when nothing agrees.
    """
    iana = to_iana(name)
    if iana == UTC_NAME:
        return "UTC"
    windows = _canonical_windows().get((name or "").strip().casefold())
    found = windows or _from_cldr(iana) or _by_equivalence(iana) or _by_offsets(iana)
    if found is None:
        raise UnknownTimeZone(name, "no Windows zone has the same offsets")
    return found


# --- lookups ------------------------------------------------------------------------------


@functools.cache
def _windows_index() -> dict[str, str]:
    """Casefolded Windows name -> IANA name."""
    return {windows.casefold(): iana for windows, iana in WIN_TZ.items()}


@functools.cache
def _canonical_windows() -> dict[str, str]:
    """Casefolded Windows name -> the name as Windows spells it."""
    return {windows.casefold(): windows for windows in WIN_TZ}


def _from_cldr(iana: str) -> str | None:
    """CLDR's Windows zone for ``iana``, unless its 001 zone's offsets differ from now on."""
    windows = TZ_WIN.get(iana)
    if windows is None or windows not in WIN_TZ:
        return None
    reference = WIN_TZ[windows]
    if reference != iana and _loadable(reference):
        year = datetime.now(UTC).year
        if _offsets(reference, year) != _offsets(iana, year):
            return None
    return windows


def _by_equivalence(iana: str) -> str | None:
    candidates = sorted(
        {found for other in get_equivalent_tzids(iana) if (found := _from_cldr(other))}
    )
    return candidates[0] if candidates else None


def _by_offsets(iana: str) -> str | None:
    year = datetime.now(UTC).year
    wanted = _offsets(iana, year)
    matches = [
        windows
        for windows, other in sorted(WIN_TZ.items())
        if _loadable(other) and _offsets(other, year) == wanted
    ]
    area = iana.split("/", 1)[0]
    same_area = [w for w in matches if WIN_TZ[w].split("/", 1)[0] == area]
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
