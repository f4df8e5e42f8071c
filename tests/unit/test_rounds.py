"""The full-round rules (issue #14): which pages list a folder, and what a completed round
does with what it did not list. Pure: no store, no Graph."""

from __future__ import annotations

from datetime import UTC, datetime

from m365sync.domain import Cursor, CursorKind, DeltaPage, MailMessage, RejectedItem, RoundMark
from m365sync.sync.rounds import listed_ids, round_mark, settle_unlisted, still_open, to_check

SINCE = datetime(2026, 11, 1, tzinfo=UTC)


def delta_page(*ids: str, last: bool = False, rejected: tuple[str | None, ...] = ()) -> DeltaPage:
    return DeltaPage(
        messages=[MailMessage(g, None, None, "inbox", None, None) for g in ids],
        removed_ids=["gone"],
        rejected=[RejectedItem(g, "malformed") for g in rejected],
        next_link=None if last else "https://graph/next",
        delta_link="https://graph/delta" if last else None,
    )


def test_a_round_from_no_cursor_is_full_and_opens_with_its_window() -> None:
    mark = round_mark(None, delta_page("a", "b"), SINCE)
    assert mark == RoundMark(starts=True, since=SINCE, listed_ids=("a", "b"), completes=False)
    assert still_open(mark)


def test_a_round_of_one_page_starts_and_completes() -> None:
    mark = round_mark(None, delta_page("a", last=True), None)
    assert mark is not None and mark.starts and mark.completes
    assert not still_open(mark)


def test_a_resumed_full_round_continues_and_completes_on_its_delta_link() -> None:
    resumed = Cursor("https://graph/next", CursorKind.NEXT, full_round=True)
    middle = round_mark(resumed, delta_page("c"), SINCE)
    assert middle == RoundMark(listed_ids=("c",))  # no new round, no window again
    last = round_mark(resumed, delta_page("d", last=True), SINCE)
    assert last == RoundMark(listed_ids=("d",), completes=True)


def test_a_round_of_changes_lists_nothing_and_reconciles_nothing() -> None:
    for cursor in (
        Cursor("https://graph/delta", CursorKind.DELTA),
        Cursor("https://graph/next", CursorKind.NEXT),  # a later page of a round of changes
    ):
        assert round_mark(cursor, delta_page("a", last=True), SINCE) is None
    assert not still_open(None)


def test_skipped_and_malformed_items_are_listed_too_once_each() -> None:
    page = delta_page("a", "b", "a", rejected=("bad", None))
    assert listed_ids(page) == ("a", "b", "bad")


def test_the_last_pages_own_items_are_not_unlisted() -> None:
    mark = RoundMark(listed_ids=("d",), completes=True)
    assert to_check(["c", "d", "b"], mark) == ["b", "c"]


def test_unlisted_mail_is_removed_moved_or_kept_by_where_graph_finds_it() -> None:
    settled = settle_unlisted(
        {
            "deleted": None,  # Graph: not found
            "binned": "deleted-items",
            "under-the-bin": "under-deleted-items",
            "shift-deleted": "recoverable-deletions",  # Graph still finds it there
            "archived": "archive",
            "missed": "inbox",  # still here: the round only failed to list it
        },
        "inbox",
        {"deleted-items", "under-deleted-items", "recoverable-deletions"},
    )
    assert settled.removed == ["binned", "deleted", "shift-deleted", "under-the-bin"]
    assert settled.moved == {"archived": "archive"}
    assert settled.kept == ["missed"]
