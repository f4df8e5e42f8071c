"""Windows and IANA zone names, through CLDR's windowsZones table as tzlocal ships it."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from tzlocal.windows_tz import tz_win, win_tz

from m365sync.sync import timezones
from m365sync.sync.timezones import UnknownTimeZone, to_iana, to_windows, zone

# IANA zones no Windows zone matches, and why (checked against the tz database in use).
NO_WINDOWS_ZONE = {
    # UTC+0 in winter, UTC+2 in summer: a two-hour DST step no Windows zone has.
    "Antarctica/Troll",
}


@functools.cache
def _offsets(name: str, year: int = 2026) -> tuple[timedelta | None, ...]:
    """UTC offsets every six hours over a year."""
    tz = ZoneInfo(name)
    start = datetime(year, 1, 1, tzinfo=UTC)
    return tuple((start + timedelta(hours=6 * i)).astimezone(tz).utcoffset() for i in range(1461))


@pytest.mark.parametrize(
    ("name", "iana"),
    [
        ("Pacific Standard Time", "America/Los_Angeles"),
        ("W. Europe Standard Time", "Europe/Berlin"),
        ("Romance Standard Time", "Europe/Paris"),
        ("New Zealand Standard Time", "Pacific/Auckland"),
        ("Eastern Standard Time", "America/New_York"),
        ("India Standard Time", "Asia/Calcutta"),
        ("pacific standard time", "America/Los_Angeles"),  # case-insensitive
        (" GMT Standard Time ", "Europe/London"),
        ("UTC", "UTC"),
        ("tzone://Microsoft/Utc", "UTC"),
        ("Etc/UTC", "UTC"),
        ("Europe/Paris", "Europe/Paris"),  # IANA passes through
        ("America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"),
        ("Asia/Kolkata", "Asia/Kolkata"),
    ],
)
def test_to_iana_maps_windows_names_and_passes_iana_through(name: str, iana: str) -> None:
    assert to_iana(name) == iana
    assert zone(name) == ZoneInfo(iana)


@pytest.mark.parametrize(
    "name",
    [None, "", "   ", "tzone://Microsoft/Custom", "Customized Time Zone", "Mars/Olympus_Mons",
     "Not A Standard Time", "../etc/passwd", "/etc/localtime"],
)  # fmt: skip
def test_unknown_and_custom_names_raise_with_the_name(name: str | None) -> None:
    with pytest.raises(UnknownTimeZone) as caught:
        to_iana(name)
    assert caught.value.name == name
    assert isinstance(caught.value, ValueError)  # callers may catch ValueError
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize(
    ("windows", "winter", "summer"),
    [
        ("Pacific Standard Time", -8, -7),
        ("W. Europe Standard Time", 1, 2),
        ("Romance Standard Time", 1, 2),
        ("New Zealand Standard Time", 13, 12),  # southern hemisphere: DST in January
        ("AUS Eastern Standard Time", 11, 10),
        ("Eastern Standard Time", -5, -4),
    ],
)
def test_dst_observing_zones_change_offset(windows: str, winter: int, summer: int) -> None:
    tz = zone(windows)
    assert datetime(2026, 1, 15, 12, tzinfo=tz).utcoffset() == timedelta(hours=winter)
    assert datetime(2026, 7, 15, 12, tzinfo=tz).utcoffset() == timedelta(hours=summer)


def test_every_windows_name_in_the_table_loads() -> None:
    unloadable = []
    for windows in win_tz:
        try:
            zone(windows)
        except (UnknownTimeZone, KeyError) as exc:  # pragma: no cover - report, then fail
            unloadable.append(f"{windows}: {exc}")
    assert unloadable == [], unloadable
    assert len(win_tz) > 130


@pytest.mark.parametrize(
    ("iana", "windows"),
    [
        ("America/Los_Angeles", "Pacific Standard Time"),
        ("Europe/Berlin", "W. Europe Standard Time"),
        ("Europe/Paris", "Romance Standard Time"),
        ("Pacific/Auckland", "New Zealand Standard Time"),
        ("Asia/Kolkata", "India Standard Time"),  # alias of the table's Asia/Calcutta
        ("UTC", "UTC"),
        ("Etc/UTC", "UTC"),
        ("Pacific Standard Time", "Pacific Standard Time"),  # Windows passes through
    ],
)
def test_to_windows_picks_the_canonical_name(iana: str, windows: str) -> None:
    assert to_windows(iana) == windows


@pytest.mark.parametrize(
    ("iana", "windows", "wall"),
    [
        # Not the 001 zone of any Windows zone; CLDR lists them under their territory. An
        # offset match for this year picked Central Brazilian (Cuiaba: DST until 2019) and
        # Eastern Standard Time (Mexico) (Cancun: UTC-6 until 2015), one hour off back then.
        ("America/Manaus", "SA Western Standard Time", datetime(2019, 1, 15, 10)),
        ("America/Lima", "SA Pacific Standard Time", datetime(2014, 1, 15, 10)),
        ("America/Panama", "SA Pacific Standard Time", datetime(2014, 1, 15, 10)),
    ],
)
def test_to_windows_uses_cldrs_territory_mapping_so_past_events_keep_their_instant(
    iana: str, windows: str, wall: datetime
) -> None:
    assert to_windows(iana) == windows
    assert wall.replace(tzinfo=zone(to_windows(iana))) == wall.replace(tzinfo=ZoneInfo(iana))


def test_to_windows_follows_cldr_wherever_the_tz_database_agrees_with_it() -> None:
    listed = {name: windows for name, windows in tz_win.items() if name in available_timezones()}
    assert len(listed) > 400
    now = datetime.now(UTC).year
    current = {name for name, windows in listed.items()
               if _offsets(win_tz[windows], now) == _offsets(name, now)}  # fmt: skip
    assert len(current) > 0.95 * len(listed)  # CLDR lags tzdata for a few zones at most
    differing = {name: to_windows(name) for name in current if to_windows(name) != listed[name]}
    assert differing == {}


def test_a_zone_cldr_does_not_list_falls_back_to_matching_offsets(monkeypatch) -> None:
    monkeypatch.setattr(timezones, "TZ_WIN", {})  # as if CLDR listed no zone but the 001 ones
    # The Windows zones with Monaco's offsets this year; the first in the same area wins.
    assert to_windows("Europe/Monaco") == "Central Europe Standard Time"


def test_to_windows_raises_for_unknown_names() -> None:
    with pytest.raises(UnknownTimeZone):
        to_windows("Mars/Olympus_Mons")


def test_every_iana_zone_round_trips_to_a_zone_with_the_same_offsets() -> None:
    unmapped, differing = set(), []
    for name in sorted(available_timezones() - {"Factory", "localtime"}):
        try:
            back = to_iana(to_windows(name))
        except UnknownTimeZone:
            unmapped.add(name)
            continue
        if _offsets(back) != _offsets(name):
            differing.append((name, back))  # pragma: no cover - shown on failure
    assert differing == []
    assert unmapped <= NO_WINDOWS_ZONE, unmapped - NO_WINDOWS_ZONE
