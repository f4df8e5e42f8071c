"""The reliability soak's truth check counts what the person deleted and is back as wrong.

Comparing Outlook with the CRM alone misses a resurrection: a meeting deleted in Outlook that
the daemon pushes back from the CRM is on both sides, and they agree. The soak remembers what
it deleted and cancelled; these pin that the check uses it (and does not count a fault twice).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from m365sync.graph.send import OUTBOX_HEADER, OUTBOX_PREFIX
from m365sync.service.outbox_cycle import UNCONFIRMED
from tests.reliability.truth import Figures, check_calendar, check_mail, check_outbox

START = datetime(2026, 12, 10, 9, tzinfo=UTC)
PEOPLE = frozenset({"ann@example.com"})


def occurrences(subject: str, days: int) -> Counter:
    return Counter(
        (subject, START + timedelta(days=d), START + timedelta(days=d, hours=1), PEOPLE)
        for d in range(days)
    )


def test_a_deleted_event_on_both_sides_is_wrong_once() -> None:
    back = {"A": occurrences("E3 call from Outlook", 1)}
    figures = Figures()
    check_calendar(figures, back, {"series-1": occurrences("E3 call from Outlook", 1)}, set(),
                   dead={"E3": "Outlook"})  # fmt: skip
    assert (figures.wrong, figures.lost, figures.duplicated) == (2, 0, 0)
    assert "E3 was deleted in Outlook and is in Outlook" in figures.problems[0]
    assert "E3 was deleted in Outlook and is in the CRM" in figures.problems[1]


def test_a_deleted_event_left_on_one_side_is_one_wrong_not_also_a_mismatch() -> None:
    figures = Figures()
    check_calendar(figures, {}, {"event-4": occurrences("E4 meeting from the CRM", 1)}, set(),
                   dead={"E4": "Outlook"})  # fmt: skip
    assert (figures.wrong, figures.lost, figures.duplicated) == (1, 0, 0), figures.problems


def test_a_cancelled_occurrence_still_in_the_crm_is_wrong_and_the_rest_matches() -> None:
    outlook = occurrences("E6 meeting from the CRM", 3)
    cancelled_at = START + timedelta(days=1)
    del outlook[next(k for k in outlook if k[1] == cancelled_at)]
    figures = Figures()
    check_calendar(
        figures,
        {"master": outlook},
        {"series-9": occurrences("E6 meeting from the CRM", 3)},
        {"E6"},
        cancelled={("E6", cancelled_at): "Outlook"},
    )
    assert (figures.wrong, figures.lost, figures.duplicated) == (1, 0, 0), figures.problems
    line = "occurrence of E6 at 12-11 09:00 was cancelled in Outlook and is in the CRM"
    assert line in figures.problems[0]


def test_nothing_deleted_and_both_sides_agreeing_is_clean() -> None:
    figures = Figures()
    same = occurrences("E7 call", 2)
    later = START + timedelta(days=5)
    check_calendar(figures, {"m": same}, {"series-2": Counter(same)}, {"E7"},
                   dead={"E8": "the CRM"}, cancelled={("E7", later): "Outlook"})  # fmt: skip
    assert figures.bad() == 0, figures.problems


def test_a_mail_deleted_in_outlook_and_kept_by_the_crm_says_so() -> None:
    figures = Figures()
    stored = [{"graph_id": "g1", "folder_id": "inbox", "internet_message_id": "<1@x>",
               "subject": "M1", "message_id": 1}]  # fmt: skip
    check_mail(figures, {}, stored, {}, 1, deleted={"g1": "M1"})
    assert figures.wrong == 1
    assert "was deleted in Outlook and is still in the CRM" in figures.problems[0]


def _outbox_item(state: str, error: str | None = None, linked: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        state=SimpleNamespace(value=state),
        error=error,
        graph_id="AAMk-copy" if linked else None,
        internet_message_id="<copy@example>" if linked else None,
    )


def _sent(mail_id: int) -> dict:
    return {
        "internetMessageHeaders": [{"name": OUTBOX_HEADER, "value": f"{OUTBOX_PREFIX}{mail_id}"}]
    }


def test_an_unconfirmed_mail_is_right_only_when_the_person_deleted_its_copy_for_good() -> None:
    """Nothing in the mailbox tells that a mail whose copy was deleted for good went: the
    daemon saying it could not confirm it is the truth then, and only then; sent once still."""
    outbox = {1: _outbox_item("failed", UNCONFIRMED), 2: _outbox_item("failed", UNCONFIRMED),
              3: _outbox_item("sent")}  # fmt: skip
    figures = Figures()
    check_outbox(figures, [1, 2, 3], [_sent(1), _sent(2), _sent(3)], outbox, [], set(),
                 purged={1, 3})  # fmt: skip
    assert (figures.wrong, figures.sent_twice, figures.lost) == (1, 0, 0), figures.problems
    assert "outbox 2 was sent but says" in figures.problems[0]
    figures = Figures()
    check_outbox(figures, [1], [_sent(1), _sent(1)], outbox, [], set(), purged={1})
    assert figures.sent_twice == 1
